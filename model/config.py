"""The training configurations: plain dataclasses, importable without TensorFlow.

The command line derives its options from these (`pipelines.app.config_options`; a
field's metadata is its option's help), and `complaints train --help` answers without
importing TensorFlow, so every default and its explanation are written once, here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

LOCALES = ("tr", "unicode")
DEFAULT_LOCALE = "tr"
ARCHITECTURES = ("bilstm", "linear", "e5-linear", "auto")
LINEAR_KINDS = ("linear", "e5-linear")  # fitted by `model.linear`
FINAL_FITS = ("train", "train+validation", "all")


# What the serving function (model/serving.py) compiles for by default, and reads of a text.
DEFAULT_MIN_BATCH_SIZE = 32
DEFAULT_MAX_BATCH_SIZE = 512

# The model reads at most this many characters of a text; a longer one is labelled on its start and its
# prediction says `text_truncated`. The BiLSTM reads 40 words and the linear model's n-grams gain nothing
# from more: real complaints here are at most 25,516 characters (CFPB narratives), and a 10 MB text of
# one-letter words would otherwise be split into millions of tokens before either model looks at it.
MAX_TEXT_CHARS = 50_000

@dataclass(frozen=True)
class ArchitectureConfig:
    """Sizes of the reference network; the defaults are the reference model."""

    max_tokens: int = field(default=100_000, metadata={
        "low": 2, "help": "Word vocabulary size: the BiLSTM's, and the linear model's word n-grams."})
    sequence_length: int = field(default=40, metadata={"low": 1, "help": "Words the BiLSTM reads of a text."})
    embedding_dim: int = field(default=16, metadata={"low": 1, "help": "BiLSTM only."})
    lstm_units: int = field(default=256, metadata={"low": 1, "help": "BiLSTM only."})
    dropout: float = 0.2
    dense_units: int = field(default=64, metadata={"low": 1, "help": "BiLSTM only."})
    locale: str = field(default=DEFAULT_LOCALE, metadata={
        "choices": LOCALES, "help": "Lower-casing rules: Turkish, or plain Unicode for other languages."})

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
    with_encoder: bool = False  # e5-linear: the pretrained encoder's embedding beside the TF-IDF (model.pretrained)

    def to_dict(self) -> dict:
        return {**asdict(self), "char_ngrams": list(self.char_ngrams)}


@dataclass(frozen=True)
class TrainConfig:
    """How training runs; field metadata is the CLI's help."""

    epochs: int = field(default=10, metadata={"low": 1, "help": "BiLSTM: passes over the training split, at most."})
    batch_size: int = field(default=128, metadata={"low": 1, "help": "BiLSTM: rows per gradient step."})
    validation_split: float = field(default=0.1, metadata={
        "help": "Share of rows held out for early stopping and calibration."})
    test_split: float = field(default=0.1, metadata={
        "help": "Share of rows held out for the test figures."})
    seed: int = field(default=42, metadata={"help": "Seeds the splits, the sample and the weights."})
    patience: int = field(default=2, metadata={
        "low": 0, "help": "BiLSTM: early-stopping patience on validation loss."})
    learning_rate: float = field(default=1e-3, metadata={"low": 0, "help": "BiLSTM only."})
    verbose: int = 1
    architecture: str = field(default="bilstm", metadata={
        "choices": ARCHITECTURES, "help": "bilstm: the reference; linear: TF-IDF word+character n-grams; "
        "e5-linear: linear plus a pretrained encoder (the pretrained extra; 5-30 texts/s, for small nights); "
        "auto: bilstm and linear, the better by validation macro-F1."})
    calibrate: bool = field(default=True, metadata={
        "help": "Fit a temperature on the validation split so confidences match accuracy."})
    calibration_folds: int = 5  # linear only: out-of-fold training predictions join the calibration set
    final_fit: str = field(default="train+validation", metadata={
        "choices": FINAL_FITS[1:], "help": "What the refit learns from; all = the test split too (the test "
        "figures were taken before)."})  # "train": no refit (--no-refit)
