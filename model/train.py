"""Fit the classifier on labelled complaints and export the end-to-end artifact.

Discipline the reference run lacked: the vocabulary is adapted on the training split
only, early stopping watches validation loss and restores the best weights, and the
test split is touched once, for the final report.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import keras
import numpy as np
import tensorflow as tf

from model import artifact, evaluate
from model.architecture import ArchitectureConfig, build, end_to_end
from model.data import LabelledData, fingerprint, stratified_split
from model.errors import UserError
from model.text import make_vectorizer


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    validation_split: float = 0.1
    test_split: float = 0.1
    seed: int = 42
    patience: int = 2
    learning_rate: float = 1e-3
    verbose: int = 1


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


def train(
    data: LabelledData,
    out_dir: str,
    architecture: ArchitectureConfig | None = None,
    config: TrainConfig | None = None,
) -> TrainResult:
    """Train, evaluate on the held-out test split and save the artifact to `out_dir`."""
    architecture = architecture or ArchitectureConfig()
    config = config or TrainConfig()
    labels = sorted(set(data.labels.tolist()))
    if len(labels) < 2:
        raise UserError(
            f"the label column has a single class ({labels[0] if labels else 'none'}): "
            "a classifier needs at least two categories"
        )
    keras.utils.set_random_seed(config.seed)
    label_ids = np.searchsorted(np.array(labels, dtype=object), data.labels).astype(np.int32)
    split = stratified_split(label_ids, config.validation_split, config.test_split, config.seed)

    vectorizer = make_vectorizer(architecture.max_tokens, architecture.sequence_length, architecture.locale)
    vectorizer.adapt(tf.data.Dataset.from_tensor_slices(data.texts[split.train].tolist()).batch(1024))
    network = build(architecture, len(labels), vectorizer)
    network.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    fit = network.fit(
        _dataset(data.texts[split.train], label_ids[split.train], config.batch_size, config.seed),
        validation_data=_dataset(data.texts[split.validation], label_ids[split.validation], config.batch_size, None),
        epochs=config.epochs,
        shuffle=False,  # the tf.data pipeline shuffles, seeded, each epoch
        callbacks=[
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
        ],
        verbose=config.verbose,
    )
    history = {k: [float(v) for v in values] for k, values in fit.history.items()}

    served = end_to_end(network)
    test_texts = data.texts[split.test].tolist()
    probabilities = served.predict(tf.constant(test_texts, tf.string), batch_size=512, verbose=0)
    report_dir = os.path.join(out_dir, "report")
    report = evaluate.write_report(report_dir, label_ids[split.test], probabilities, labels, history)

    metadata = {
        "architecture": {"name": "bilstm", **architecture.to_dict()},
        "locale": architecture.locale,
        "vocabulary_size": int(vectorizer.vocabulary_size()),
        "sequence_length": architecture.sequence_length,
        "max_tokens": architecture.max_tokens,
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
            "best_epoch": int(np.argmin(history["val_loss"])) + 1 if history.get("val_loss") else None,
            "config": asdict(config),
        },
        "test_metrics": evaluate.headline(report),
    }
    full = artifact.save(out_dir, served, labels, metadata)
    artifact.write_json(artifact.join(out_dir, "history.json"), history)
    return TrainResult(artifact_dir=out_dir, metadata=full, report=report, history=history, model=served)
