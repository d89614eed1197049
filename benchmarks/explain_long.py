"""What `label --explain 3` costs on the longest texts the job accepts: the nightly job, end to end, on an archive
of texts of 50,000 characters (`MAX_TEXT_CHARS`), with and without explanations; rows/s and peak memory.

Long random texts are exactly the uncertain rows that get explained, so this is where an
explanation that built every variant from the whole text would run out of memory. Each
variant is one `complaints label` process (the jobs' own path: Parquet in, Beam's
DirectRunner, the batched core, the staged commit), its peak RSS its own
(`benchmarks.labelling`). The variants run in turn on one archive and one model.

    python -m benchmarks.explain_long --rows 10000 --out benchmarks/results/explain_long.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.labelling import label_run
from model.precision import cpu_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a trained model directory (default: a reference-size BiLSTM trained here)")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--chars", type=int, default=50_000, help="characters per text")
    parser.add_argument("--out", default="benchmarks/results/explain_long.json")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="explain-long-")
    model = args.model or _trained(work)
    archive = _archive(os.path.join(work, "in"), args.rows, args.chars)
    rows = []
    for name, flags in (("none", []), ("--explain 3", ["--explain", "3"]),
                        ("--explain 3 --explain-all", ["--explain", "3", "--explain-all"])):
        run = label_run(model, archive, os.path.join(work, "out-" + name.replace(" ", "").replace("-", "")), flags)
        rows.append({"variant": name, "rows": args.rows, "seconds": round(run["seconds"], 1),
                     "rows_per_second": round(args.rows / run["seconds"], 1), "peak_rss_mb": run["peak_rss_mb"],
                     "needs_review_share": round(run["summary"]["needs_review_share"], 3)})
    base = rows[0]["seconds"]
    print(f"{'variant':27} {'rows':>7} {'seconds':>8} {'rows/s':>8} {'× none':>7} {'peak RSS MB':>11} {'review':>7}")
    for r in rows:
        r["ratio_to_none"] = round(base / r["seconds"], 3)
        print(f"{r['variant']:27} {r['rows']:7,} {r['seconds']:8.1f} {r['rows_per_second']:8.1f} "
              f"{r['ratio_to_none']:7.3f} {r['peak_rss_mb']:11,} {r['needs_review_share']:7.1%}")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"cpu": cpu_model(), "cores": os.cpu_count(), "rows": args.rows, "chars": args.chars,
                   "model": args.model or "reference-size BiLSTM, 1 epoch on 6,000 generated rows",
                   "results": rows}, f, indent=2)


def _trained(work: str) -> str:
    from model.architecture import ArchitectureConfig
    from model.data import LabelledData
    from model.sample import generate
    from model.train import TrainConfig, train

    frame = generate(6000, seed=1)
    labelled = LabelledData(frame["text"].to_numpy(object), frame["category"].to_numpy(object), 0, [])
    directory = os.path.join(work, "model")
    train(labelled, directory, ArchitectureConfig(), dataclasses.replace(TrainConfig(), epochs=1, verbose=0))
    return directory


def _archive(folder: str, rows: int, chars: int) -> str:
    """`rows` texts of `chars` characters each: the sample's complaints run together, as a pasted e-mail thread
    would be, in Parquet files of 1,000 rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from model.sample import generate

    os.makedirs(folder)
    pool = generate(2000, seed=3, labelled=False)["text"].tolist()
    rng = np.random.default_rng(0)
    for start in range(0, rows, 1000):
        texts = []
        for _ in range(min(1000, rows - start)):
            text = ""
            while len(text) < chars:
                text += " " + pool[int(rng.integers(len(pool)))]
            texts.append(text[:chars])
        ids = [f"long-{start + i}" for i in range(len(texts))]
        pq.write_table(pa.table({"id": ids, "text": texts}), os.path.join(folder, f"part-{start // 1000:03d}.parquet"))
    return os.path.join(folder, "*.parquet")


if __name__ == "__main__":
    main()
