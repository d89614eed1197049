"""What the model commands print: training, evaluation, description and quick predictions.

Kept out of cli.py so the click layer stays a thin shell and these can be tested
as plain functions.
"""

from __future__ import annotations

import os
from collections import Counter

import numpy as np

from model import agreement, artifact, evaluate, precision, registry
from model.architecture import ArchitectureConfig
from model.data import describe, load_labelled, read_table, resolve_paths, select_columns
from model.errors import UserError
from model.progress import Phases
from model.train import TrainConfig, train
from worker.config import WorkerConfig
from worker.local import LocalClassifier, texts_as_records
from worker.transform import DEAD_LETTERS


def describe_data(data: str, text_column: str, label_column: str, sequence_length: int, locale: str) -> str:
    import pandas as pd

    from model.text import standardize

    files = resolve_paths(data)
    whole = [read_table(p) for p in files]  # each file read once
    labelled = all(label_column in f.columns for f in whole)
    columns = [text_column, label_column] if labelled else [text_column]
    frame = pd.concat([select_columns(f, p, columns) for f, p in zip(whole, files, strict=True)], ignore_index=True)
    texts = frame[text_column].fillna("").astype(str).to_numpy(dtype=object)
    tokens = np.array([len(t.split()) for t in standardize(texts.tolist(), locale)]) if len(texts) else np.array([])
    summary = describe(texts, frame[label_column].astype(str).to_numpy() if labelled else None, tokens, sequence_length)
    lines = [f"{summary['rows']} rows in {len(files)} file(s)"]
    for name in ("characters", "tokens"):
        s = summary[name]
        if s:
            lines.append(f"{name:>10}: mean {s['mean']:.1f}  min {s['min']}  median {s['p50']:.0f}  "
                         f"p95 {s['p95']:.0f}  max {s['max']}")
    lines.append(f"longer than {sequence_length} tokens (truncated by the model): "
                 f"{summary['share_longer_than_sequence']:.1%}")
    if "classes" in summary:
        lines.append(f"{len(summary['classes'])} classes:")
        for name, c in summary["classes"].items():
            lines.append(f"  {c['count']:>8}  {c['share']:6.1%}  {name}")
    return "\n".join(lines)


def train_and_report(
    data: str, text_column: str, label_column: str, out_dir: str,
    architecture: ArchitectureConfig, config: TrainConfig, max_rows: int | None, corrections: str | None = None,
) -> str:
    with Phases(enabled=config.verbose > 0).phase("reading", data):
        labelled = load_labelled(data, text_column, label_column, max_rows=max_rows, seed=config.seed,
                                 corrections=corrections)
    if len(labelled) == 0:
        raise UserError(f"{data} has no rows with both a text and a label")
    result = train(labelled, out_dir, architecture, config)
    m = result.metadata
    selection = m["selection"]
    scores = ", ".join(f"{k} {v:.4f}" for k, v in selection["validation_macro_f1"].items())
    calibration = m["calibration"]
    fixed = labelled.corrected
    return "\n".join([
        *([f"corrections: {fixed['replaced']:,} row(s) relabelled, {fixed['added']:,} added"] if fixed else []),
        f"skipped {labelled.skipped_rows} row(s) with empty text or missing label" if labelled.skipped_rows else
        "no rows skipped",
        evaluate.format_report(result.report),
        f"architecture: {selection['chosen']} (validation macro F1: {scores})",
        _calibration_line(calibration),
        f"final fit: the exported model learned from {m['refit']['fitted_on']} ({m['refit']['rows']:,} rows); "
        "the test figures above are the split-trained model's" if m["refit"]["fitted_on"] != "train" else
        "final fit: none (--no-refit): the exported model is the one scored above",
        f"model {m['model_version']} ({m['n_classes']} classes, vocabulary {m['vocabulary_size']}) "
        f"written to {out_dir}; test accuracy {m['test_metrics']['accuracy']:.4f}, "
        f"macro F1 {m['test_metrics']['macro_f1']:.4f}; report in {os.path.join(out_dir, 'report')}",
    ])


def _calibration_line(calibration: dict) -> str:
    if not calibration["fitted_on"]:
        return f"calibration: off, test ECE {calibration['test_ece_after']:.4f}"
    if not calibration.get("applied", True):
        return (f"calibration: none applied (the NLL-optimal temperature would have raised the ECE of its "
                f"{calibration['rows']} rows, {calibration['fitted_on']}), "
                f"test ECE {calibration['test_ece_after']:.4f}")
    return (f"calibration: temperature {calibration['temperature']:.3f} fitted on {calibration['fitted_on']} "
            f"({calibration['rows']} rows), test ECE {calibration['test_ece_before']:.4f}"
            f" → {calibration['test_ece_after']:.4f}")


