"""Every report's plotting entry: pyplot on the file-only Agg backend, so reports never open a window."""

from __future__ import annotations


def pyplot():
    """pyplot on the file-only Agg backend: reports never open a window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
