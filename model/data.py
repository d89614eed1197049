"""Reading labelled complaints, stratified splits and the training-data fingerprint.

Only pandas/pyarrow here: the data layer must run in a notebook with no Beam.
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from model.corrections import resolved, shared_across_nights, upgraded
from model.errors import UserError


@dataclass(frozen=True)
class LabelledData:
    """Texts and labels ready for training, with what was skipped on the way."""

    texts: np.ndarray  # object array of str
    labels: np.ndarray  # object array of str
    skipped_rows: int
    files: list[str]
    corrected: dict | None = None  # with corrections: rows replaced and rows added

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def resolve_paths(path_or_glob: str) -> list[str]:
    """Local files behind a path or glob, sorted; a clear error if there are none."""
    paths = sorted(glob.glob(path_or_glob)) if glob.has_magic(path_or_glob) else [path_or_glob]
    paths = [p for p in paths if os.path.isfile(p)]
    if not paths:
        raise UserError(
            f"no data file matches {path_or_glob!r}: check the path (a .parquet or .csv file, or a glob)"
        )
    return paths


def read_table(path: str, columns: list[str] | None = None) -> pd.DataFrame:
    """One Parquet or CSV file as a DataFrame, with user-facing errors for bad files."""
    try:
        if path.lower().endswith((".csv", ".csv.gz", ".tsv")):
            frame = pd.read_csv(path, sep="\t" if path.lower().endswith(".tsv") else ",")
        else:
            frame = pq.read_table(path).to_pandas()
    except (pa.ArrowException, pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise UserError(
            f"cannot read {path}: {str(exc).splitlines()[0]} (is it a complete Parquet or CSV file?)"
        ) from None
    return select_columns(frame, path, columns) if columns else frame


def select_columns(frame: pd.DataFrame, path: str, columns: list[str]) -> pd.DataFrame:
    """The named columns of a file's frame, or a UserError naming the missing ones."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(
            f"{path} has no column {', '.join(map(repr, missing))}; its columns are "
            f"{', '.join(map(str, frame.columns))}: pass --text-column/--label-column"
        )
    return frame[columns]


def load_labelled(
    path_or_glob: str,
    text_column: str = "text",
    label_column: str = "category",
    max_rows: int | None = None,
    seed: int = 42,
    corrections: str | None = None,
    id_column: str = "id",
) -> LabelledData:
    """All rows of the matching files with a non-empty text and a label.

    Rows without either are skipped and counted rather than failing the run: a
    nightly export with a few blank cells should still train. `max_rows` keeps a
    seeded random sample, so a cap is not biased by file order.
    """
    files = resolve_paths(path_or_glob)
    frame = pd.concat(
        [read_table(p, [text_column, label_column] + ([id_column] if corrections else [])) for p in files],
        ignore_index=True,
    )
    corrected = None
    if corrections:
        frame, corrected = _corrected(frame, corrections, id_column, text_column, label_column)
    texts = frame[text_column]
    labels = frame[label_column]
    keep = texts.map(lambda t: isinstance(t, str) and t.strip() != "") & labels.notna()
    keep &= labels.astype(str).str.strip() != ""
    skipped = int((~keep).sum())
    frame = frame[keep]
    if max_rows is not None and len(frame) > max_rows:
        frame = frame.sample(n=max_rows, random_state=seed)
    return LabelledData(
        texts=frame[text_column].to_numpy(dtype=object),
        labels=frame[label_column].astype(str).to_numpy(dtype=object),
        skipped_rows=skipped,
        files=files,
        corrected=corrected,
    )


