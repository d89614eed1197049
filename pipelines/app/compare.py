"""`complaints compare`: two models on the same complaints, before one of them goes live.

Both models give their verdicts through the jobs' own core (`worker.local`), so what
is compared is what the jobs would serve; rows that either model would dead-letter
are left out and counted. Writes compare.json and compare.png.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from model import compare
from model.data import read_table, resolve_paths
from model.errors import UserError


def _serve(model_dir: str, texts: list[str]) -> tuple[list[str], np.ndarray, np.ndarray, str]:
    """(labels, confidences, dead-lettered mask, version): each text's verdict, as the jobs would give it."""
    from worker.local import LocalClassifier, texts_as_records
    from worker.transform import DEAD_LETTERS, WorkerConfig

    classifier = LocalClassifier(WorkerConfig(model_dir=model_dir))
    verdicts = classifier.classify(texts_as_records(texts))
    dead = np.array([tag == DEAD_LETTERS for tag, _ in verdicts], bool)
    labels = ["" if tag == DEAD_LETTERS else record["label"] for tag, record in verdicts]
    confidences = np.array([0.0 if tag == DEAD_LETTERS else record["confidence"] for tag, record in verdicts])
    return labels, confidences, dead, classifier.version


def run_compare(model_a: str, model_b: str, data: str, text_column: str, label_column: str,
                report_dir: str | None) -> tuple[dict, str]:
    """(compare.json document, terminal summary)."""
    frame = pd.concat([read_table(p) for p in resolve_paths(data)], ignore_index=True)
    if text_column not in frame.columns:
        raise UserError(f"{data} has no column {text_column!r}: pass --text-column")
    has_labels = label_column in frame.columns
    keep = frame[text_column].map(lambda t: isinstance(t, str) and t.strip() != "")
    if has_labels:
        keep &= frame[label_column].notna()
    frame = frame[keep].reset_index(drop=True)
    if frame.empty:
        raise UserError(f"{data} has no rows with a text to compare on")
    texts = frame[text_column].tolist()
    labels_a, conf_a, empty_a, version_a = _serve(model_a, texts)
    labels_b, conf_b, empty_b, version_b = _serve(model_b, texts)
    used = ~(empty_a | empty_b)
    pick = np.flatnonzero(used)
    a = ([labels_a[i] for i in pick], conf_a[pick])
    b = ([labels_b[i] for i in pick], conf_b[pick])
    if has_labels:
        result = compare.labelled([str(t) for t in frame[label_column].iloc[pick]], a, b)
    else:
        result = compare.unlabelled(a, b)
    result.update({"model_a": {"dir": model_a, "version": version_a}, "model_b": {"dir": model_b, "version": version_b},
                   "data": data, "rows_left_out_empty": int((~used).sum()),
                   "rows_skipped_no_text_or_label": int((~keep).sum())})
    return result, _written(result, report_dir)


def run_night_compare(output: str, corrections: str | None, report_dir: str | None) -> tuple[dict, str]:
    """A committed night's champion against its `--shadow` challenger, from the night's own files
    (`pipelines.nightly.shadow`): with review answers for that night, on the reviewed rows as well."""
    from model.corrections import of_night, resolved
    from model.data import read_answers
    from pipelines.nightly import shadow
    from pipelines.plumbing import commit, night

    output = night.normalised(output)
    summary = commit.read_summary(output, "--night")
    scored = summary.get("shadow")
    if not isinstance(scored, dict) or "not_scored" in scored:
        why = scored["not_scored"] if isinstance(scored, dict) else "it was labelled without one"
        raise UserError(f"{output} has no shadow verdicts ({why}): label the night with --shadow MODEL first")
    both, left_out = shadow.paired(output)
    if both.empty:
        raise UserError(f"{output}'s shadow files hold no row the champion labelled too: nothing to compare")
    result = compare.unlabelled(*shadow.sides(both))
    judged = shadow.judged(both, of_night(resolved(read_answers(corrections)), output)) if corrections else None
    if judged is not None:
        result = {**judged, "unlabelled": result}
    result.update({"model_a": {"dir": "champion", "version": str(both["model_version_a"].iloc[0])},
                   "model_b": {"dir": scored.get("model_dir", "challenger"),
                               "version": str(both["model_version_b"].iloc[0])},
                   "night": output, "left_out": left_out, "rows_left_out_empty": sum(left_out.values()),
                   "rows_skipped_no_text_or_label": 0})
    return result, _written(result, report_dir)


