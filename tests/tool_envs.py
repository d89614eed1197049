"""Servers the tests start from their own virtual environments, built once per version and cached.

Some real servers cannot share the test environment's lock: the MLflow tracking
server is the full `mlflow` package (Flask, Gunicorn, pandas, scikit-learn, …), of
which the project installs only the client (`mlflow-skinny`); Label Studio is a Django
application of about 1 GB with its own pins. Each lives in its own
virtual environment under `$XDG_CACHE_HOME/complaints-tools/NAME-VERSION`, created the
first time a test (or `.ci/run`, which warms the cache: `python tests/tool_envs.py
mlflow`) asks for it, and reused after; creation is locked, so parallel test
processes build it once. Nothing here touches the test environment.

Run it as a script to build (or check) one: `python tests/tool_envs.py mlflow`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

# name → (version, what pip installs, the executable the tests run)
TOOLS = {
    "mlflow": ("3.17.2", ["mlflow==3.17.2"], "mlflow"),
    "label-studio": ("1.23.2", ["label-studio==1.23.2"], "label-studio"),
    # The BigQuery emulator (DuckDB inside). Its pytest plugin imports a package it does not depend on, so it can
    # never share the test environment. It needs numpy, and DuckDB's spatial extension, which it would otherwise
    # download at start: the extension's wheel is installed and then INSTALLed from its file (`_after`).
    "bqemulator": ("1.4.0", ["bqemulator==1.4.0", "duckdb-extension-spatial==1.5.5", "numpy"], "bqemulator"),
}

# DuckDB keeps installed extensions under $HOME/.duckdb: the emulator runs with HOME set to its environment, so
# nothing is written to the user's home.
_AFTER = {
    "bqemulator": """
import duckdb, duckdb_extension_spatial, glob, os
path, = glob.glob(os.path.join(os.path.dirname(duckdb_extension_spatial.__file__), "extensions", "*",
                               "spatial.duckdb_extension"))
duckdb.connect().execute(f"INSTALL '{path}'")
""",
}


def home(name: str) -> str:
    version = TOOLS[name][0]
    return os.path.join(root(), f"{name}-{version}")


def root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "complaints-tools")


def executable(name: str) -> str:
    """The tool's executable, its environment built first if this machine has none yet."""
    _, requirements, program = TOOLS[name]
    folder = home(name)
    done = os.path.join(folder, ".complete")
    os.makedirs(root(), exist_ok=True)
    with open(os.path.join(root(), f".{name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(done):
            shutil.rmtree(folder, ignore_errors=True)  # a half-built one from an interrupted run
            python = os.environ.get("TOOL_PYTHON", "python3.11")
            subprocess.run([python, "-m", "venv", folder], check=True)
            subprocess.run([os.path.join(folder, "bin", "python"), "-m", "pip", "install", "--quiet",
                            "--disable-pip-version-check", *requirements], check=True)
            if name in _AFTER:
                subprocess.run([os.path.join(folder, "bin", "python"), "-c", _AFTER[name]], check=True,
                               env={**os.environ, "HOME": folder})
            open(done, "w").close()
    return os.path.join(folder, "bin", program)


class Server:
    """A tool's server process on loopback: started in its own session, ready once `health` answers 200, stopped
    with its children; its output goes to `log_path`."""

    def __init__(self, command: list[str], health: str, log_path: str, env: dict | None = None,
                 cwd: str | None = None):
        self.command, self.health, self.log_path, self.env, self.cwd = command, health, log_path, env, cwd
        self.process: subprocess.Popen | None = None

    def start(self, deadline_secs: float = 240) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                            cwd=self.cwd, start_new_session=True)
        end = time.monotonic() + deadline_secs
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command[0]} exited {self.process.returncode}: {self.log()[-2000:]}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.health, timeout=2) as answer:
                    if answer.status == 200:
                        return
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"{self.command[0]} did not answer {self.health} within {deadline_secs:.0f} s: "
                           f"{self.log()[-2000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()


if __name__ == "__main__":
    for tool in sys.argv[1:] or list(TOOLS):
        print(executable(tool))
