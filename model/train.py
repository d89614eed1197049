"""Fit the classifier on labelled complaints and export the end-to-end artifact.

Discipline the reference run lacked: the vocabulary is adapted on the training split
only, early stopping watches validation loss and restores the best weights, and the
test split is touched once, for the final report.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace

import keras
import numpy as np
import tensorflow as tf

from model import agreement, artifact, evaluate, precision, pretrained, reference
from model.architecture import build, end_to_end, numeric_core
from model.calibration import (
    ENOUGH_VALIDATION_ROWS,
    calibrate,
    expected_calibration_error,
    needs_out_of_fold,
    negative_log_likelihood,
    softmax,
)
from model.config import ARCHITECTURES, FINAL_FITS, LINEAR_KINDS, ArchitectureConfig, LinearConfig, TrainConfig
from model.data import LabelledData, Split, fingerprint, stratified_split
from model.errors import UserError
from model.linear import LinearFit, OtherRows, refit_linear, train_linear
from model.predict import DEFAULT_REVIEW_THRESHOLD
from model.progress import EpochTimes, Phases
from model.serving import ServingModel
from model.text import make_vectorizer, standardizer

VECTORISE_CHUNK = 2048  # rows per vectoriser call when token ids are computed once


@dataclass
class TrainResult:
    artifact_dir: str
    metadata: dict
    report: dict
    history: dict
    model: keras.Model  # the in-memory end-to-end model that was saved


def token_ids(vectorizer: keras.layers.TextVectorization, texts: np.ndarray) -> np.ndarray:
    """Texts → token ids, once, in parallel chunks (the string ops are the part that cannot run on the step)."""
    chunks = (tf.data.Dataset.from_tensor_slices(tf.constant(texts.tolist(), tf.string)).batch(VECTORISE_CHUNK)
              .map(vectorizer, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))
    parts = [chunk.numpy() for chunk in chunks]
    return np.concatenate(parts) if parts else np.zeros((0, vectorizer.get_config()["output_sequence_length"]),
                                                        np.int64)


def _dataset(ids: np.ndarray, label_ids: np.ndarray, batch_size: int, shuffle_seed: int | None) -> tf.data.Dataset:
    data = tf.data.Dataset.from_tensor_slices((ids, label_ids))
    if shuffle_seed is not None:
        data = data.shuffle(len(ids), seed=shuffle_seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


@dataclass
class Fitted:
    """One architecture fitted on the training split, and what selection, calibration and refit need of it."""

    network: keras.Model  # strings → logits
    history: dict
    facts: dict
    out_of_fold: np.ndarray | None = None  # the linear model's training rows, scored by folds that left them out
    linear: LinearFit | None = None  # the linear model's features and weights, which its refit reuses


def _refit_parts(split: Split, final_fit: str) -> list[np.ndarray]:
    """The rows a refit learns from, in the order the linear model's matrix holds them."""
    if final_fit == "train":
        return [split.train]
    return [split.train, split.validation] + ([split.test] if final_fit == "all" else [])


@dataclass(frozen=True)
class _Settings:
    """One training run's settings, as `train` resolved them."""

    architecture: ArchitectureConfig
    linear: LinearConfig
    config: TrainConfig
    phases: Phases


def _fit_linear(kind: str, texts: np.ndarray, label_ids: np.ndarray, split, n_classes: int,
                settings: _Settings) -> Fitted:
    """`linear` or `e5-linear` on `split.train`. Its validation split decides by its size
    (`model.calibration.ENOUGH_VALIDATION_ROWS`): a small one is too noisy to stop on or
    calibrate on alone, so the solver runs to its tolerance and out-of-fold logits join
    the calibration set; a large one stops the solver early and is the calibration set.
    The TF-IDF rows of the refit's rows are computed in the same pass as the training rows'."""
    config = settings.config
    linear = replace(settings.linear, with_encoder=kind == "e5-linear")
    small = needs_out_of_fold(len(split.validation))  # too few validation rows to calibrate or stop on alone
    folds = config.calibration_folds if config.calibrate and small else 0
    other = [texts[part] for part in _refit_parts(split, config.final_fit)[1:]] or [texts[split.validation]]
    fit = train_linear(linear, texts[split.train].tolist(), label_ids[split.train], n_classes, config.seed, folds,
                       phases=settings.phases, other=OtherRows(np.concatenate(other).tolist(),
                                                               None if small else label_ids[split.validation]))
    if config.verbose:
        print(f"{kind}: softmax over {fit.facts['features']:,} features fitted in "
              f"{fit.facts['iterations']} L-BFGS iterations{'' if fit.facts['converged'] else ' (not converged)'}")
    facts = {"name": kind, **linear.to_dict(), **fit.facts, "vocabulary_size": fit.facts["features"],
             **({"encoder": pretrained.facts()} if linear.with_encoder else {})}
    return Fitted(fit.model, {}, facts, fit.out_of_fold, fit)


