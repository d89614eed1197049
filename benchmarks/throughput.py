"""Reviews per second of the labelling job next to the raw model and the usual alternatives.

One archive of N generated reviews (or a ../shared/data file), one reference-sized
model, every variant in the same run, so the ratios are comparable on a noisy machine:

    raw            the serving function in graph mode on in-memory batches (best batch size)
    raw-xla        the same with the BiLSTM's numeric core compiled by XLA (the worker's FP32 default), warmed up
    raw-bf16       the serving function at --precision bf16 (Keras mixed_bfloat16 core, graph mode), batch 1,024,
                   on the first 20,000 texts (emulated bf16 is slow where the CPU has no bf16 instructions)
    raw-openvino-bf16  the serving function at --precision openvino-bf16 (TF vectoriser, OpenVINO core), batch 1,024
    raw-openvino-f32   the same at --precision openvino-f32 (the OpenVINO graph compiled at f32)
    keras-predict  model.predict(texts) with Keras defaults
    per-text       one model.predict([text]) per review, on a sample of 500
    stock-runinference  Beam's TFModelHandlerTensor, if it can run the artifact
    label          `complaints label`, Parquet in and out, local runner, defaults (--xla auto, --precision auto),
                   with auto's timing paid (no earlier run's timing kept: worker/precision_cache.py)
    label-fp32     the same with --precision fp32 (TensorFlow or OpenVINO's f32, whichever it timed faster)
    label-tensorflow-fp32  the same with COMPLAINTS_OPENVINO_F32=no: FP32 on TensorFlow only
    label-bf16     the same with --precision bf16 --force-precision
    label-openvino-bf16  the same with --precision openvino-bf16 --force-precision
    label-xla      the same with --xla on
    label-graph    the same with --xla off
    label-mp       the same with --direct_running_mode=multi_processing --direct_num_workers=2
    label-dask     the same with --runner DaskRunner on a LocalCluster of 2 processes started for it
    label-dask-warm  a second run on that cluster: its workers have TensorFlow imported and the model compiled

And what the raw variants leave out: the seconds a fresh process needs to load the
model and compile its nightly batch size (`prepare`), and `complaints label`'s own
time on a 10-row archive (its fixed cost). From them, the ceilings of label/raw-xla
and label/raw: raw-xla's (raw's) time over raw-xla's plus `prepare`, the best any
job that has to load and compile the model could reach, with nothing else to do.

    python -m benchmarks.throughput --rows 100000 --out benchmarks/results/throughput.json
    python -m benchmarks.throughput --rows 20000 --skip-4n --out benchmarks/results/throughput_20k.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.labelling import bench_label, bench_label_dask, precision_of, workspace, write_archive
from benchmarks.raw import bench_prepare, raw_variants
from model.precision import cpu_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--source", help="Take texts from this Parquet file (repeated to --rows)")
    parser.add_argument("--model", help="Use this model directory instead of training one")
    parser.add_argument("--small", action="store_true", help="Tiny model (CI smoke run)")
    parser.add_argument("--skip-4n", action="store_true", help="Skip the peak-RSS run at 4N rows")
    parser.add_argument("--out", default="benchmarks/results/throughput.json")
    parser.add_argument("--only", help="Comma-separated variants to run side by side (e.g. label,label-dask); "
                        "default: all")
    args = parser.parse_args()

    work, model_dir = workspace("throughput-", args.model, args.small)
    archive = os.path.join(work, "n", "archive.parquet")
    texts = write_archive(archive, args.rows, args.source)
    # `label` (auto) times its candidates as a machine's first run does: no timing kept from earlier runs
    os.environ["COMPLAINTS_PRECISION_CACHE"] = os.path.join(work, "precision-choices.json")

    results: list[dict] = []

    def add(name: str, rate: float | None, rss: float | None, note: str = "") -> None:
        results.append({"variant": name, "reviews_per_s": rate, "peak_rss_mb": rss, "note": note})
        print(f"  {name:<20} {rate or 0:>10,.0f} reviews/s  {note}", flush=True)

    wanted = set(args.only.split(",")) if args.only else None

    def want(name: str) -> bool:
        return wanted is None or name in wanted

    raw_detail, xla_detail = raw_variants(model_dir, texts, want, add)
    rss, label_seconds = _label_variants(model_dir, archive, work, want, add)
    memory = {"rows": args.rows, "label_peak_rss_mb": rss}
    if not args.skip_4n and rss:
        archive4 = os.path.join(work, "n4", "archive.parquet")
        write_archive(archive4, 4 * args.rows, args.source)
        _, rss4, _ = bench_label(model_dir, archive4, os.path.join(work, "out4"), [])
        memory.update({"rows_4n": 4 * args.rows, "label_peak_rss_mb_4n": rss4, "ratio": rss4 / rss})
    by = {r["variant"]: r["reviews_per_s"] for r in results}
    if wanted is not None:  # a partial run: the variants side by side, and label's ceiling if raw-xla ran
        fixed = _ceiling(model_dir, args.rows, by["raw-xla"], label_seconds) if by.get("raw-xla") else {}
        _report(args, results, by, {**_ratios(by), **_ceiling_ratios(by, fixed)}, fixed, memory, {}, xla_detail)
        return
    targets, fixed = _targets(args, model_dir, work, by, label_seconds, memory.get("ratio"))
    _report(args, results, by, targets, fixed, memory, raw_detail, xla_detail)


def _targets(args, model_dir: str, work: str, by: dict, label_seconds: float | None,
             rss_ratio: float | None) -> tuple[dict, dict]:
    """A full run's ratios and the fixed costs they leave out (`prepare`, label on 10 rows): (targets, fixed)."""
    raw, raw_xla, label = by["raw"], by["raw-xla"], by["label"]
    xla_rate, graph_rate = by["label-xla"], by["label-graph"]

    tiny = os.path.join(work, "tiny", "archive.parquet")
    write_archive(tiny, 10, args.source)
    fixed = {**_ceiling(model_dir, args.rows, raw_xla, label_seconds),
             "prepare_graph_s": bench_prepare(model_dir, xla=False),
             "label_10_rows_xla_s": bench_label(model_dir, tiny, os.path.join(work, "out-tiny"), ["--xla", "on"])[2]}
    fixed["label/raw ceiling"] = (args.rows / raw) / (args.rows / raw_xla + fixed["prepare_xla_s"])

    targets = {
        "label/raw-xla": label / raw_xla,
        "label/raw": label / raw,
        "best label/raw-xla": max(label, xla_rate, graph_rate) / raw_xla,
        "raw-xla/raw": raw_xla / raw,
        "label/keras-predict": label / by["keras-predict"],
        "label/per-text": label / by["per-text"],
        "rss(4N)/rss(N)": rss_ratio,
        "label/raw-xla ceiling": fixed["label/raw-xla ceiling"],
        "label/raw ceiling": fixed["label/raw ceiling"],
        **_ratios(by),
    }
    return targets, fixed


