# Sourced by scripts/run and scripts/test: make the machine ready, idempotently and quietly.
# A fresh clone has no venv and no node_modules; both are (re)built when their lock changes.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }

stamp_ok() { # stamp_ok STAMPFILE FILE... : the files are unchanged since the stamp was written
  local stamp=$1; shift
  [ -f "$stamp" ] && [ "$(cat "$@" | sha256sum)" = "$(cat "$stamp")" ]
}
write_stamp() { local stamp=$1; shift; cat "$@" | sha256sum > "$stamp"; }

ensure_python() {
  local reqs=("$ROOT/requirements.txt" "$ROOT/requirements-dev.txt")
  if [ ! -x "$PY" ]; then
    say "creating $VENV"
    local base
    base=$(command -v python3.11 || command -v python3)
    "$base" -m venv "$VENV"
  fi
  if ! stamp_ok "$VENV/.requirements.sha256" "${reqs[@]}"; then
    say "installing Python requirements"
    "$PY" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements-dev.txt"
    write_stamp "$VENV/.requirements.sha256" "${reqs[@]}"
  fi
}

ensure_node() {
  if ! command -v npm >/dev/null; then
    echo "npm is required for Azurite (install Node.js 18+)" >&2; return 1
  fi
  if ! stamp_ok "$ROOT/node_modules/.lock.sha256" "$ROOT/package-lock.json"; then
    say "installing Azurite (npm ci)"
    (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error)
    write_stamp "$ROOT/node_modules/.lock.sha256" "$ROOT/package-lock.json"
  fi
}

CHECKOV_VENV="$ROOT/.venv-checkov"
CHECKOV="$CHECKOV_VENV/bin/checkov"

ensure_checkov() { # checkov gets a venv of its own: its dependency pins clash with the app's
  local reqs=("$ROOT/requirements-checkov.txt")
  if [ ! -x "$CHECKOV_VENV/bin/python" ]; then
    say "creating $CHECKOV_VENV"
    local base
    base=$(command -v python3.11 || command -v python3)
    "$base" -m venv "$CHECKOV_VENV"
  fi
  if ! stamp_ok "$CHECKOV_VENV/.requirements.sha256" "${reqs[@]}"; then
    say "installing checkov"
    "$CHECKOV_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "${reqs[0]}"
    write_stamp "$CHECKOV_VENV/.requirements.sha256" "${reqs[@]}"
  fi
}