def _corrected(frame: pd.DataFrame, corrections: str, id_column: str, text_column: str,
               label_column: str) -> tuple[pd.DataFrame, dict]:
    """`frame` with reviewers' corrections (`complaints review import`) applied: each reviewed complaint's
    decided category (`model.corrections.resolved`) relabels its row, and one not in the data is added."""
    paths = resolve_paths(corrections)
    answers = read_answers(corrections)
    shared_across_nights(answers, f"--corrections {corrections}")
    fixes = resolved(answers).drop_duplicates("id", keep="last")
    ids = frame[id_column].astype(str)
    replaced = int(ids.isin(set(fixes["id"])).sum())
    added = int((~fixes["id"].isin(set(ids))).sum())
    fixes = fixes.rename(columns={"id": id_column, "text": text_column, "category": label_column})
    merged = pd.concat([frame[~ids.isin(set(fixes[id_column]))], fixes[[text_column, label_column, id_column]]],
                       ignore_index=True)
    return merged, {"replaced": replaced, "added": added, "files": paths}


def read_answers(path_or_glob: str) -> pd.DataFrame:
    """Every answer in the corrections files (`complaints review import`'s Parquet, or a glob of them), in
    today's columns whatever version of the project wrote them."""
    frames = [_answers_in(p) for p in resolve_paths(path_or_glob)]
    return upgraded(pd.concat(frames, ignore_index=True))


def _answers_in(path: str) -> pd.DataFrame:
    frame = read_table(path)
    select_columns(frame, path, ["id", "text", "category"])
    return frame


def fingerprint(texts: np.ndarray, labels: np.ndarray) -> str:
    """A content hash of the training rows, recorded in the artifact's metadata."""
    hashes = pd.util.hash_pandas_object(pd.DataFrame({"t": texts, "l": labels}), index=False)
    return hashlib.sha256(hashes.to_numpy().tobytes()).hexdigest()[:16]


def shuffled_classes(label_ids: np.ndarray, seed: int):
    """Each class's row indices, in class order, each shuffled by one seeded generator."""
    rng = np.random.default_rng(seed)
    for class_id in np.unique(label_ids):
        rows = np.flatnonzero(label_ids == class_id)
        rng.shuffle(rows)
        yield rows


def stratified_split(
    label_ids: np.ndarray, validation_fraction: float, test_fraction: float, seed: int
) -> Split:
    """Per-class seeded shuffle, then `round(fraction × n)` rows of each class per split.

    Stratifying keeps rare classes present in validation and test, which a plain
    random split of an imbalanced archive often does not.
    """
    if not 0 < validation_fraction < 1 or not 0 < test_fraction < 1:
        raise UserError("--validation-split and --test-split must each be between 0 and 1")
    if validation_fraction + test_fraction >= 0.9:
        raise UserError("--validation-split plus --test-split must leave at least 10% for training")
    train, validation, test = [], [], []
    for rows in shuffled_classes(label_ids, seed):
        n_test = round(test_fraction * len(rows))
        n_val = round(validation_fraction * len(rows))
        test.append(rows[:n_test])
        validation.append(rows[n_test : n_test + n_val])
        train.append(rows[n_test + n_val :])
    split = Split(*(np.sort(np.concatenate(part)) for part in (train, validation, test)))
    if min(len(split.train), len(split.validation), len(split.test)) == 0:
        raise UserError(
            f"{len(label_ids)} rows are too few for a {validation_fraction:g}/{test_fraction:g} "
            "validation/test split: provide more rows or larger split fractions"
        )
    return split


def describe(texts: np.ndarray, labels: np.ndarray | None, token_counts: np.ndarray, sequence_length: int) -> dict:
    """Class distribution and length statistics, to judge data before training."""
    chars = np.array([len(t) for t in texts])
    summary = {
        "rows": len(texts),
        "characters": _stats(chars),
        "tokens": _stats(token_counts),
        "share_longer_than_sequence": float(np.mean(token_counts > sequence_length)) if len(texts) else 0.0,
        "sequence_length": sequence_length,
    }
    if labels is not None:
        counts = pd.Series(labels).value_counts()
        summary["classes"] = {
            str(k): {"count": int(v), "share": float(v / len(labels))} for k, v in counts.items()
        }
    return summary


def _stats(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {}
    return {
        "mean": float(np.mean(values)),
        "min": int(np.min(values)),
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "max": int(np.max(values)),
    }
