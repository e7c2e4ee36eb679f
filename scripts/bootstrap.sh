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

ensure_venv() { # ensure_venv DIR REQUIREMENTS [STAMPED...]: a venv with those requirements
  local venv=$1 reqs=$2; shift 2
  local stamped=("$reqs" "$@")
  if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv"
    local base
    base=$(command -v python3.11 || command -v python3)
    "$base" -m venv "$venv"
  fi
  if ! stamp_ok "$venv/.requirements.sha256" "${stamped[@]}"; then
    say "installing $(basename "$reqs")"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs"
    write_stamp "$venv/.requirements.sha256" "${stamped[@]}"
  fi
}

# requirements-dev.txt includes requirements.txt and the samples' requirements, so a change to
# any of them reinstalls.
ensure_python() {
  ensure_venv "$VENV" "$ROOT/requirements-dev.txt" "$ROOT/requirements.txt" \
    "$ROOT/samples/flask_webapi/requirements.txt" "$ROOT/samples/fastapi_webapi/requirements.txt"
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

# checkov gets a venv of its own: its dependency pins clash with the app's.
ensure_checkov() { ensure_venv "$CHECKOV_VENV" "$ROOT/requirements-checkov.txt"; }