def _fit(kind: str, texts: np.ndarray, label_ids: np.ndarray, split, n_classes: int, settings: _Settings,
         refit_epochs: int | None = None) -> Fitted:
    """Fit one architecture on `split.train`; for the BiLSTM's refit (`refit_epochs`, its best epoch count),
    exactly that long with no validation."""
    architecture, config, phases = settings.architecture, settings.config, settings.phases
    keras.utils.set_random_seed(config.seed)
    if kind in LINEAR_KINDS:
        return _fit_linear(kind, texts, label_ids, split, n_classes, settings)
    train_texts = texts[split.train]
    vectorizer = make_vectorizer(architecture.max_tokens, architecture.sequence_length, architecture.locale)
    validating = refit_epochs is None
    stage = "" if validating else "refit: "
    with phases.phase(f"{stage}adapting the vocabulary", f"{len(train_texts):,} rows"):
        vectorizer.adapt(tf.data.Dataset.from_tensor_slices(train_texts.tolist()).batch(1024))
    network = build(architecture, n_classes, vectorizer)
    with phases.phase(f"{stage}vectorising the texts once",
                      f"{len(train_texts) + (len(split.validation) if validating else 0):,} rows"):
        train_ids = token_ids(vectorizer, train_texts)
        validation_ids = token_ids(vectorizer, texts[split.validation]) if validating else None
    core = numeric_core(network)  # shares the network's layers: fitting it fits the network
    core.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    held_out = {"callbacks": [EpochTimes(phases, "refit epoch")]} if not validating else {
        "validation_data": _dataset(validation_ids, label_ids[split.validation], config.batch_size, None),
        "callbacks": [EpochTimes(phases), keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience,
                                                                        restore_best_weights=True)],
    }
    phases.say(f"{stage}training the BiLSTM on {len(train_texts):,} rows (Keras' bars, one per epoch)")
    fit = core.fit(
        _dataset(train_ids, label_ids[split.train], config.batch_size, config.seed),
        epochs=refit_epochs or config.epochs,
        shuffle=False,  # the tf.data pipeline shuffles, seeded, each epoch
        verbose=config.verbose,
        **held_out,
    )
    history = {k: [float(v) for v in values] for k, values in fit.history.items()}
    facts = {"name": "bilstm", **architecture.to_dict(), "vocabulary_size": int(vectorizer.vocabulary_size())}
    return Fitted(network, history, facts)


def _refit(kind: str, fitted: Fitted, texts: np.ndarray, label_ids: np.ndarray, split, n_classes: int,
           settings: _Settings, best_epoch: int | None):
    """The exported network: the split-trained one, or the same architecture refitted on more rows.

    The splits have done their job (early stopping, selection, calibration, the test
    score); the refit learns from their rows too, with the settings they chose: the
    BiLSTM for the best epoch count; the linear model with the features adapted on
    the training split, its solver run from zero for the iterations the split chose
    (`refit_linear`). The temperature fitted on held-out logits is kept.
    """
    config = settings.config
    if config.final_fit == "train":
        return fitted.network, {"fitted_on": "train", "rows": len(split.train)}
    parts = _refit_parts(split, config.final_fit)
    rows = np.concatenate(parts)
    if config.verbose:
        print(f"refitting {kind} on {config.final_fit} ({len(rows):,} rows)"
              + (f" for {best_epoch} epoch(s)" if kind == "bilstm" else ""))
    if kind in LINEAR_KINDS:
        refitted, facts = refit_linear(fitted.linear, label_ids[rows], n_classes, settings.linear, config.seed,
                                       settings.phases)
        return refitted, {"fitted_on": config.final_fit, "rows": len(rows), "epochs": None,
                          "features_adapted_on": "train", "iterations": facts["iterations"]}
    rows = np.sort(rows)
    refit_split = Split(train=rows, validation=rows[:0], test=split.test)
    refitted = _fit(kind, texts, label_ids, refit_split, n_classes, settings,
                    refit_epochs=best_epoch or config.epochs).network
    return refitted, {"fitted_on": config.final_fit, "rows": len(rows), "epochs": best_epoch}


def _served(loaded: artifact.Artifact) -> ServingModel:
    """The jobs' serving function over a model not yet exported (graph mode, as small nights are served)."""
    return ServingModel(loaded, xla=False)


def _logits(network: keras.Model, texts: np.ndarray) -> np.ndarray:
    """Training's own scores (validation selection, calibration): logits, before any softmax, from Keras."""
    return network.predict(tf.constant(texts.tolist(), tf.string), batch_size=512, verbose=0)


