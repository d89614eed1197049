"""Label Studio's formats: review tasks out (JSON import, with the model's label as a prediction), the labelling
config for the model's categories, and annotations back (its JSON export).

Only the documented JSON shapes are used, so files move between this project and any
Label Studio (1.x) without its SDK: a task is `{"data": {...}, "predictions": [...]}`,
a prediction's (and an annotation's) `result` holds `{"from_name", "to_name",
"type": "choices", "value": {"choices": [CATEGORY]}}`, and an export is the list of
tasks with their `annotations` (each with `was_cancelled`, `completed_by`, `updated_at`,
`ground_truth`); JSON-min flattens each annotation into one record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from xml.sax.saxutils import quoteattr

from model.corrections import answered_at

FROM_NAME, TO_NAME = "category", "text"  # the names the labelling config gives its Choices and its Text


def task(row: dict) -> dict:
    """One review task: the complaint and what the model said, its label pre-filled as a prediction."""
    data = {"text": row["text"], "complaint_id": row["id"], "model_label": row["label"],
            "confidence": round(float(row["confidence"]), 4), "top_k": row["top_k_shown"],
            "explanation": row["explanation_shown"], "model_version": row["model_version"],
            "night": row.get("night"), "review_key": review_key(row.get("night"), row["id"])}
    prediction = {"model_version": row["model_version"], "score": round(float(row["confidence"]), 4),
                  "result": [choice(row["label"])]}
    return {"data": data, "predictions": [prediction]}


def review_key(night: str | None, complaint_id: str) -> str:
    """A complaint's key in a Label Studio project: the same complaint of the same night is one task, however
    often the night is exported (the id alone is not enough: a night is what makes derived ids unique)."""
    return hashlib.sha256(f"{night or ''}\n{complaint_id}".encode()).hexdigest()[:24]


def choice(category: str) -> dict:
    return {"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices", "value": {"choices": [category]}}


def labelling_config(categories: Iterable[str]) -> str:
    """The project's labelling config: the complaint, what the model said and why, one choice per category."""
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in categories)
    return f"""<View>
  <Header value="Complaint $complaint_id"/>
  <Text name="{TO_NAME}" value="$text"/>
  <Header value="The model said: $model_label ($confidence); top: $top_k"/>
  <Header value="Because of: $explanation"/>
  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInline="false" required="true">
{choices}
  </Choices>
</View>
"""


def answers(exported: object) -> tuple[list[dict], dict[str, int]]:
    """Every standing answer of a Label Studio export (its JSON, or JSON-min: one flat record per annotation),
    one dict each: the complaint (`id`, `night`, `text`), what the model said (`model_label`,
    `model_confidence`, `model_version`), and the annotator's `category`, `annotator`, `answered_at` and
    `ground_truth`. Cancelled (skipped) answers and answers without a choice are left out; tasks nobody
    answered, and tasks with no answer left standing, are counted. ValueError names the first part of the
    export whose shape is not the documented one (`task 3: annotations[0].result is an object, not a list`)."""
    found, counts = [], {"not_annotated": 0, "skipped": 0}
    for n, item in enumerate(_shaped(exported, list, "the export"), start=1):
        where = f"task {n}"
        _shaped(item, dict, where)
        if "data" in item or "annotations" in item:
            given = _from_task(item, where)
        else:  # JSON-min: one record per annotation, or the bare task where nobody answered
            given = [] if item.get(FROM_NAME) is None else [_from_flat(item, where)]
        standing = [a for a in given if a is not None]
        counts["not_annotated" if not given else "skipped"] += 0 if standing else 1
        found.extend(standing)
    return found, counts


def _from_task(item: dict, where: str) -> list[dict | None]:
    """A full task's answers: one per annotation, None for a cancelled one or one without a choice."""
    complaint = _complaint(_field(item, "data", dict, where) or {}, f"{where}: data")
    given = []
    for i, annotation in enumerate(_field(item, "annotations", list, where) or []):
        at = f"{where}: annotations[{i}]"
        _shaped(annotation, dict, at)
        chosen = []
        for j, result in enumerate(_field(annotation, "result", list, at) or []):
            _shaped(result, dict, f"{at}.result[{j}]")
            value = _field(result, "value", dict, f"{at}.result[{j}]") or {}
            choices = _field(value, "choices", list, f"{at}.result[{j}].value") or []
            if result.get("type") == "choices" and result.get("from_name") == FROM_NAME:
                chosen += [_shaped(c, str, f"{at}.result[{j}].value.choices[]") for c in choices]
        cancelled = _field(annotation, "was_cancelled", bool, at)
        given.append(None if cancelled or not chosen else {
            **complaint, "category": chosen[0], "annotator": _annotator(annotation.get("completed_by"), at),
            "answered_at": _when(annotation, at), "ground_truth": bool(_field(annotation, "ground_truth", bool, at)),
            "task": item.get("id")})
    return given


def _from_flat(item: dict, where: str) -> dict | None:
    """A JSON-min record: the task's data, its category (a string, or a list for one choice), and the annotation's
    annotator and times, side by side."""
    category = _field(item, FROM_NAME, (str, list), where)
    chosen = [category] if isinstance(category, str) else [_shaped(c, str, f"{where}: {FROM_NAME}[]")
                                                           for c in category or []]
    if not chosen:
        return None
    return {**_complaint(item, where), "category": chosen[0], "annotator": _annotator(item.get("annotator"), where),
            "answered_at": _when(item, where), "ground_truth": False, "task": item.get("id")}


def _complaint(data: dict, where: str) -> dict:
    confidence = _field(data, "confidence", (int, float), where)
    return {"id": str(_field(data, "complaint_id", (str, int), where) or ""), "text": _field(data, "text", str, where),
            "night": _field(data, "night", str, where) or None, "model_label": _field(data, "model_label", str, where),
            "model_confidence": float(confidence) if confidence is not None else None,
            "model_version": _field(data, "model_version", str, where)}


def _annotator(who: object, where: str) -> str:
    """Label Studio's `completed_by`: a user id, or (expanded) an object with the user's e-mail."""
    if isinstance(who, dict):
        return str(_field(who, "email", str, f"{where}: completed_by") or _field(who, "id", int, where) or "")
    return "" if who is None else str(_shaped(who, (str, int), f"{where}: annotator"))


def _when(annotation: dict, where: str) -> str:
    stamp = _field(annotation, "updated_at", str, where) or _field(annotation, "created_at", str, where)
    if not stamp:
        raise ValueError(f"{where} has no updated_at or created_at: which answer is newest cannot be told")
    try:
        return answered_at(stamp)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _field(holder: dict, key: str, kind: type | tuple[type, ...], where: str):
    return _shaped(holder.get(key), kind, f"{where}.{key}" if ":" in where else f"{where}: {key}", optional=True)


def _shaped(value, kind: type | tuple[type, ...], where: str, optional: bool = False):
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if value is None and optional:
        return value
    if isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds):  # True is no number here
        return value
    wanted = " or ".join(_KINDS[k] for k in kinds)
    raise ValueError(f"{where} is {_kind(value)}, not {wanted} (is this Label Studio's JSON export?)")


_KINDS = {list: "a list", dict: "an object", str: "a string", bool: "true/false", int: "a whole number",
          float: "a number"}


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    return "a number" if isinstance(value, int | float) else _KINDS.get(type(value), type(value).__name__)
