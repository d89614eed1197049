"""The review loop's files: a night's uncertain rows out to reviewers, their corrections back for training.

**Export** (`complaints review export`) takes a committed night (`_SUCCESS` present),
picks its `needs_review` rows (or every row, or one label), samples them with a seed
when `--limit` asks, and writes Label Studio tasks (`.json`, with the labelling config
beside it as `FILE.label_config.xml`) or CSV. The prediction record holds no text, and
this stays so: complaint texts carry names, addresses and phone numbers, and the
labels are read far more widely than the archive. The export joins the chosen ids
back to the very files the night read (`summary.json`'s `inputs`, with its `source`
saying which columns were the id and the text, or how ids were derived), reading only
those columns.

**Import** (`complaints review import`) reads Label Studio's JSON export (each task's
latest annotation that was not cancelled; tasks skipped or never annotated are left
out and counted) or a CSV with `id`, `text` and `category`, maps renamed categories
(`--rename OLD=NEW`), refuses a category the model does not know (one line each),
and writes `id, text, category, corrected_at` Parquet. An existing `--out` is merged:
for the same id the later correction wins, in the file and across imports.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import sys
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from model import files
from model.errors import UserError
from pipelines.app import label_studio
from pipelines.app.predictor import because
from pipelines.app.uploads import defused, restored
from pipelines.nightly.reading import derived_ids
from pipelines.plumbing import commit
from pipelines.plumbing.night import normalised

CORRECTIONS_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("category", pa.string()),
                                ("corrected_at", pa.string()), ("night", pa.string())])
# `night`: the --output of the night the complaint was exported from (normalised); empty in files from before it.
CONFIG_SUFFIX = ".label_config.xml"


@dataclass(frozen=True)
class Selection:
    """Which rows of a night go to review."""

    everything: bool = False
    label: str | None = None
    limit: int | None = None
    seed: int = 0

    def describe(self) -> str:
        what = "every row" if self.everything else f"label {self.label!r}" if self.label else "needs_review rows"
        return what + (f", a seeded sample of at most {self.limit:,}" if self.limit else "")


def export(output: str, to: str, labels: list[str], model_version: str, selection: Selection) -> str:
    """Write the night's chosen rows to `to` (`.json`: Label Studio tasks and their config; `.csv`); the line the
    command prints."""
    kind = _kind(to)
    if not files.exists(commit.join(output, commit.SUCCESS)):
        raise UserError(f"{output} has no _SUCCESS: not a committed night (a run still under way, or one that "
                        "failed); export from a night whose labelling run finished")
    summary = commit.read_summary(output)
    if summary.get("model_version") != model_version:
        raise UserError(f"{output} was labelled by model {summary.get('model_version')}, --model is {model_version}: "
                        "give the model that labelled the night (its categories make the labelling config)")
    rows = _chosen(output, summary, selection)
    texts = _texts(summary, output, set(rows.column("id").to_pylist()))
    missing = [i for i in rows.column("id").to_pylist() if i not in texts]
    if missing:
        raise UserError(f"{len(missing):,} of the chosen ids (e.g. {missing[0]!r}) are not in the files the night "
                        "read (moved or rewritten since?): the export needs the archive as it was labelled")
    night = normalised(output)
    records = [{**_shown(r, texts[r["id"]]), "night": night} for r in rows.to_pylist()]
    if kind == "json":
        with open(to, "w", encoding="utf-8") as f:
            json.dump([label_studio.task(r) for r in records], f, ensure_ascii=False, indent=1)
        config = to + CONFIG_SUFFIX
        with open(config, "w", encoding="utf-8") as f:
            f.write(label_studio.labelling_config(labels))
        beside = f", and the labelling config for its {len(labels)} categories to {config}"
    else:
        with open(to, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "text", "label", "confidence", "top_k", "explanation", "night", "category"])
            for r in records:  # customer text, for a spreadsheet: a formula's lead is defused, as on the page
                writer.writerow([defused(cell) for cell in (r["id"], r["text"], r["label"], f"{r['confidence']:.4f}",
                                                            r["top_k_shown"], r["explanation_shown"], r["night"], "")])
        beside = " (fill in `category` where the label is wrong, leave it empty where it is right)"
    return f"wrote {len(records):,} rows of {output} ({selection.describe()}) to {to}{beside}"


def _kind(path: str) -> str:
    kind = os.path.splitext(path)[1].lower().lstrip(".")
    if kind not in ("json", "csv"):
        raise UserError(f"{path}: write .json (Label Studio tasks) or .csv")
    return kind


def _chosen(output: str, summary: dict, selection: Selection) -> pa.Table:
    paths = [commit.join(output, name) for name in summary.get("output_files", []) if "predictions-" in name]
    if not paths:
        paths = sorted(files.glob(commit.join(output, "predictions-*.parquet")))
    wanted = ["id", "label", "confidence", "top_k", "needs_review", "model_version"]
    tables = []
    for path in paths:
        parquet = pq.ParquetFile(_readable(path))
        names = parquet.schema_arrow.names
        tables.append(parquet.read(columns=wanted + (["explanation"] if "explanation" in names else [])))
    table = pa.concat_tables(tables, promote_options="default") if tables else pa.table({n: [] for n in wanted})
    if selection.label is not None:
        table = table.filter(pc.equal(table.column("label"), selection.label))
    elif not selection.everything:
        table = table.filter(table.column("needs_review"))
    table = table.sort_by("id")
    if selection.limit is not None and table.num_rows > selection.limit:
        picked = np.sort(np.random.default_rng(selection.seed).choice(table.num_rows, selection.limit, replace=False))
        table = table.take(pa.array(picked))
    return table


def _texts(summary: dict, output: str, ids: set[str]) -> dict[str, str]:
    """The chosen ids' texts, from the files the night read (only their id and text columns)."""
    source = summary.get("source") or {"id_column": "id", "text_column": "text", "derive_missing_id": False}
    found: dict[str, str] = {}
    for entry in summary.get("inputs", []):
        path = entry["path"]
        try:
            parquet = pq.ParquetFile(_readable(path))
            if source["id_column"] in parquet.schema_arrow.names:
                table = parquet.read(columns=[source["id_column"], source["text_column"]])
                keys, column = [str(k) for k in table.column(0).to_pylist()], table.column(1)
            elif source.get("derive_missing_id") and source.get("input"):  # ids as the night derived them
                column = parquet.read(columns=[source["text_column"]]).column(0)
                keys = derived_ids(path, 0, len(column))
            else:
                continue
        except (OSError, pa.ArrowException) as exc:
            raise UserError(f"{path} (read by the night) cannot be read now: {exc}") from None
        texts = column.to_pylist()
        for key, text in zip(keys, texts, strict=True):
            if key in ids:
                found[key] = text
    return found


