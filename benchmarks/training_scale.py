"""Training at scale: wall time per phase, peak memory and test accuracy, by rows and architecture.

Each (rows, architecture) is one `complaints train` run in its own process, on an
archive of generated complaints (cached in --cache), so its peak resident memory is
its own (`benchmarks.labelling.peak_while_running`). The phases and epochs are read from training's own progress
lines (`[train] NAME: done in S s`); accuracy and ECE from the artifact's metadata.

    python -m benchmarks.training_scale --rows 10000,100000,431306 --out benchmarks/results/training_scale.json
    python -m benchmarks.training_scale --rows 431306 --architectures bilstm --epochs 1   # one epoch's time

Long: at 431,306 rows the linear model takes ~10 minutes and a BiLSTM epoch more.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.labelling import peak_while_running

DONE = re.compile(r"\[train\] (.+?): done in ([0-9.]+) s")


def archive(rows: int, cache: str, seed: int) -> str:
    path = os.path.join(cache, f"generated_{rows}_{seed}.parquet")
    if not os.path.exists(path):
        from model.sample import generate
        from pipelines.app.files import write_frame

        os.makedirs(cache, exist_ok=True)
        write_frame(generate(rows, seed=seed), path + ".tmp")
        os.replace(path + ".tmp", path)
    return path


def run(data: str, architecture: str, epochs: int, out: str) -> dict:
    command = [sys.executable, "-m", "pipelines", "train", "--data", data, "--out", out, "--architecture",
               architecture, "--epochs", str(epochs)]
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
        peak = peak_while_running(process)  # its own, where wait4's ru_maxrss would carry this process's
        log.seek(0)
        output = log.read()
    wall = time.monotonic() - started
    if process.returncode != 0:
        return {"error": output[-2000:], "wall_seconds": round(wall, 1)}
    phases: dict[str, float] = {}
    for line in re.split(r"[\r\n]+", output):  # Keras' bars rewrite their line with \r
        match = DONE.search(line)
        if match:
            phases[match.group(1)] = float(match.group(2))
    with open(os.path.join(out, "metadata.json"), encoding="utf-8") as f:
        metadata = json.load(f)
    epoch_seconds = [seconds for name, seconds in phases.items() if name.startswith("epoch ")]
    refit_epoch_seconds = [seconds for name, seconds in phases.items() if name.startswith("refit epoch ")]
    return {
        "wall_seconds": round(wall, 1),
        "peak_rss_mb": round(peak / 2**20),
        "phases": {name: round(seconds, 1) for name, seconds in phases.items()},
        "seconds_per_epoch": round(sum(epoch_seconds) / len(epoch_seconds), 1) if epoch_seconds else None,
        "seconds_per_refit_epoch": round(sum(refit_epoch_seconds) / len(refit_epoch_seconds), 1)
        if refit_epoch_seconds else None,
        "chosen": metadata["selection"]["chosen"],
        "test_accuracy": metadata["test_metrics"]["accuracy"],
        "test_ece": metadata["calibration"]["test_ece_after"],
        "test_ece_uncalibrated": metadata["calibration"]["test_ece_before"],
        "calibration_set": metadata["calibration"]["fitted_on"],
        "solver": {k: metadata["architecture"].get(k) for k in ("iterations", "best_iteration", "stopped_early")}
        if metadata["architecture"]["name"] == "linear" else None,
        "epochs_run": metadata["training"]["epochs_run"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="10000,100000,431306")
    parser.add_argument("--architectures", default="linear,bilstm,auto")
    parser.add_argument("--epochs", type=int, default=10, help="The BiLSTM's most epochs (early stopping may stop it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=os.path.join("benchmarks", ".cache"))
    parser.add_argument("--out", default="benchmarks/results/training_scale.json")
    args = parser.parse_args()
    results = []
    for rows in (int(r) for r in args.rows.split(",")):
        data = archive(rows, args.cache, args.seed)
        for architecture in args.architectures.split(","):
            with tempfile.TemporaryDirectory() as out:
                result = {"rows": rows, "architecture": architecture, "epochs": args.epochs,
                          **run(data, architecture, args.epochs, os.path.join(out, "model"))}
            results.append(result)
            print(json.dumps(result), flush=True)
    print(f"\n{'rows':>8} {'arch':<7} {'wall':>8} {'peak RSS':>9} {'s/epoch':>8} {'test acc':>9} {'ECE':>7}  "
          "phases (s)")
    for r in results:
        if "error" in r:
            print(f"{r['rows']:>8,} {r['architecture']:<7} failed: {r['error'][-200:]}")
            continue
        phases = ", ".join(f"{k} {v:.0f}" for k, v in r["phases"].items() if "epoch " not in k)
        per_epoch = f"{r['seconds_per_epoch']:.0f}" if r["seconds_per_epoch"] else "-"
        print(f"{r['rows']:>8,} {r['architecture']:<7} {r['wall_seconds']:>7.0f}s {r['peak_rss_mb']:>6} MB "
              f"{per_epoch:>8} {r['test_accuracy']:>9.4f} {r['test_ece']:>7.4f}  {phases}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"machine": {"cpus": os.cpu_count(), "platform": sys.platform}, "results": results}, f, indent=2)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
