"""Reviewers' answers, and the one label each reviewed complaint gets from them.

One rule, here, for training (`train --corrections`) and for the review report, so the
label a model learns is the label the report counts:

- an answer is one annotator's category for one complaint of one night, at its own time;
- per annotator, the newest answer stands (an annotator who changed their mind, or a
  re-import of last week's export, never outvotes this week's answer);
- a `ground_truth` answer (a lead's) decides; otherwise the majority of the annotators;
  a tie goes to the newest of the tied answers and is flagged, so a lead can settle it.

Answers are kept, not only the decision: agreement between annotators, and how often
the model was corrected, need every annotator's answer beside the model's own label.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa

from model.errors import UserError

ANSWERS_SCHEMA = pa.schema([
    ("id", pa.string()), ("night", pa.string()), ("text", pa.string()), ("category", pa.string()),
    ("annotator", pa.string()), ("answered_at", pa.string()), ("ground_truth", pa.bool_()),
    ("model_label", pa.string()), ("model_confidence", pa.float64()), ("model_version", pa.string()),
])
# `night`: the normalised --output the complaint was exported from (null in files from before nights were kept);
# `annotator`: Label Studio's e-mail or user id ("" where the file named none); `answered_at`: UTC, ISO 8601.
DECISIONS = ("ground truth", "majority", "one annotator", "tie")


def answered_at(value: str) -> str:
    """A time as Label Studio or a spreadsheet writes it, in one comparable form (UTC, microseconds), so that
    `2026-12-01T10:00:00Z` and `2026-12-01T11:00:00+01:00` are one instant; ValueError if it is no time."""
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except (ValueError, AttributeError):
        raise ValueError(f"{value!r} is not a time (ISO 8601, as Label Studio writes `updated_at`)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def upgraded(frame: pd.DataFrame) -> pd.DataFrame:
    """Any corrections file this project wrote, in today's columns: files from before answers kept their
    annotator and the model's label (`id, text, category, corrected_at[, night]`) are one unnamed annotator."""
    frame = frame.rename(columns={"corrected_at": "answered_at"})
    defaults = {"night": None, "annotator": "", "answered_at": "", "ground_truth": False, "model_label": None,
                "model_confidence": float("nan"), "model_version": None}
    for column, value in defaults.items():
        if column not in frame:
            frame = frame.assign(**{column: value})
    frame = frame.astype({"id": str})
    frame["annotator"] = frame["annotator"].fillna("").astype(str)
    frame["answered_at"] = frame["answered_at"].fillna("").astype(str)
    frame["ground_truth"] = frame["ground_truth"].fillna(False).astype(bool)
    frame["night"] = frame["night"].where(frame["night"].notna() & (frame["night"] != ""), None)
    return frame[ANSWERS_SCHEMA.names]


def kept(answers: pd.DataFrame) -> pd.DataFrame:
    """Each annotator's newest answer per complaint and night. Stable: between two answers of one instant the
    one given later (later file, later import) stands."""
    ordered = answers.assign(_night=answers["night"].fillna("")).sort_values("answered_at", kind="stable")
    return ordered.drop_duplicates(["_night", "id", "annotator"], keep="last").drop(columns="_night")


def resolved(answers: pd.DataFrame) -> pd.DataFrame:
    """One row per reviewed complaint: its category, how it was decided (`DECISIONS`), by how many annotators,
    their agreement (the share who gave the decided category), and the model's label, confidence and version."""
    latest = kept(answers)
    columns = ["id", "night", "text", "category", "decided_by", "annotators", "agreement", "answered_at",
               "model_label", "model_confidence", "model_version"]
    rows = [_decided(group) for _, group in latest.groupby([latest["night"].fillna(""), "id"], sort=True)]
    return pd.DataFrame(rows, columns=columns)


def of_night(decided: pd.DataFrame, night: str) -> pd.DataFrame:
    """The decided category of each reviewed complaint of one night (`resolved`'s rows; `night`: its normalised
    --output): what a shadowed night's two models are judged against."""
    return decided.loc[decided["night"] == night, ["id", "category"]]


def _decided(group: pd.DataFrame) -> dict:
    newest = group.iloc[-1]  # `kept` leaves them oldest first
    truth = group[group["ground_truth"]]
    votes = group["category"].value_counts()
    leaders = set(votes[votes == votes.max()].index)
    if len(truth):
        category, how = truth["category"].iloc[-1], "ground truth"
    elif len(leaders) == 1:
        category, how = next(iter(leaders)), "majority" if len(group) > 1 else "one annotator"
    else:
        category, how = group[group["category"].isin(leaders)]["category"].iloc[-1], "tie"
    model = group.dropna(subset=["model_label"])
    said = model.iloc[-1] if len(model) else {"model_label": None, "model_confidence": float("nan"),
                                              "model_version": None}
    return {"id": newest["id"], "night": newest["night"], "text": newest["text"], "category": category,
            "decided_by": how, "annotators": len(group), "agreement": float((group["category"] == category).mean()),
            "answered_at": newest["answered_at"], "model_label": said["model_label"],
            "model_confidence": said["model_confidence"], "model_version": said["model_version"]}


def shared_across_nights(answers: pd.DataFrame, what: str, advice: str = "") -> None:
    """One line when an id arrives from two nights (ids a source system reuses, or derived ids from before they
    carried their file's full path): which answer belongs to which complaint cannot be told."""
    nights = answers.dropna(subset=["night"]).groupby("id")["night"].unique()
    shared = nights[nights.map(len) > 1].sort_index()
    if len(shared):
        first, where = shared.index[0], sorted(shared.iloc[0])
        raise UserError(f"{len(shared):,} id(s) in {what} come from more than one night (e.g. {first!r} from "
                        f"{' and '.join(where)}): they name different complaints; give the archives an id column "
                        f"that is unique across nights{advice}")
