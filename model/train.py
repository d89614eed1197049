"""Fit the classifier on labelled complaints and export the end-to-end artifact.

Discipline the reference run lacked: the vocabulary is adapted on the training split
only, early stopping watches validation loss and restores the best weights, and the
test split is touched once, for the final report.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass

import keras
import numpy as np
import tensorflow as tf

from model import artifact, baseline, evaluate
from model.architecture import build, end_to_end
from model.calibration import (
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    softmax,
)
from model.config import ARCHITECTURES, FINAL_FITS, ArchitectureConfig, LinearConfig, TrainConfig
from model.data import LabelledData, Split, fingerprint, stratified_split
from model.errors import UserError
from model.linear import train_linear
from model.progress import Phases
from model.text import make_vectorizer, standardizer


@dataclass
class TrainResult:
    artifact_dir: str
    metadata: dict
    report: dict
    history: dict
    model: keras.Model  # the in-memory end-to-end model that was saved


def _dataset(texts: np.ndarray, label_ids: np.ndarray, batch_size: int, shuffle_seed: int | None) -> tf.data.Dataset:
    data = tf.data.Dataset.from_tensor_slices((tf.constant(texts.tolist(), tf.string), label_ids))
    if shuffle_seed is not None:
        data = data.shuffle(len(texts), seed=shuffle_seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _fit(
    kind: str,
    texts: np.ndarray,
    label_ids: np.ndarray,
    split,
    n_classes: int,
    architecture: ArchitectureConfig,
    linear: LinearConfig,
    config: TrainConfig,
    refit_epochs: int | None = None,
    phases: Phases | None = None,
) -> tuple[keras.Model, dict, dict, np.ndarray | None]:
    """Fit one architecture on `split.train`.

    Returns the strings → logits model, its history, facts for the metadata and, where
    the architecture can afford them, out-of-fold logits of the training rows. For the
    refit (`refit_epochs`, the BiLSTM's best epoch count), the BiLSTM trains exactly
    that long with no validation, and the linear model computes no out-of-fold logits.
    """
    keras.utils.set_random_seed(config.seed)
    phases = phases or Phases(enabled=False)
    train_texts = texts[split.train]
    if kind == "linear":
        folds = config.calibration_folds if config.calibrate and refit_epochs is None else 0
        network, facts, out_of_fold = train_linear(
            linear, train_texts.tolist(), label_ids[split.train], n_classes, config.seed, folds, phases=phases
        )
        if config.verbose:
            print(f"linear: softmax over {facts['features']:,} TF-IDF features fitted in "
                  f"{facts['iterations']} L-BFGS iterations{'' if facts['converged'] else ' (not converged)'}")
        facts = {"name": "linear", **linear.to_dict(), **facts, "vocabulary_size": facts["features"]}
        return network, {}, facts, out_of_fold
    vectorizer = make_vectorizer(architecture.max_tokens, architecture.sequence_length, architecture.locale)
    with phases.phase("adapting the vocabulary", f"{len(train_texts):,} rows"):
        vectorizer.adapt(tf.data.Dataset.from_tensor_slices(train_texts.tolist()).batch(1024))
    network = build(architecture, n_classes, vectorizer)
    network.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    held_out = {} if refit_epochs is not None else {
        "validation_data": _dataset(texts[split.validation], label_ids[split.validation], config.batch_size, None),
        "callbacks": [keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience,
                                                    restore_best_weights=True)],
    }
    if config.verbose:
        print(f"[train] training the BiLSTM on {len(train_texts):,} rows (Keras' bars, one per epoch)",
              file=sys.stderr, flush=True)
    fit = network.fit(
        _dataset(train_texts, label_ids[split.train], config.batch_size, config.seed),
        epochs=refit_epochs or config.epochs,
        shuffle=False,  # the tf.data pipeline shuffles, seeded, each epoch
        verbose=config.verbose,
        **held_out,
    )
    history = {k: [float(v) for v in values] for k, values in fit.history.items()}
    facts = {"name": "bilstm", **architecture.to_dict(), "vocabulary_size": int(vectorizer.vocabulary_size())}
    return network, history, facts, None


def _refit(kind, network, texts, label_ids, split, n_classes, architecture, linear, config, best_epoch, phases):
    """The exported network: the split-trained one, or the same architecture refitted on more rows.

    The splits have done their job (early stopping, selection, calibration, the test
    score); the refit learns from their rows too, with the settings they chose: the
    BiLSTM for the best epoch count, the linear model by the same deterministic solver.
    The temperature fitted on held-out logits is kept.
    """
    if config.final_fit == "train":
        return network, {"fitted_on": "train", "rows": len(split.train)}
    parts = [split.train, split.validation] + ([split.test] if config.final_fit == "all" else [])
    rows = np.sort(np.concatenate(parts))
    refit_split = Split(train=rows, validation=rows[:0], test=split.test)
    if config.verbose:
        print(f"refitting {kind} on {config.final_fit} ({len(rows):,} rows)"
              + (f" for {best_epoch} epoch(s)" if kind == "bilstm" else ""))
    refitted, _, _, _ = _fit(kind, texts, label_ids, refit_split, n_classes, architecture, linear, config,
                             refit_epochs=best_epoch or config.epochs, phases=phases)
    return refitted, {"fitted_on": config.final_fit, "rows": len(rows),
                      "epochs": best_epoch if kind == "bilstm" else None}


def _logits(network: keras.Model, texts: np.ndarray) -> np.ndarray:
    return network.predict(tf.constant(texts.tolist(), tf.string), batch_size=512, verbose=0)


def train(
    data: LabelledData,
    out_dir: str,
    architecture: ArchitectureConfig | None = None,
    config: TrainConfig | None = None,
    linear: LinearConfig | None = None,
) -> TrainResult:
    """Train, calibrate, evaluate on the held-out test split and save the artifact to `out_dir`.

    With `config.architecture == "auto"` both architectures are fitted on the same
    training split and the one with the better validation macro-F1 is exported.
    """
    architecture = architecture or ArchitectureConfig()
    config = config or TrainConfig()
    linear = linear or LinearConfig(word_max_tokens=architecture.max_tokens, locale=architecture.locale)
    if config.architecture not in ARCHITECTURES:
        raise UserError(f"unknown architecture {config.architecture!r}: use one of {', '.join(ARCHITECTURES)}")
    if config.final_fit not in FINAL_FITS:
        raise UserError(f"unknown final fit {config.final_fit!r}: use one of {', '.join(FINAL_FITS)}")
    labels = sorted(set(data.labels.tolist()))
    if len(labels) < 2:
        raise UserError(
            f"the label column has a single class ({labels[0] if labels else 'none'}): "
            "a classifier needs at least two categories"
        )
    label_ids = np.searchsorted(np.array(labels, dtype=object), data.labels).astype(np.int32)
    split = stratified_split(label_ids, config.validation_split, config.test_split, config.seed)
    y_val, y_test = label_ids[split.validation], label_ids[split.test]

    kinds = ["bilstm", "linear"] if config.architecture == "auto" else [config.architecture]
    candidates = {}
    phases = Phases(enabled=config.verbose > 0)
    for kind in kinds:
        network, history, facts, out_of_fold = _fit(
            kind, data.texts, label_ids, split, len(labels), architecture, linear, config, phases=phases
        )
        with phases.phase(f"scoring the {kind} model on the validation split", f"{len(split.validation):,} rows"):
            val_logits = _logits(network, data.texts[split.validation])
        f1 = evaluate.classification_report(y_val, val_logits.argmax(axis=1), labels)["macro avg"]["f1"]
        candidates[kind] = (network, history, facts, val_logits, f1, out_of_fold)
    chosen = max(kinds, key=lambda k: candidates[k][4])  # ties keep the first (the reference)
    network, history, facts, val_logits, _, out_of_fold = candidates[chosen]

    calibration_logits, calibration_labels, calibration_set = val_logits, y_val, "validation"
    if out_of_fold is not None:
        calibration_logits = np.concatenate([out_of_fold, val_logits])
        calibration_labels = np.concatenate([label_ids[split.train], y_val])
        calibration_set = f"validation + {config.calibration_folds}-fold out-of-fold training predictions"
    with phases.phase("calibrating", f"{len(calibration_labels):,} held-out rows" if config.calibrate else "off"):
        temperature = fit_temperature(calibration_logits, calibration_labels) if config.calibrate else 1.0
    with phases.phase("evaluating on the test split", f"{len(split.test):,} rows"):
        test_logits = _logits(network, data.texts[split.test])
        before, after = softmax(test_logits), softmax(test_logits, temperature)
        report_dir = os.path.join(out_dir, "report")
        report = evaluate.write_report(report_dir, y_test, after, labels, history, reliability={
            "uncalibrated": before, f"calibrated (T={temperature:.2f})": after})

    best_epoch = int(np.argmin(history["val_loss"])) + 1 if history.get("val_loss") else None
    final_network, refit = _refit(chosen, network, data.texts, label_ids, split, len(labels), architecture, linear,
                                  config, best_epoch, phases)
    served = end_to_end(final_network, temperature)
    metadata = {
        "architecture": facts,
        "locale": architecture.locale,
        "vocabulary_size": facts["vocabulary_size"],
        "sequence_length": architecture.sequence_length if chosen == "bilstm" else None,
        "max_tokens": (architecture.max_tokens if chosen == "bilstm"
                       else linear.word_max_tokens + linear.char_max_tokens),
        "selection": {
            "requested": config.architecture,
            "chosen": chosen,
            "validation_macro_f1": {k: candidates[k][4] for k in kinds},
        },
        "calibration": {
            "temperature": temperature,
            "fitted_on": calibration_set if config.calibrate else None,
            "rows": len(calibration_labels) if config.calibrate else 0,
            "nll_before": negative_log_likelihood(calibration_logits, calibration_labels, 1.0),
            "nll_after": negative_log_likelihood(calibration_logits, calibration_labels, temperature),
            "validation_ece_before": expected_calibration_error(softmax(val_logits), y_val),
            "validation_ece_after": expected_calibration_error(softmax(val_logits, temperature), y_val),
            "test_ece_before": expected_calibration_error(before, y_test),
            "test_ece_after": report["ece"],
        },
        "training": {
            "data_fingerprint": fingerprint(data.texts, data.labels),
            "files": data.files,
            "rows": len(data),
            "skipped_rows": data.skipped_rows,
            "split_rows": {
                "train": len(split.train),
                "validation": len(split.validation),
                "test": len(split.test),
            },
            "epochs_run": len(history.get("loss", [])),
            "best_epoch": best_epoch,
            "config": asdict(config),
        },
        "refit": refit,
        "test_metrics": evaluate.headline(report),
        "test_metrics_of": "the model fitted on the training split, scored once on the test split"
                           + ("" if refit["fitted_on"] == "train" else
                              f"; the exported model was refitted on {refit['fitted_on']} with the same settings"),
    }
    with phases.phase("computing the drift baseline"):
        metadata["baseline"] = baseline.compute(label_ids[split.train], labels, after, data.texts[split.test], served,
                                                standardizer(architecture.locale))
    with phases.phase("exporting the model", out_dir):
        full = artifact.save(out_dir, served, labels, metadata)
        artifact.write_json(artifact.join(out_dir, "history.json"), history)
    return TrainResult(artifact_dir=out_dir, metadata=full, report=report, history=history, model=served)