def _label_ids(data: LabelledData, config: TrainConfig) -> tuple[list[str], np.ndarray]:
    """The sorted categories and each row's id among them; one line for a config or data that cannot train."""
    if config.architecture not in ARCHITECTURES:
        raise UserError(f"unknown architecture {config.architecture!r}: use one of {', '.join(ARCHITECTURES)}")
    if config.architecture == "e5-linear":
        pretrained.fingerprint()  # one line now, not after the vocabularies, if the encoder is not installed
    if config.final_fit not in FINAL_FITS:
        raise UserError(f"unknown final fit {config.final_fit!r}: use one of {', '.join(FINAL_FITS)}")
    labels = sorted(set(data.labels.tolist()))
    if len(labels) < 2:
        raise UserError(
            f"the label column has a single class ({labels[0] if labels else 'none'}): "
            "a classifier needs at least two categories"
        )
    return labels, np.searchsorted(np.array(labels, dtype=object), data.labels).astype(np.int32)


def _candidates(kinds: list[str], data: LabelledData, label_ids: np.ndarray, split: Split, labels: list[str],
                settings: _Settings) -> dict[str, tuple[Fitted, np.ndarray, float]]:
    """Each architecture fitted on the training split: (fit, validation logits, validation macro-F1)."""
    candidates = {}
    for kind in kinds:
        fitted = _fit(kind, data.texts, label_ids, split, len(labels), settings)
        with settings.phases.phase(f"scoring the {kind} model on the validation split",
                                   f"{len(split.validation):,} rows"):
            val_logits = (fitted.linear.logits_of_other_rows()[: len(split.validation)] if fitted.linear
                          else _logits(fitted.network, data.texts[split.validation]))
        y_val = label_ids[split.validation]
        f1 = evaluate.classification_report(y_val, val_logits.argmax(axis=1), labels)["macro avg"]["f1"]
        candidates[kind] = (fitted, val_logits, f1)
    return candidates


@dataclass(frozen=True)
class _Calibration:
    """The temperature and what it was fitted on (metadata's `calibration`, with the test split's ECE added)."""

    temperature: float
    applied: bool
    logits: np.ndarray
    labels: np.ndarray
    fitted_on: str
    chosen_by: str


def _calibrated(val_logits: np.ndarray, y_val: np.ndarray, out_of_fold: np.ndarray | None, y_train: np.ndarray,
                config: TrainConfig, phases: Phases) -> _Calibration:
    """The temperature, fitted on the validation split, joined by out-of-fold training rows when it is small."""
    logits, labels, fitted_on = val_logits, y_val, "validation"
    chosen_by = (f"the validation split has {len(y_val):,} rows, "
                 + ("enough alone" if not needs_out_of_fold(len(y_val)) else "too few alone")
                 + f" (out-of-fold predictions join it below {ENOUGH_VALIDATION_ROWS:,} rows, linear only)")
    if out_of_fold is not None:
        logits = np.concatenate([out_of_fold, val_logits])
        labels = np.concatenate([y_train, y_val])
        fitted_on = f"validation + {config.calibration_folds}-fold out-of-fold training predictions"
    with phases.phase("calibrating", f"{len(labels):,} held-out rows" if config.calibrate else "off"):
        temperature, applied = calibrate(logits, labels) if config.calibrate else (1.0, False)
    return _Calibration(temperature, applied, logits, labels, fitted_on, chosen_by)


def _calibration_record(c: _Calibration, config: TrainConfig, val_logits: np.ndarray, y_val: np.ndarray,
                        before: np.ndarray, y_test: np.ndarray, report: dict) -> dict:
    return {
        "temperature": c.temperature,
        "fitted_on": c.fitted_on if config.calibrate else None,
        "set_chosen_by": c.chosen_by if config.calibrate else None,
        "applied": c.applied,  # False: the NLL-optimal temperature would have raised this set's ECE
        "rows": len(c.labels) if config.calibrate else 0,
        "nll_before": negative_log_likelihood(c.logits, c.labels, 1.0),
        "nll_after": negative_log_likelihood(c.logits, c.labels, c.temperature),
        "validation_ece_before": expected_calibration_error(softmax(val_logits), y_val),
        "validation_ece_after": expected_calibration_error(softmax(val_logits, c.temperature), y_val),
        "test_ece_before": expected_calibration_error(before, y_test),
        "test_ece_after": report["ece"],
    }