def evaluate_model(model_dir: str, data: str, text_column: str, label_column: str, report_dir: str) -> str:
    """Score a model on labelled data; the report goes to `report_dir`, never into the model directory
    (a watched models folder, or a read-only bucket, must not change because someone evaluated).

    The scores come through the jobs' own core with their validity rules (`LocalClassifier.scored`): the
    accuracy reported is that of the labels the jobs would write, over the rows they would label; a row
    they would dead-letter (empty after standardisation, emoji only, …) is counted by reason, not scored.
    """
    classifier = LocalClassifier(WorkerConfig(model_dir))  # a directory that does not load: one line, first
    labels = classifier.slot.current.labels.tolist()
    labelled = load_labelled(data, text_column, label_column)
    known = {label: i for i, label in enumerate(labels)}
    unknown = sorted(set(labelled.labels) - set(known))
    if unknown:
        raise UserError(f"{data} has categories the model does not know: {', '.join(unknown[:5])}")
    y_true = np.array([known[label] for label in labelled.labels])
    answers, scored, probabilities = classifier.scored(texts_as_records(labelled.texts.tolist()))
    dead = Counter(answer["reason"] for kind, answer in answers if kind == DEAD_LETTERS)
    if not scored:
        raise UserError(f"none of the {len(answers):,} rows of {data} can be labelled (the jobs would dead-letter "
                        f"them all: {', '.join(f'{k} {v}' for k, v in dead.most_common())}): nothing to score")
    report = evaluate.write_report(report_dir, y_true[scored], probabilities, labels, dead_lettered=dict(dead))
    return f"{evaluate.format_report(report)}\nreport written to {report_dir}"


def record_precisions(model_dir: str, data: str, text_column: str, label_column: str, review_threshold: float,
                      max_rows: int, registry_uri: str | None = None) -> str:
    """Measure the lower precisions (and OpenVINO's f32) against FP32 on `data` and add the record to the
    model's metadata.json (and, for a registered model, to its version's `precisions` tag: registered files
    are never rewritten)."""
    loaded = artifact.load(model_dir)  # a directory that does not load: one line, first
    labelled = load_labelled(data, text_column, label_column, max_rows=max_rows)
    if not len(labelled):
        raise UserError(f"{data} has no rows with a text and a label to measure on")
    rows_of = f"{len(labelled):,} rows of {data}"
    records = agreement.measure(loaded, labelled.texts.tolist(), review_threshold, rows_of)
    metadata = artifact.add_to_metadata(model_dir, precision.RECORD_KEY,
                                        {**(loaded.metadata.get(precision.RECORD_KEY) or {}), **records})
    where = artifact.join(model_dir, artifact.METADATA_FILE)
    lineage = registry.lineage_of(loaded.metadata)
    if lineage:
        registry.record_measurements(lineage, metadata[precision.RECORD_KEY], registry_uri)
        where = f"the {registry.PRECISIONS_TAG} tag of {registry.described(lineage)} (and {where})"
    left_out = [f"{at}: not measured here, {why}" for at in precision.PRECISIONS[1:]
                if (why := precision.unmeasured(loaded.model, at))]
    return "\n".join([precision_table(metadata, review_threshold), *left_out, f"recorded in {where}"])


def precision_table(metadata: dict, review_threshold: float) -> str:
    """The agreement records, one line each, and whether each precision may be served at this threshold."""
    lines = [f"{'precision':<14} {'rows':>8} {'agreement':>10} {'changed':>8} {'confident changed':>18} "
             f"{'review flag changed':>20} {'max prob. change':>17}  served?"]
    for name, record in sorted((metadata.get(precision.RECORD_KEY) or {}).items()):
        refused = precision.refusal(metadata, name, review_threshold)
        served = f"no: {refused}" if refused else "allowed"
        if precision.OPENVINO.get(name) == precision.FP32 and not precision.computes_the_same(metadata, name):
            served += " (computes the same as FP32: fp32 and auto may serve it)"
        lines.append(f"{name:<14} {record['rows']:>8,} {record['agreement']:>10.2%} {record['changed_rows']:>8,} "
                     f"{record['confident_changes']:>18,} {record['review_flag_changes']:>20,} "
                     f"{record['max_probability_change']:>17.3g}  {served}")
    return "\n".join(lines)