def _label_variants(model_dir: str, archive: str, work: str, want, add) -> tuple[float | None, float | None]:
    """`complaints label` with each setting, in a process of its own; (label's peak RSS, label's seconds)."""
    rss = label_seconds = None
    if want("label"):
        out = os.path.join(work, "out1")
        rate, rss, label_seconds = bench_label(model_dir, archive, out, [])
        add("label", rate, rss, f"complaints label, defaults (--precision auto): served {precision_of(out)['served']}")
    if want("label-fp32"):
        out = os.path.join(work, "out-fp32")
        add("label-fp32", bench_label(model_dir, archive, out, ["--precision", "fp32"])[0],
            None, f"complaints label --precision fp32: served {precision_of(out)['served']}")
    if want("label-tensorflow-fp32"):
        add("label-tensorflow-fp32", bench_label(model_dir, archive, os.path.join(work, "out-tf32"),
                                                 ["--precision", "fp32"], {"COMPLAINTS_OPENVINO_F32": "no"})[0],
            None, "complaints label --precision fp32, COMPLAINTS_OPENVINO_F32=no")
    for at in ("bf16", "openvino-bf16", "openvino-f32"):
        if want(f"label-{at}"):
            add(f"label-{at}", bench_label(model_dir, archive, os.path.join(work, f"out-{at}"),
                                           ["--precision", at, "--force-precision"])[0],
                None, f"complaints label --precision {at} --force-precision")
    if want("label-xla"):
        add("label-xla", bench_label(model_dir, archive, os.path.join(work, "out-xla"), ["--xla", "on"])[0], None,
            "complaints label --xla on")
    if want("label-graph"):
        add("label-graph", bench_label(model_dir, archive, os.path.join(work, "out-graph"), ["--xla", "off"])[0],
            None, "complaints label --xla off")
    if want("label-mp"):
        rate, rss_mp, _ = bench_label(model_dir, archive, os.path.join(work, "out2"),
                                      ["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
        add("label-mp", rate, rss_mp, "2 worker processes (RSS of all processes)")
    if want("label-dask") or want("label-dask-warm"):
        dask_runs = bench_label_dask(model_dir, archive, os.path.join(work, "out-dask"), 2 if want("label-dask-warm")
                                     else 1)
        for name, (rate, note) in zip(("label-dask", "label-dask-warm"), dask_runs, strict=False):
            add(name, rate, None, note)
    return rss, label_seconds


def _ceiling(model_dir: str, rows: int, raw_xla: float, label_seconds: float | None) -> dict:
    """The best label/raw-xla a job that loads and compiles the model could reach: raw-xla's time over raw-xla's
    plus a fresh process's load and compile (`prepare`)."""
    prepare = bench_prepare(model_dir, xla=True)
    seconds = rows / raw_xla
    return {"prepare_xla_s": prepare, "label_s": label_seconds, "label/raw-xla ceiling": seconds / (seconds + prepare)}


def _ceiling_ratios(by: dict, fixed: dict) -> dict:
    """label and TensorFlow's FP32 job against raw-xla, beside the ceiling."""
    if not fixed:
        return {}
    return {"label/raw-xla": _ratio(by, "label", "raw-xla"),
            "label-tensorflow-fp32/raw-xla": _ratio(by, "label-tensorflow-fp32", "raw-xla"),
            "label-fp32/raw-xla": _ratio(by, "label-fp32", "raw-xla"),
            "label/raw-xla ceiling": fixed["label/raw-xla ceiling"]}


def _ratios(by: dict) -> dict:
    """The side-by-side ratios any run can have, of the variants it ran."""
    return {"label/label-fp32 (auto over fp32)": _ratio(by, "label", "label-fp32"),
            "raw-bf16/raw": _ratio(by, "raw-bf16", "raw"), "raw-bf16/raw-xla": _ratio(by, "raw-bf16", "raw-xla"),
            "raw-openvino-bf16/raw-xla": _ratio(by, "raw-openvino-bf16", "raw-xla"),
            "label-openvino-bf16/label-fp32": _ratio(by, "label-openvino-bf16", "label-fp32"),
            "label-fp32/label-tensorflow-fp32": _ratio(by, "label-fp32", "label-tensorflow-fp32"),
            "label/label-tensorflow-fp32": _ratio(by, "label", "label-tensorflow-fp32"),
            "raw-openvino-f32/raw-xla (FP32 runtimes)": _ratio(by, "raw-openvino-f32", "raw-xla"),
            "label-bf16/label-fp32": _ratio(by, "label-bf16", "label-fp32"),
            "stock-runinference/label": _ratio(by, "stock-runinference", "label"),
            "label-dask/label": _ratio(by, "label-dask", "label"),
            "label-dask-warm/label": _ratio(by, "label-dask-warm", "label")}


def _ratio(by: dict, a: str, b: str) -> float | None:
    return by[a] / by[b] if by.get(a) and by.get(b) else None


def _report(args, results: list[dict], by: dict, targets: dict, fixed: dict, memory: dict, raw_detail: dict,
            xla_detail: dict) -> None:
    raw = by.get("raw")
    for r in results:
        r["ratio_to_raw"] = r["reviews_per_s"] / raw if r["reviews_per_s"] and raw else None
    from model.precision import isa_features

    machine = {"cores": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
               "isa_features": isa_features(), "cpu_class": cpu_class()}
    features = ", ".join(machine["isa_features"]) or "no AMX, AVX-512 BF16/VNNI or AVX-VNNI"
    print(f"\n{args.rows:,} reviews; {machine['cores']} cores, {machine['cpu']} ({features}): {machine['cpu_class']}")
    print(f"{'variant':<20} {'reviews/s':>11} {'ratio to raw':>13} {'peak RSS MB':>12}")
    for r in results:
        rate = f"{r['reviews_per_s']:,.0f}" if r["reviews_per_s"] else "n/a"
        ratio = f"{r['ratio_to_raw']:.3f}" if r["ratio_to_raw"] else "n/a"
        rss_text = f"{r['peak_rss_mb']:,.0f}" if r["peak_rss_mb"] else "n/a"
        print(f"{r['variant']:<20} {rate:>11} {ratio:>13} {rss_text:>12}   {r['note']}")
    print("targets: " + ", ".join(f"{k} = {v:.2f}" for k, v in targets.items() if v is not None))
    if fixed:
        raw_xla_seconds = args.rows / by["raw-xla"]
        label = f", label {fixed['label_s']:.1f} s" if fixed.get("label_s") else ""
        print(f"fixed: model load + compile {fixed['prepare_xla_s']:.2f} s with XLA; raw-xla needs "
              f"{raw_xla_seconds:.1f} s for these rows{label}")
        if "prepare_graph_s" in fixed:
            print(f"       {fixed['prepare_graph_s']:.2f} s without XLA; label on 10 rows "
                  f"{fixed['label_10_rows_xla_s']:.2f} s (--xla on)")
    if "ratio" in memory:
        print(f"label peak RSS: {memory['label_peak_rss_mb']:,.0f} MB at {args.rows:,} rows, "
              f"{memory['label_peak_rss_mb_4n']:,.0f} MB at {4 * args.rows:,} rows")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"results": results, "memory": memory, "fixed": fixed, "targets": targets, "raw": raw_detail,
                   "raw_xla": xla_detail, "machine": machine}, f, indent=2)


def cpu_class() -> str:
    """The class benchmarks/RESULTS.md keeps one table for: what decides this project's speed."""
    from model.precision import cpu_flags

    flags = cpu_flags()
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX-512 BF16 without AMX"
    if "avx512f" in flags:
        return "AVX-512 without BF16"
    return "AVX2 only" if "avx2" in flags else "without AVX2"


if __name__ == "__main__":
    main()