def _training_record(data: LabelledData, split: Split, history: dict, best_epoch: int | None,
                     config: TrainConfig) -> dict:
    return {
        "data_fingerprint": fingerprint(data.texts, data.labels),
        "files": data.files,
        "rows": len(data),
        "skipped_rows": data.skipped_rows,
        "split_rows": {"train": len(split.train), "validation": len(split.validation), "test": len(split.test)},
        "epochs_run": len(history.get("loss", [])),
        "best_epoch": best_epoch,
        "config": asdict(config),
    }


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
    labels, label_ids = _label_ids(data, config)
    split = stratified_split(label_ids, config.validation_split, config.test_split, config.seed)
    y_val, y_test = label_ids[split.validation], label_ids[split.test]

    kinds = ["bilstm", "linear"] if config.architecture == "auto" else [config.architecture]
    phases = Phases(enabled=config.verbose > 0)
    settings = _Settings(architecture, linear, config, phases)
    candidates = _candidates(kinds, data, label_ids, split, labels, settings)
    chosen = max(kinds, key=lambda k: candidates[k][2])  # ties keep the first (the reference)
    fitted, val_logits, _ = candidates[chosen]
    network, history, facts = fitted.network, fitted.history, fitted.facts
    calibration = _calibrated(val_logits, y_val, fitted.out_of_fold, label_ids[split.train], config, phases)
    temperature = calibration.temperature
    with phases.phase("evaluating on the test split", f"{len(split.test):,} rows"):
        test_texts = data.texts[split.test]
        # the uncalibrated curve of the reliability diagram needs the network's logits, which only Keras gives
        before = softmax(_logits(network, test_texts))
        calibrated = artifact.Artifact.in_memory(end_to_end(network, temperature), labels, architecture.locale)
        after = _served(calibrated).probabilities(test_texts)
        report = evaluate.write_report(os.path.join(out_dir, "report"), y_test, after, labels, history,
                                       reliability={"uncalibrated": before, f"calibrated (T={temperature:.2f})": after})

    best_epoch = int(np.argmin(history["val_loss"])) + 1 if history.get("val_loss") else None
    final_network, refit = _refit(chosen, fitted, data.texts, label_ids, split, len(labels), settings, best_epoch)
    served = end_to_end(final_network, temperature)
    metadata = {
        "architecture": facts,
        "locale": architecture.locale,
        "vocabulary_size": facts["vocabulary_size"],
        "sequence_length": architecture.sequence_length if chosen == "bilstm" else None,
        "max_tokens": (architecture.max_tokens if chosen == "bilstm"
                       else linear.word_max_tokens + linear.char_max_tokens),
        "selection": {"requested": config.architecture, "chosen": chosen,
                      "validation_macro_f1": {k: candidates[k][2] for k in kinds}},
        "calibration": _calibration_record(calibration, config, val_logits, y_val, before, y_test, report),
        "training": _training_record(data, split, history, best_epoch, config),
        "refit": refit,
        "test_metrics": evaluate.headline(report),
        "test_metrics_of": "the model fitted on the training split, scored once on the test split"
                           + ("" if refit["fitted_on"] == "train" else
                              f"; the exported model was refitted on {refit['fitted_on']} with the same settings"),
    }
    full = _export(out_dir, artifact.Artifact.in_memory(served, labels, architecture.locale), metadata, history,
                   (label_ids[split.train], test_texts, after if refit["fitted_on"] == "train" else None), phases)
    return TrainResult(artifact_dir=out_dir, metadata=full, report=report, history=history, model=served)


def _export(out_dir: str, exported: artifact.Artifact, metadata: dict, history: dict,
            held_out: tuple[np.ndarray, np.ndarray, np.ndarray | None], phases: Phases) -> dict:
    """The drift baseline and the precision records of the exported model, then the model directory itself.
    `held_out`: the training split's label ids, the test texts, and the served probabilities on them (None
    when the model was refitted: then the exported model's own)."""
    train_ids, test_texts, served_test = held_out
    served, labels, locale = exported.model, exported.labels, exported.locale
    with phases.phase("computing the drift baseline"):
        if served_test is None:
            served_test = _served(exported).probabilities(test_texts)
        metadata["baseline"], drift_reference = reference.compute_baseline(
            train_ids, labels, served_test, test_texts, served, standardizer(locale))
    with phases.phase("measuring serving precisions against FP32", f"{len(test_texts):,} test rows"):
        metadata[precision.RECORD_KEY] = agreement.measure(exported, test_texts.tolist(), DEFAULT_REVIEW_THRESHOLD,
                                                           f"the test split ({len(test_texts):,} rows)")
    with phases.phase("exporting the model", out_dir):
        full = artifact.save(out_dir, served, labels, metadata,
                             extra_files={reference.REFERENCE_FILE: reference.to_bytes(drift_reference)})
        artifact.write_json(artifact.join(out_dir, "history.json"), history)
    return full
