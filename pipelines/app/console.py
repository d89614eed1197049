"""Terminal output helpers shared by the commands: quiet TensorFlow, one-line errors."""

from __future__ import annotations

import logging
import os
import sys
import warnings


def quiet_tensorflow() -> None:
    """Import TensorFlow with its C++ start-up chatter silenced.

    TensorFlow 2.21 prints oneDNN/CUDA notices before absl logging is initialised, so
    no environment variable hides them; stderr is pointed at /dev/null for the import
    and the first device query only. Python exceptions still surface normally.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    warnings.filterwarnings("ignore", category=UserWarning, module="keras")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def quiet_beam(verbose: bool) -> None:
    """Beam logs every worker exception with its traceback at ERROR; the CLI reports the
    cause in one line instead, and `--verbose` brings Beam's own logging back."""
    logging.getLogger("apache_beam").setLevel(logging.INFO if verbose else logging.CRITICAL)


def show_worker_log() -> None:
    """The worker's own lines (which model it serves, swaps, refusals) on stderr, as plain lines."""
    logger = logging.getLogger("complaints")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def fail(message: str, code: int = 2) -> None:
    """Print one `error:` line to stderr and exit: the user-error contract."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)
