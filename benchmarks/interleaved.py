"""`complaints label` variants run in turn, several rounds, medians: for ratios a noisy 2-core machine can support.

One `throughput` run measures each variant once, and on these machines two runs of
the same command differ by up to a fifth. Here every round runs each variant once,
in the same order, on one archive and one model, and the medians are compared:

    label          defaults (--precision auto); the precision auto served is printed for each round, and
                   whether it timed the candidates or reused an earlier run's timing (worker/precision_cache.py:
                   round 1 times unless --keep-cache, later rounds reuse it)
    label-fp32     --precision fp32: TensorFlow or OpenVINO's f32, whichever timed faster (kept like auto's)
    label-tensorflow-fp32  --precision fp32 with COMPLAINTS_OPENVINO_F32=no: FP32 on TensorFlow alone
    label-openvino-bf16, label-bf16   with --lower: each lower precision forced (--force-precision)
    label-dask     --runner DaskRunner on one LocalCluster(2 processes x 1 thread) kept for all rounds:
                   round 1 finds fresh workers, later rounds warm ones (TensorFlow imported, model compiled)

    python -m benchmarks.interleaved --model MODEL --rows 100000 --rounds 3 \\
        --out benchmarks/results/interleaved.json
    python -m benchmarks.interleaved --model MODEL --source ../shared/data/D/test.parquet --no-dask --lower \\
        --rounds 5 --out benchmarks/results/interleaved_precision.json   # auto against fp32
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.labelling import bench_label, precision_of, workspace, write_archive
from model.precision import cpu_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", help="Use this model directory instead of training one")
    parser.add_argument("--small", action="store_true", help="Tiny model (CI smoke run)")
    parser.add_argument("--no-dask", action="store_true", help="Leave out the Dask variant")
    parser.add_argument("--lower", action="store_true", help="Add each lower precision, forced")
    parser.add_argument("--source", help="Take texts from this Parquet file (repeated to --rows)")
    parser.add_argument("--keep-cache", action="store_true", help="Leave auto's kept timing as it is (default: "
                        "start with an empty one in the work folder, so round 1 times)")
    parser.add_argument("--out", default="benchmarks/results/interleaved.json")
    args = parser.parse_args()

    work, model_dir = workspace("interleaved-", args.model, args.small)
    archive = os.path.join(work, "archive", "archive.parquet")
    write_archive(archive, args.rows, args.source)
    if not args.keep_cache:  # round 1 pays for auto's timing, as a machine's first run does
        os.environ["COMPLAINTS_PRECISION_CACHE"] = os.path.join(work, "precision-choices.json")

    variants = {"label": [], "label-fp32": ["--precision", "fp32"], "label-tensorflow-fp32": ["--precision", "fp32"]}
    environments = {"label-tensorflow-fp32": {"COMPLAINTS_OPENVINO_F32": "no"}}
    if args.lower:
        variants.update({f"label-{at}": ["--precision", at, "--force-precision"] for at in ("openvino-bf16", "bf16")})
    served: dict[str, list[str]] = {"label": [], "label-fp32": []}
    runs: dict[str, list[float]] = {name: [] for name in variants}
    cluster = None
    if not args.no_dask:
        from distributed import LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0")
        variants["label-dask"] = ["--runner", "DaskRunner", "--dask_client_address", cluster.scheduler_address]
        runs["label-dask"] = []
    try:
        for round_ in range(args.rounds):
            for name, extra in variants.items():
                out = os.path.join(work, f"{name}-{round_}")
                rate = bench_label(model_dir, archive, out, extra, environments.get(name))[0]
                runs[name].append(rate)
                note = ""
                if name in served:  # the settings that choose: what they served, and whether they timed it now
                    chosen, note = _served(out)
                    served[name].append(chosen)
                print(f"round {round_ + 1}: {name:<20} {rate:>8,.0f} rows/s{note}", flush=True)
    finally:
        if cluster is not None:
            cluster.close()

    _report(args, model_dir, runs, served)


def _served(out: str) -> tuple[str, str]:
    """(what a run that chooses served, "(kept)" where it took an earlier run's timing; the line's note)."""
    choice = precision_of(out)
    rates = choice.get("rows_per_second")
    kept = bool(rates) and not choice.get("measured_now", True)
    timing = "nothing timed" if not rates else "as kept from an earlier run" if kept else "timed now"
    return choice["served"] + (" (kept)" if kept else ""), f"  served {choice['served']} ({timing}: {rates})"


def _report(args, model_dir: str, runs: dict[str, list[float]], served: dict[str, list[str]]) -> None:
    """The medians and their ratios to label-fp32, printed and written to `args.out`."""
    from model.precision import isa_features

    medians = {name: statistics.median(rates) for name, rates in runs.items()}
    if "label-dask" in runs and len(runs["label-dask"]) > 1:
        medians["label-dask (warm rounds)"] = statistics.median(runs["label-dask"][1:])
    ratios = {f"{name}/label-fp32": rate / medians["label-fp32"] for name, rate in medians.items()
              if name != "label-fp32"}
    features = isa_features()
    print(f"\n{args.rows:,} rows, {args.rounds} rounds; {os.cpu_count()} cores, {cpu_model()} "
          f"({', '.join(features) or 'no AMX, AVX-512 BF16/VNNI or AVX-VNNI'})")
    print(f"{'variant':<26} {'median rows/s':>14}  runs")
    for name, rate in medians.items():
        shown = runs.get(name, runs.get("label-dask", []))
        print(f"{name:<26} {rate:>14,.0f}  {', '.join(f'{r:,.0f}' for r in shown)}")
    print("ratios: " + ", ".join(f"{k} = {v:.2f}" for k, v in ratios.items()))
    print("served: " + "; ".join(f"{name}: {', '.join(chosen)}" for name, chosen in served.items()))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"rows": args.rows, "rounds": args.rounds, "source": args.source, "model": model_dir,
                   "auto_served": served["label"], "fp32_served": served["label-fp32"],
                   "runs": runs, "medians": medians, "ratios": ratios,
                   "machine": {"cores": os.cpu_count(), "cpu": cpu_model(), "isa_features": features}}, f, indent=2)


if __name__ == "__main__":
    main()