def _readable(path: str):
    """A local path as it is; an object (gs://) read whole into memory first (pyarrow cannot open it)."""
    return pa.BufferReader(files.read_bytes(path)) if files.remote(path) else path


def _shown(row: dict, text: str) -> dict:
    return {**row, "text": text,
            "top_k_shown": "; ".join(f"{t['label']} {t['confidence']:.3f}" for t in row["top_k"] or []),
            "explanation_shown": because([(e["word"], e["contribution"]) for e in row.get("explanation") or []])}


def import_corrections(source: str, target: str, labels: list[str], renames: dict[str, str],
                       skip_unknown: bool = False) -> str:
    """Read reviewers' answers from `source`, check them against `labels`, merge them into `target`."""
    kind = _kind(source)
    try:
        found, counts = _from_json(source) if kind == "json" else _from_csv(source)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{source} cannot be read as a Label Studio {kind.upper()} export: {exc}") from None
    known, unknown, now = set(labels), [], dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    rows = []
    for item in found:
        category = renames.get(item["category"], item["category"])
        if category not in known:
            unknown.append(item)
            where = f"task {item['task']}" if item.get("task") is not None else "row"
            print(f"unknown category: {where} (id {item['id']!r}): {item['category']!r} is not one of the model's "
                  "categories", file=sys.stderr)
            continue
        if not item["id"] or not isinstance(item["text"], str) or not item["text"].strip():
            raise UserError(f"{source}: an answer without its complaint's id or text ({item}): export the tasks "
                            "with `complaints review export`, which carries both")
        rows.append({"id": item["id"], "text": item["text"], "category": category,
                     "corrected_at": item.get("annotated_at") or now, "night": item.get("night") or None})
    if unknown and not skip_unknown:
        raise UserError(f"{len(unknown)} answer(s) name categories the model does not know (listed above): map a "
                        "renamed one with --rename OLD=NEW, or leave them out with --skip-unknown")
    merged, replaced = _merge(target, rows)
    pq.write_table(merged, target + ".tmp")
    os.replace(target + ".tmp", target)
    left_out = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items() if v)
    return (f"{len(rows):,} correction(s) from {source} into {target} ({merged.num_rows:,} in all; "
            f"{replaced:,} replaced an earlier one for the same id)"
            + (f"; left out: {left_out}" if left_out else "") + (f"; unknown categories skipped: {len(unknown)}"
                                                                 if unknown else ""))


