"""Servers the tests start from their own virtual environments, built once per version and cached.

Some real servers cannot share the test environment's lock: the MLflow tracking
server is the full `mlflow` package (Flask, Gunicorn, pandas, scikit-learn, …), of
which the project installs only the client (`mlflow-skinny`). Each lives in its own
virtual environment under `$XDG_CACHE_HOME/complaints-tools/NAME-VERSION`, created the
first time a test (or `.ci/run`, which warms the cache: `python tests/tool_envs.py
mlflow`) asks for it, and reused after; creation is locked, so parallel test
processes build it once. Nothing here touches the test environment.

Run it as a script to build (or check) one: `python tests/tool_envs.py mlflow`.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys

# name → (version, what pip installs, the executable the tests run)
TOOLS = {
    "mlflow": ("3.17.2", ["mlflow==3.17.2"], "mlflow"),
}


def root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "complaints-tools")


def executable(name: str) -> str:
    """The tool's executable, its environment built first if this machine has none yet."""
    version, requirements, program = TOOLS[name]
    home = os.path.join(root(), f"{name}-{version}")
    done = os.path.join(home, ".complete")
    os.makedirs(root(), exist_ok=True)
    with open(os.path.join(root(), f".{name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(done):
            shutil.rmtree(home, ignore_errors=True)  # a half-built one from an interrupted run
            python = os.environ.get("TOOL_PYTHON", "python3.11")
            subprocess.run([python, "-m", "venv", home], check=True)
            subprocess.run([os.path.join(home, "bin", "python"), "-m", "pip", "install", "--quiet",
                            "--disable-pip-version-check", *requirements], check=True)
            open(done, "w").close()
    return os.path.join(home, "bin", program)


if __name__ == "__main__":
    for tool in sys.argv[1:] or list(TOOLS):
        print(executable(tool))
