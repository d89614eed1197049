"""One `complaints label` run in a process of its own: the benchmarks' end-to-end measure of the nightly job.

Its peak RSS comes from the kernel (`wait4`), so each run's memory is its own. The
process's stderr goes to a temporary file, not a pipe: TensorFlow's logs could fill a
pipe's buffer and hold the process while nobody reads it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time


def label_run(model: str, archive: str, output: str, flags: list[str]) -> dict:
    """`complaints label --model MODEL --input ARCHIVE --output OUTPUT --no-progress FLAGS…`: its seconds, peak
    RSS in MB and summary.json; SystemExit with the end of its stderr if it fails."""
    command = [os.path.join(os.path.dirname(sys.executable), "complaints"), "label", "--model", model, "--input",
               archive, "--output", output, "--no-progress", *flags]
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        if status != 0:
            errors.seek(0)
            raise SystemExit(f"label {' '.join(flags)} failed:\n{errors.read().decode(errors='replace')[-2000:]}")
    with open(os.path.join(output, "summary.json")) as f:
        summary = json.load(f)
    return {"seconds": seconds, "peak_rss_mb": round(usage.ru_maxrss / 1024), "summary": summary}