def _written(result: dict, report_dir: str | None) -> str:
    report_dir = report_dir or "compare"
    os.makedirs(report_dir, exist_ok=True)
    with open(os.path.join(report_dir, "compare.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=2)
    _plot(result, os.path.join(report_dir, "compare.png"))
    return render(result) + f"\nreport written to {report_dir} (compare.json, compare.png)"


def render(result: dict) -> str:
    a, b = result["model_a"], result["model_b"]
    lines = [f"A {a['version']} ({a['dir']})", f"B {b['version']} ({b['dir']})",
             f"{result['rows']:,} rows ({result['rows_left_out_empty']} left out: empty for a model)"
             if "night" not in result else
             f"{result['rows']:,} rows of {result['night']} ({result['rows_left_out_empty']} left out: "
             f"{result['left_out']['challenger_dead_lettered']} dead-lettered by B, "
             f"{result['left_out']['ids_repeated']} ids that occur twice)"]
    if "unlabelled" in result:
        lines.append(f"on all {result['unlabelled']['rows']:,} rows: agreement {result['unlabelled']['agreement']:.1%}"
                     f"; below, the reviewed rows")
    if result["mode"] == "labelled":
        lines.append(f"{'':12} {'A':>8} {'B':>8} {'B − A':>8}   95% interval (paired bootstrap)")
        for key in ("accuracy", "macro_f1"):
            d = result["difference"][key]
            lines.append(f"{key:12} {result['a'][key]:8.4f} {result['b'][key]:8.4f} {d['observed']:+8.4f}   "
                         f"[{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]{'' if d['excludes_zero'] else '  (includes 0)'}")
        lines.append(f"{'ECE':12} {result['a']['ece']:8.4f} {result['b']['ece']:8.4f} "
                     f"{result['difference']['ece']:+8.4f}")
        m = result["mcnemar"]
        lines.append(f"McNemar: only A right on {m['only_a_right']}, only B right on {m['only_b_right']}, "
                     f"p = {m['p_value']:.4g}; agreement {result['agreement']:.1%}")
    else:
        lines.append(f"agreement {result['agreement']:.1%}; mean confidence A {result['a']['mean_confidence']:.3f}, "
                     f"B {result['b']['mean_confidence']:.3f}")
        for flip in result["flips"][:5]:
            lines.append(f"  {flip['rows']:>6,}  {flip['a']} → {flip['b']}")
        gains = ", ".join(f"{g['label']} +{g['rows']}" for g in result["gains"]) or "none"
        losses = ", ".join(f"{g['label']} {g['rows']}" for g in result["losses"]) or "none"
        lines += [f"B gains: {gains}", f"B loses: {losses}"]
    return "\n".join(lines)


def _plot(result: dict, path: str) -> None:
    from model.plots import pyplot

    plt = pyplot()
    if result["mode"] == "labelled":
        names = list(result["per_class_f1"])
        fig, ax = plt.subplots(figsize=(8, max(3.0, 0.28 * len(names) + 1.5)))
        ys = np.arange(len(names))
        ax.barh(ys - 0.2, [result["per_class_f1"][n]["a"] for n in names], 0.4, label="A")
        ax.barh(ys + 0.2, [result["per_class_f1"][n]["b"] for n in names], 0.4, label="B")
        ax.set_yticks(ys, names, fontsize=8)
        ax.set_xlabel("F1 per class")
    else:
        changes = result["change_by_label"]
        names = sorted(changes, key=lambda n: changes[n])
        fig, ax = plt.subplots(figsize=(8, max(3.0, 0.28 * len(names) + 1.5)))
        ax.barh(np.arange(len(names)), [changes[n] for n in names])
        ax.set_yticks(np.arange(len(names)), names, fontsize=8)
        ax.set_xlabel("rows labelled by B minus rows labelled by A")
    ax.invert_yaxis()
    if result["mode"] == "labelled":
        ax.legend()
    ax.set_title("Model B against model A")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
