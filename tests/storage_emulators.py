"""A GCS emulator started for a test module on a free loopback port, with Google's clients pointed at it.

Two emulators from the package registry, each for what it can test: gcp-storage-emulator
runs Beam's whole gs:// file work (its batch copies and deletes), fake-gcs-server
enforces generation preconditions on writes (the gs:// hold), which the first ignores.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

from pipelines.app.pubsub_admin import free_port


@contextlib.contextmanager
def storage_emulator(command: Callable[[int], list[str]], timeout: float = 30.0) -> Iterator[str]:
    """Run `command(port)`, wait until it listens, set `STORAGE_EMULATOR_HOST`; stop it and restore after."""
    port = free_port()
    server = subprocess.Popen(command(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # they log a lot
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, f"{command(port)[0]} did not start"
            time.sleep(0.1)
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    try:
        yield os.environ["STORAGE_EMULATOR_HOST"]
    finally:
        if previous is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous
        server.terminate()
        server.wait(timeout=30)
