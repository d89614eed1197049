"""Peak memory of the nightly job when every row is dead-lettered, against an archive of valid rows.

Dead letters used to be gathered into one list on one worker before being written;
now they are written like predictions, a bounded table at a time
(`pipelines.sinks.parquet_files`). This runs `complaints label` (its own process,
peak RSS of it and its workers sampled with psutil) on archives whose text column is
entirely null, and on archives of generated complaints of the same sizes, side by side:

    python -m benchmarks.dead_letters --rows 50000,200000 --out benchmarks/results/dead_letters.json

The model is small (its memory is not what is measured); the rows are what vary.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

from benchmarks.labelling import bench_label, build_model, write_archive


def write_null_archive(path: str, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(os.path.dirname(path), exist_ok=True)
    table = pa.table({"id": pa.array([f"n{i}" for i in range(rows)]), "text": pa.nulls(rows, pa.string())})
    pq.write_table(table, path, compression="zstd", row_group_size=10_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="50000,200000", help="Comma-separated archive sizes.")
    parser.add_argument("--out", default="benchmarks/results/dead_letters.json")
    args = parser.parse_args()
    sizes = [int(n) for n in args.rows.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as work:
        model = os.path.join(work, "model")
        build_model(model, 2000, small=True)
        for rows in sizes:
            for kind in ("all-null text", "valid text"):
                archive = os.path.join(work, f"{kind[:3]}-{rows}", "part-0.parquet")
                if kind == "all-null text":
                    write_null_archive(archive, rows)
                else:
                    write_archive(archive, rows, None)
                out = os.path.join(work, f"out-{kind[:3]}-{rows}")
                _, peak_mb, seconds = bench_label(model, archive, out, [])
                summary = json.load(open(os.path.join(out, "summary.json")))
                results.append({"rows": rows, "archive": kind, "seconds": seconds, "peak_rss_mb": round(peak_mb, 1),
                                 "dead_lettered": summary["dead_lettered"], "predicted": summary["predicted"]})
    smallest = {r["archive"]: r["peak_rss_mb"] for r in results if r["rows"] == sizes[0]}
    for r in results:
        r["peak_vs_smallest_size"] = round(r["peak_rss_mb"] / smallest[r["archive"]], 3)
    print(f"{'rows':>9} {'archive':<14} {'dead-lettered':>13} {'seconds':>8} {'peak RSS MB':>12} "
          f"{'× smallest':>10}")
    for r in results:
        print(f"{r['rows']:>9,} {r['archive']:<14} {r['dead_lettered']:>13,} {r['seconds']:>8.1f} "
              f"{r['peak_rss_mb']:>12,.0f} {r['peak_vs_smallest_size']:>10.2f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"results": results}, f, indent=2)


if __name__ == "__main__":
    main()
