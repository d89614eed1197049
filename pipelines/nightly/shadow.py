"""The champion and its challenger on the same night, paired by complaint id from the night's own files.

`label --shadow MODEL` scores every row a second time and writes those verdicts to
`shadow-*.parquet` beside the predictions, never into them. What the two models did
differently is read back from the files, after the books balance: one reading for the
night's summary (in the staging folder) and for `complaints compare --night OUTPUT`
later (in the committed output, with the review answers that came in since), so the
figures a promotion is decided on are the same in both places. Three columns of two
files are read: about 3 MB per 100,000 rows.

Rows are paired by id. An id that occurs more than once in the night (possible: ids
are the user's) cannot be paired with certainty and is left out, counted; a row the
challenger dead-lettered but the champion labelled is counted too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from model import compare
from pipelines.sinks.parquet_files import PREDICTION_FILES, SHADOW_FILES

COLUMNS = ["id", "label", "confidence", "model_version"]
FLIPS_SHOWN = 10


def verdicts(folder: str, pattern: str) -> pd.DataFrame:
    """The id, label, confidence and model version of every row in `folder`'s files matching `pattern`."""
    found = FileSystems.match([folder.rstrip("/") + "/" + pattern])[0].metadata_list
    frames = []
    for path in sorted(m.path for m in found):
        with FileSystems.open(path, compression_type="uncompressed") as f:
            frames.append(pq.read_table(f, columns=COLUMNS).to_pandas())
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def paired(folder: str) -> tuple[pd.DataFrame, dict]:
    """(one row per id both models labelled: `label_a/confidence_a` the champion's, `_b` the challenger's; what
    was left out and why)."""
    champion, shadow = verdicts(folder, PREDICTION_FILES), verdicts(folder, SHADOW_FILES)
    repeated = set(champion["id"][champion["id"].duplicated()]) | set(shadow["id"][shadow["id"].duplicated()])
    champion, shadow = champion[~champion["id"].isin(repeated)], shadow[~shadow["id"].isin(repeated)]
    both = champion.merge(shadow, on="id", suffixes=("_a", "_b"))
    left_out = {"ids_repeated": len(repeated), "challenger_dead_lettered": int(len(champion) - len(both))}
    return both.reset_index(drop=True), left_out


def sides(rows: pd.DataFrame) -> tuple[tuple, tuple]:
    """(the champion's, the challenger's) (labels, confidences) of paired rows, as `model.compare` takes them."""
    return ((rows["label_a"].tolist(), rows["confidence_a"].to_numpy(float)),
            (rows["label_b"].tolist(), rows["confidence_b"].to_numpy(float)))


def section(folder: str, truth: pd.DataFrame | None = None) -> dict:
    """The night's `shadow` summary: agreement, the commonest flips, the confidence shift, and with `truth`
    (`id, category` of reviewed rows of this night) each model's accuracy on those rows."""
    both, left_out = paired(folder)
    if both.empty:
        return {"rows": 0, "left_out": left_out}
    unlabelled = compare.unlabelled(*sides(both))
    shifts = both["confidence_b"].to_numpy(float) - both["confidence_a"].to_numpy(float)
    result = {
        "model_version": str(both["model_version_b"].iloc[0]),
        "champion_version": str(both["model_version_a"].iloc[0]),
        "rows": len(both), "left_out": left_out, "agreement": unlabelled["agreement"],
        "flips": [{"champion": f["a"], "challenger": f["b"], "rows": f["rows"]}
                  for f in unlabelled["flips"][:FLIPS_SHOWN]],
        "flipped_from": _flipped_from(both),
        "confidence": {"champion": unlabelled["a"]["mean_confidence"],
                       "challenger": unlabelled["b"]["mean_confidence"], "mean_shift": float(np.mean(shifts))},
    }
    result["reviewed"] = reviewed(both, truth)
    return result


def _flipped_from(both: pd.DataFrame) -> dict:
    """Per champion category: its rows and the share the challenger labels otherwise."""
    grouped = both.assign(flip=both["label_a"] != both["label_b"]).groupby("label_a")["flip"]
    return {str(name): {"rows": int(n), "flipped": float(share)}
            for name, n, share in zip(grouped.size().index, grouped.size(), grouped.mean(), strict=True)}


def judged(both: pd.DataFrame, truth: pd.DataFrame | None) -> dict | None:
    """Champion (a) and challenger (b) against the reviewed category of the paired rows people reviewed
    (`model.compare.labelled`: both models' figures, the paired intervals, McNemar); None without such rows."""
    if truth is None or truth.empty:
        return None
    rows = both.merge(truth[["id", "category"]].drop_duplicates("id"), on="id")
    if rows.empty:
        return None
    return compare.labelled(rows["category"].tolist(), *sides(rows))


def reviewed(both: pd.DataFrame, truth: pd.DataFrame | None) -> dict | None:
    """Each model's accuracy on the reviewed rows, for the summary (`judged`, in short); None without them."""
    result = judged(both, truth)
    if result is None:
        return None
    return {"rows": result["rows"], "champion_accuracy": result["a"]["accuracy"],
            "challenger_accuracy": result["b"]["accuracy"], "difference": result["difference"]["accuracy"],
            "mcnemar_p": result["mcnemar"]["p_value"]}


def render(shadow: dict) -> list[str]:
    """The summary's lines about the challenger."""
    if "not_scored" in shadow:
        return [f"shadow         not scored: {shadow['not_scored']}"]
    if "not_compared" in shadow:
        return [f"shadow         written to shadow-*.parquet, not compared: {shadow['not_compared']}"]
    if not shadow["rows"]:
        return ["shadow         no row was labelled by both models"]
    c = shadow["confidence"]
    lines = [f"shadow         {shadow['model_version']} agrees on {shadow['agreement']:.1%} of "
             f"{shadow['rows']:,} rows; mean confidence {c['champion']:.3f} → {c['challenger']:.3f}"]
    lines += [f"  {f['rows']:>9,}  {f['champion']} → {f['challenger']}" for f in shadow["flips"][:3]]
    if shadow.get("reviewed"):
        r = shadow["reviewed"]
        lines.append(f"  on {r['rows']:,} reviewed rows: champion {r['champion_accuracy']:.1%}, challenger "
                     f"{r['challenger_accuracy']:.1%}")
    return lines
