"""The client is its own distributable: a fresh virtual environment with nothing but
``pip install ./clients/python`` (plus the Flask sample's framework and a test runner) imports
it, has none of the server's dependencies or code, and runs the Flask sample's unit tests.

It runs on the suite's Python and, where the machine has one, on Python 3.9, the oldest the
client supports (pip then picks the newest azure-core that still runs there). Slow-ish: it
builds and installs into a venv under a temp dir, from the package index pip is set up with.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "samples"
#: Python 3.9 where this machine has one (pyenv's, or on the PATH).
PYTHON_39 = next(iter(sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.9*/bin/python3.9")))
                      + [p for p in [shutil.which("python3.9")] if p]), None)
# Nothing of the server, nor anything only the server needs, may be importable.
ABSENT = ("tokenvault", "function_app", "azure.functions", "msal", "azure.identity",
          "azure.keyvault.secrets", "azure.data.tables")
CHECK = f"""
import importlib.metadata as metadata, importlib.util as util, pathlib, sys
import tokenvault_client

def importable(name):
    try:
        return util.find_spec(name) is not None
    except ModuleNotFoundError:  # its parent package is absent too
        return False

present = [m for m in {ABSENT!r} if importable(m)]
assert not present, present
package = pathlib.Path(tokenvault_client.__file__).parent
assert (package / "py.typed").is_file()
requires = metadata.requires("tokenvault-client")
assert [r for r in requires if "extra" not in r] == ["azure-core<2,>=1.31.0"], requires
print("client", metadata.version("tokenvault-client"), "on azure-core",
      metadata.version("azure-core"), "python", sys.version.split()[0])
"""


def run(command: list, **options) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=540, **options)
    assert done.returncode == 0, \
        f"{command[:3]} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.parametrize("python", [
    pytest.param(sys.executable, id="suite-python"),
    pytest.param(PYTHON_39, id="python3.9", marks=pytest.mark.skipif(
        PYTHON_39 is None, reason="no Python 3.9 on this machine")),
])
def test_a_fresh_venv_with_only_the_client_runs_the_flask_samples_tests(tmp_path, python):
    # Copies, so the build leaves nothing in the repository and nothing of it is on a path.
    source = shutil.copytree(ROOT / "clients" / "python", tmp_path / "client",
                             ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    samples = tmp_path / "samples"
    shutil.copytree(SAMPLES / "flask_webapi", samples / "flask_webapi",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for module in ("entra_tokens.py", "graph.py", "stand_in.py"):
        shutil.copy(SAMPLES / module, samples / module)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    venv = tmp_path / "venv"
    run([python, "-m", "venv", str(venv)], env=env)
    interpreter = str(venv / "bin" / "python")
    pytest_pin = "pytest==9.2.0" if python == sys.executable else "pytest==8.4.2"
    run([interpreter, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         str(source), "-r", str(samples / "flask_webapi" / "requirements.txt"), pytest_pin],
        env=env, cwd=tmp_path)

    assert "client 0.1.0 on azure-core" in run([interpreter, "-c", CHECK], env=env, cwd=tmp_path)
    output = run([interpreter, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider",
                  "flask_webapi/tests"], env=env, cwd=samples)
    assert " passed" in output and "failed" not in output and "error" not in output.lower()
