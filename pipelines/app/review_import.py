"""The review loop's way back: reviewers' answers, from any export Label Studio writes, into the answers file.

`complaints review import` reads Label Studio's JSON or JSON-min export (every
annotation that was not cancelled, with its annotator and time), Label Studio's CSV
export of tasks this project exported (their `complaint_id` names the complaint), or the
project's own CSV filled in a spreadsheet. It maps renamed categories (`--rename
OLD=NEW`), refuses a category the model does not know (one line each), and merges the
answers into `--out`: per complaint and annotator the newest answer stands, whatever
order the exports are imported in (`model.corrections`). Nothing is written unless
everything read is valid.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import sys
from collections import defaultdict

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from model.corrections import ANSWERS_SCHEMA, answered_at, kept, resolved, shared_across_nights, upgraded
from model.errors import UserError
from pipelines.app import label_studio
from pipelines.app.uploads import restored


def import_corrections(source: str, target: str, labels: list[str], renames: dict[str, str],
                       skip_unknown: bool = False) -> str:
    """Read reviewers' answers from `source`, check them against `labels`, merge them into `target`; the line
    the command prints."""
    kind = os.path.splitext(source)[1].lower().lstrip(".")
    try:
        found, counts = _from_csv(source) if kind == "csv" else _from_json(source)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{source} cannot be read as a Label Studio export: {exc}") from None
    return merge_answers(found, counts, source, target, labels, renames, skip_unknown)


def merge_answers(found: list[dict], counts: dict[str, int], source: str, target: str, labels: list[str],
                  renames: dict[str, str], skip_unknown: bool) -> str:
    """Check answers read from any source and merge them into `target` (written whole, or not at all)."""
    rows, unknown = _checked(found, source, set(labels), renames)
    if unknown and not skip_unknown:
        raise UserError(f"{len(unknown)} answer(s) name categories the model does not know (listed above): map a "
                        "renamed one with --rename OLD=NEW, or leave them out with --skip-unknown")
    _in_their_nights(rows)
    earlier = _earlier(target)
    answers = pd.DataFrame(rows, columns=ANSWERS_SCHEMA.names)
    combined = pd.concat([earlier, upgraded(answers)], ignore_index=True) if len(earlier) else upgraded(answers)
    shared_across_nights(combined, f"the corrections for {target}",
                         ", or keep each night's corrections in its own file")
    merged = kept(combined).sort_values(["night", "id", "annotator"], na_position="first", kind="stable")
    table = pa.Table.from_pandas(merged, schema=ANSWERS_SCHEMA, preserve_index=False)
    pq.write_table(table, target + ".tmp")
    os.replace(target + ".tmp", target)
    decided = resolved(merged)
    disagreeing, ties = int((decided["agreement"] < 1).sum()), int((decided["decided_by"] == "tie").sum())
    left_out = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items() if v)
    return (f"{len(rows):,} answer(s) from {source} into {target} ({len(decided):,} reviewed complaint(s), "
            f"{len(merged):,} answer(s) in all; {len(earlier) + len(rows) - len(merged):,} replaced an earlier answer "
            "by the same annotator)" + (f"; left out: {left_out}" if left_out else "")
            + (f"; unknown categories skipped: {len(unknown)}" if unknown else "")
            + (f"; reviewers disagree on {disagreeing:,} ({ties:,} tie(s)): `complaints review report "
               f"--corrections {target}` lists them" if disagreeing else ""))


def _checked(found: list[dict], source: str, known: set[str], renames: dict[str, str]) -> tuple[list, list]:
    rows, unknown = [], []
    for item in found:
        category = renames.get(item["category"], item["category"])
        if category not in known:
            unknown.append(item)
            where = f"task {item['task']}" if item.get("task") is not None else "row"
            print(f"unknown category: {where} (id {item['id']!r}): {item['category']!r} is not one of the model's "
                  "categories", file=sys.stderr)
            continue
        if not item["id"] or not isinstance(item["text"], str) or not item["text"].strip():
            raise UserError(f"{source}: an answer without its complaint's id or text (task {item.get('task')}): "
                            "export the tasks with `complaints review export`, which carries both")
        rows.append({**{k: item.get(k) for k in ANSWERS_SCHEMA.names}, "category": category})
    return rows, unknown


def _in_their_nights(rows: list[dict]) -> None:
    """One line for answers whose complaint is not in the night they name (an export edited by hand, or tasks
    from another project): they would relabel nothing, or another complaint. A night that is no longer there
    (moved, or past its retention) cannot be asked and is passed over, said on stderr."""
    from pipelines.app.review import night_ids

    by_night: dict[str, list[str]] = {}
    for row in rows:
        if row.get("night"):
            by_night.setdefault(row["night"], []).append(row["id"])
    for night, ids in sorted(by_night.items()):
        known = night_ids(night)
        if known is None:
            print(f"note: the night {night} is not there to check the answers' ids against", file=sys.stderr)
            continue
        missing = sorted({i for i in ids if i not in known})
        if missing:
            raise UserError(f"{len(missing):,} answer(s) name complaints that are not in their night (e.g. id "
                            f"{missing[0]!r} in {night}): export the tasks again with `complaints review export`, "
                            "or leave those answers out of the file")


def _from_json(source: str) -> tuple[list[dict], dict[str, int]]:
    with open(source, encoding="utf-8") as f:
        exported = json.load(f)
    return label_studio.answers(exported)


def _from_csv(source: str) -> tuple[list[dict], dict[str, int]]:
    """The project's CSV (`id` is the complaint's; defused cells restored; time from an `answered_at` column, else
    the file's modification time, when the spreadsheet was saved), or Label Studio's CSV export of this
    project's tasks (`complaint_id` names the complaint, `id` the task)."""
    saved = dt.datetime.fromtimestamp(os.path.getmtime(source), dt.UTC).isoformat()
    with open(source, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        columns = set(reader.fieldnames or [])
        theirs = "complaint_id" in columns
        if "annotation_id" in columns and not theirs:
            raise ValueError("this is Label Studio's CSV export of tasks without `complaint_id`: its `id` is the "
                             "task's, not the complaint's; export the tasks with `complaints review export`")
        missing = {"complaint_id" if theirs else "id", "text", "category"} - columns
        if missing:
            raise ValueError(f"columns {sorted(missing)} missing (id, text and category are needed)")
        found, counts = [], {"not_annotated": 0}
        for n, raw in enumerate(reader, start=2):
            row = defaultdict(str, {k: v if theirs else restored(v) for k, v in raw.items() if k and v})
            if not row["category"].strip():
                counts["not_annotated"] += 1  # the reviewer agreed with the model, or did not look
                continue
            found.append({"id": row["complaint_id" if theirs else "id"], "text": row["text"],
                          "category": row["category"].strip(), "night": row["night"].strip() or None,
                          "annotator": row["annotator"].strip(), "ground_truth": False, "task": f"line {n}",
                          "answered_at": answered_at(row["updated_at"] or row["created_at"] or row["answered_at"]
                                                     or saved),
                          "model_label": row["model_label" if theirs else "label"] or None,
                          "model_confidence": _number(row["confidence"], f"line {n}: confidence"),
                          "model_version": row["model_version"] or None})
    return found, counts


def _number(text: str, where: str) -> float | None:
    try:
        return float(text) if text.strip() else None
    except ValueError:
        raise ValueError(f"{where} is {text!r}, not a number") from None


def _earlier(target: str) -> pd.DataFrame:
    if not os.path.exists(target):
        return pd.DataFrame(columns=ANSWERS_SCHEMA.names)
    try:
        frame = pq.read_table(target).to_pandas()
    except (OSError, pa.ArrowException) as exc:
        raise UserError(f"the corrections file {target} cannot be read ({str(exc).splitlines()[0]}): give --out a "
                        "corrections Parquet this command wrote, or a new path") from None
    if not {"id", "text", "category"} <= set(frame.columns):
        raise UserError(f"{target} is no corrections file (it has no id, text and category columns): give --out a "
                        "corrections Parquet this command wrote, or a new path")
    return upgraded(frame)
