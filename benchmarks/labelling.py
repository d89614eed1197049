"""One `complaints label` run in a process of its own, the benchmarks' end-to-end measure of the nightly job, and
what it labels: a model trained for the purpose and an archive.

Its peak memory is sampled from outside (psutil, every 0.1 s): the resident memory of
the job and all its workers together, and the job's own high-water mark (`VmHWM`, the
kernel's exact peak of its address space). Not `wait4`'s `ru_maxrss`: Linux carries the
parent's high-water mark into a child across fork and exec, so a benchmark that had
trained a model before would report its own memory as every run's (two runs of
`benchmarks.e5_night` both read 1,327 MB that way). The process's stderr goes to a
temporary file, not a pipe: TensorFlow's logs could fill a pipe's buffer and hold the
process while nobody reads it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from model.sample import generate


def label_run(model: str, archive: str, output: str, flags: list[str], env: dict[str, str] | None = None) -> dict:
    """`complaints label --model MODEL --input ARCHIVE --output OUTPUT --no-progress FLAGS…` (with `env` added to
    the environment): its seconds, peak RSS in MB and summary.json; SystemExit with the end of its stderr if it
    fails."""
    command = [sys.executable, "-m", "pipelines", "label", "--model", model, "--input", archive, "--output", output,
               "--no-progress", *flags]
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, env={**os.environ, **(env or {})})
        peak = peak_while_running(process)
        seconds = time.perf_counter() - started
        if process.returncode != 0:
            errors.seek(0)
            raise SystemExit(f"label {' '.join(flags)} failed:\n{errors.read().decode(errors='replace')[-2000:]}")
    with open(os.path.join(output, "summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    return {"seconds": seconds, "peak_rss_mb": round(peak / 2**20), "summary": summary}


def peak_while_running(process: subprocess.Popen) -> int:
    """Bytes, once `process` has ended: the most it and its children held at once, or its own peak if that is
    more."""
    import psutil

    watched, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            tree = [watched, *watched.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()), high_water(process.pid))
        except psutil.Error:
            pass
        time.sleep(0.1)
    return peak


def high_water(pid: int) -> int:
    """The process's peak resident memory so far (`VmHWM`), in bytes; 0 where /proc cannot say."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            line = next((line for line in f if line.startswith("VmHWM:")), "VmHWM: 0 kB")
    except OSError:
        return 0
    return int(line.split()[1]) * 1024


def bench_label(model_dir: str, archive: str, out: str, extra: list[str],
                env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """`label_run` as the throughput table reads it: (rows/s by the job's own timer, peak RSS in MB, seconds)."""
    run = label_run(model_dir, archive, out, extra, env)
    return run["summary"]["rows_per_second"], run["peak_rss_mb"], run["summary"]["seconds"]


def precision_of(out: str) -> dict:
    """How a finished `label` run into `out` chose its precision: its summary.json's `precision` section."""
    with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
        return json.load(f)["precision"]


def build_model(out: str, rows: int, small: bool) -> None:
    """A reference-sized BiLSTM (or a tiny one for the CI smoke run), trained briefly."""
    from model.architecture import ArchitectureConfig
    from model.data import LabelledData
    from model.train import TrainConfig, train

    frame = generate(rows, seed=1)
    data = LabelledData(frame["text"].to_numpy(dtype=object), frame["category"].to_numpy(dtype=object), 0, [])
    architecture = ArchitectureConfig(max_tokens=2000, lstm_units=8) if small else ArchitectureConfig()
    train(data, out, architecture, TrainConfig(epochs=1, verbose=0))


def workspace(prefix: str, model: str | None, small: bool) -> tuple[str, str]:
    """(a fresh working folder, the model directory): `model`, or one trained into the folder."""
    work = tempfile.mkdtemp(prefix=prefix)
    model_dir = model or os.path.join(work, "model")
    if not model:
        build_model(model_dir, 3000 if small else 20_000, small)
    return work, model_dir


def write_archive(path: str, rows: int, source: str | None) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if source:
        table = pq.read_table(source, columns=["id", "text"])
        repeats = -(-rows // table.num_rows)
        table = pa.concat_tables([table] * repeats).slice(0, rows)
        table = table.set_column(0, "id", pa.array([f"r{i}" for i in range(rows)]))
    else:
        table = pa.Table.from_pandas(generate(rows, seed=9, labelled=False), preserve_index=False)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(table, path, compression="zstd", row_group_size=10_000)
    return table.column("text").to_pylist()


def bench_label_dask(model_dir: str, archive: str, out: str, runs: int = 1) -> list[tuple[float | None, str]]:
    """`label --runner DaskRunner` on a LocalCluster of 2 worker processes × 1 thread started here, `runs` times
    on the same cluster: the first on fresh workers, the later ones on workers that have imported TensorFlow
    and hold the compiled model already (a long-lived cluster)."""
    try:
        from distributed import LocalCluster
    except ImportError:
        return [(None, "dask not installed (pip install -e '.[dask]')")] * runs
    found = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster:
        for run in range(runs):
            rate, _, seconds = bench_label(model_dir, archive, f"{out}-{run}", [
                "--runner", "DaskRunner", "--dask_client_address", cluster.scheduler_address])
            found.append((rate, f"LocalCluster(2 processes x 1 thread), {'warm' if run else 'fresh'} workers, "
                                f"{seconds:.1f} s"))
    return found
