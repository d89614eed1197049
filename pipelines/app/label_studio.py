"""Label Studio's formats: review tasks out (JSON import, with the model's label as a prediction), the labelling
config for the model's categories, and annotations back (its JSON export).

Only the documented JSON shapes are used, so files move between this project and any
Label Studio (1.x) without its SDK: a task is `{"data": {...}, "predictions": [...]}`,
a prediction's (and an annotation's) `result` holds `{"from_name", "to_name",
"type": "choices", "value": {"choices": [CATEGORY]}}`, and an export is the list of
tasks with their `annotations` (each with `was_cancelled`, `updated_at`).
"""

from __future__ import annotations

from collections.abc import Iterable
from xml.sax.saxutils import quoteattr

FROM_NAME, TO_NAME = "category", "text"  # the names the labelling config gives its Choices and its Text


def task(row: dict) -> dict:
    """One review task: the complaint and what the model said, its label pre-filled as a prediction."""
    data = {"text": row["text"], "complaint_id": row["id"], "model_label": row["label"],
            "confidence": round(float(row["confidence"]), 4), "top_k": row["top_k_shown"],
            "explanation": row["explanation_shown"], "model_version": row["model_version"],
            "night": row.get("night")}
    prediction = {"model_version": row["model_version"], "score": round(float(row["confidence"]), 4),
                  "result": [choice(row["label"])]}
    return {"data": data, "predictions": [prediction]}


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


def checked(exported: object) -> list[dict]:
    """The export itself, once every part this module reads has the documented shape; else ValueError naming the
    first part that does not (`task 3: annotations[0].result is an object, not a list`)."""
    _shaped(exported, list, "the export")
    for n, item in enumerate(exported, start=1):
        where = f"task {n}"
        _shaped(item, dict, where)
        _shaped(item.get("data"), dict, f"{where}: data", optional=True)
        for i, annotation in enumerate(_shaped(item.get("annotations"), list, f"{where}: annotations", True) or []):
            at = f"{where}: annotations[{i}]"
            _shaped(annotation, dict, at)
            for j, result in enumerate(_shaped(annotation.get("result"), list, f"{at}.result", True) or []):
                _shaped(result, dict, f"{at}.result[{j}]")
                value = _shaped(result.get("value"), dict, f"{at}.result[{j}].value", True) or {}
                choices = _shaped(value.get("choices"), list, f"{at}.result[{j}].value.choices", True) or []
                for choice in choices:
                    _shaped(choice, str, f"{at}.result[{j}].value.choices[]")
    return exported


_KINDS = {list: "a list", dict: "an object", str: "a string"}


def _shaped(value, kind: type, where: str, optional: bool = False):
    if (value is None and optional) or isinstance(value, kind):
        return value
    found = {list: "a list", dict: "an object", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__)
    raise ValueError(f"{where} is {found}, not {_KINDS[kind]} (is this Label Studio's JSON export?)")


def annotated(exported: list) -> tuple[list[dict], dict[str, int]]:
    """Each task's last standing annotation as `{id, text, category, annotated_at, task}`, and what was left
    out, counted: tasks nobody annotated, and tasks whose every annotation was cancelled (skipped)."""
    found, counts = [], {"not_annotated": 0, "skipped": 0}
    for item in checked(exported):
        standing = [a for a in item.get("annotations") or [] if not a.get("was_cancelled")]
        if not item.get("annotations"):
            counts["not_annotated"] += 1
            continue
        if not standing:
            counts["skipped"] += 1
            continue
        last = max(standing, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id", 0)))
        chosen = [c for r in last.get("result") or [] if r.get("type") == "choices" and r.get("from_name") == FROM_NAME
                  for c in (r.get("value") or {}).get("choices") or []]
        if not chosen:
            counts["skipped"] += 1  # annotated without choosing (e.g. only a comment)
            continue
        data = item.get("data") or {}
        found.append({"id": str(data.get("complaint_id", "")), "text": data.get("text"), "category": chosen[0],
                      "annotated_at": str(last.get("updated_at") or last.get("created_at") or ""),
                      "task": item.get("id"), "night": data.get("night")})
    return found, counts
