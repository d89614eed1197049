"""The training configurations: plain dataclasses, importable without TensorFlow.

The command line takes its defaults from these (`complaints train --help` answers
without importing TensorFlow), so every default is written once, here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

LOCALES = ("tr", "unicode")
DEFAULT_LOCALE = "tr"
ARCHITECTURES = ("bilstm", "linear", "auto")
FINAL_FITS = ("train", "train+validation", "all")


@dataclass(frozen=True)
class ArchitectureConfig:
    """Sizes of the reference network; the defaults are the reference model."""

    max_tokens: int = 100_000
    sequence_length: int = 40
    embedding_dim: int = 16
    lstm_units: int = 256
    dropout: float = 0.2
    dense_units: int = 64
    locale: str = DEFAULT_LOCALE

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LinearConfig:
    """Sizes and regularisation of the TF-IDF model; the defaults are what benchmarks/quality.py measured.

    Character n-grams carry Turkish's suffixes, typos and missing diacritics far better
    than whole words do on small archives. Balanced class weights lift the rare
    categories that complaint archives always have. On both real datasets they also
    raised accuracy (sikayetvar 0.869 → 0.876, cfpb 0.846 → 0.852, mean of 3 splits).
    """

    word_max_tokens: int = 100_000
    word_ngrams: int = 2
    char_max_tokens: int = 200_000
    char_ngrams: tuple[int, ...] = (2, 3, 4, 5)
    c: float = 30.0  # inverse L2 strength, as scikit-learn's C
    class_weight: str | None = "balanced"
    max_iter: int = 2000
    tol: float = 1e-4  # L-BFGS stops when no gradient component exceeds this (scikit-learn's default)
    patience: int = 10  # ... or when the validation loss has not improved for this many iterations
    locale: str = DEFAULT_LOCALE

    def to_dict(self) -> dict:
        return {**asdict(self), "char_ngrams": list(self.char_ngrams)}


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
    architecture: str = "bilstm"  # bilstm | linear | auto (both, the better by validation macro-F1)
    calibrate: bool = True  # fit a temperature on held-out logits and bake it in
    calibration_folds: int = 5  # linear only: out-of-fold training predictions join the calibration set
    final_fit: str = "train+validation"  # what the exported model learns from: "train", "train+validation", "all"