def _from_json(source: str) -> tuple[list[dict], dict[str, int]]:
    with open(source, encoding="utf-8") as f:
        exported = json.load(f)
    return label_studio.annotated(exported)


def _from_csv(source: str) -> tuple[list[dict], dict[str, int]]:
    with open(source, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        columns = set(reader.fieldnames or [])
        if columns & {"complaint_id", "annotation_id", "annotator"}:
            raise ValueError("this is Label Studio's own CSV export, whose `id` is the task's, not the complaint's: "
                             "export JSON from Label Studio (Export → JSON) and import that")
        missing = {"id", "text", "category"} - columns
        if missing:
            raise ValueError(f"columns {sorted(missing)} missing (id, text and category are needed)")
        found, counts = [], {"not_annotated": 0}
        for row in reader:
            if not (row.get("category") or "").strip():
                counts["not_annotated"] += 1  # the reviewer agreed with the model, or did not look
                continue
            found.append({"id": restored(row["id"]), "text": restored(row["text"]),
                          "category": restored((row["category"] or "").strip()),
                          "night": restored((row.get("night") or "").strip()) or None})
    return found, counts


def _merge(target: str, rows: list[dict]) -> tuple[pa.Table, int]:
    """Earlier corrections in `target`, then these; for one id the latest (by time, then order) is kept. An id
    that two nights share is refused: the corrections would be for two complaints."""
    earlier = _earlier(target)
    shared_across_nights(earlier + rows, f"the corrections for {target}")
    latest: dict[str, dict] = {}
    for row in earlier + sorted(rows, key=lambda r: r["corrected_at"]):
        latest[row["id"]] = row
    replaced = len(earlier) + len(rows) - len(latest)
    return pa.Table.from_pylist(sorted(latest.values(), key=lambda r: r["id"]), schema=CORRECTIONS_SCHEMA), replaced


def _earlier(target: str) -> list[dict]:
    if not os.path.exists(target):
        return []
    try:
        table = pq.read_table(target)
    except (OSError, pa.ArrowException) as exc:
        raise UserError(f"the corrections file {target} cannot be read ({str(exc).splitlines()[0]}): give --out a "
                        "corrections Parquet this command wrote, or a new path") from None
    if "night" not in table.column_names:  # written before answers kept their night
        table = table.append_column("night", pa.nulls(table.num_rows, pa.string()))
    return table.select(CORRECTIONS_SCHEMA.names).cast(CORRECTIONS_SCHEMA).to_pylist()


def shared_across_nights(rows: list[dict], what: str) -> None:
    """One line when an id arrives from two nights (ids a source system reuses, or derived ids from before they
    carried their file's full path): which correction belongs to which complaint cannot be told."""
    nights: dict[str, set[str]] = {}
    for row in rows:
        if row.get("night"):
            nights.setdefault(str(row["id"]), set()).add(row["night"])
    shared = sorted((i, sorted(n)) for i, n in nights.items() if len(n) > 1)
    if shared:
        first, where = shared[0]
        raise UserError(f"{len(shared):,} id(s) in {what} come from more than one night (e.g. {first!r} from "
                        f"{' and '.join(where)}): they name different complaints; give the archives an id column "
                        "that is unique across nights, or keep each night's corrections in its own file")
