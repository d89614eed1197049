"""Shared fixtures: a tiny real model trained once per session on generated data."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from model.architecture import ArchitectureConfig
from model.data import LabelledData
from model.sample import generate
from model.train import TrainConfig, train

# Small enough to train in ~10 s on two cores, big enough to learn the sample data well.
TINY_ARCHITECTURE = ArchitectureConfig(max_tokens=3000, embedding_dim=16, lstm_units=16, dense_units=32)
TINY_TRAINING = TrainConfig(epochs=8, batch_size=64, learning_rate=0.01, seed=3, verbose=0)


def labelled(rows: int, seed: int) -> LabelledData:
    frame = generate(rows, seed=seed)
    return LabelledData(frame["text"].to_numpy(dtype=object), frame["category"].to_numpy(dtype=object), 0, [])


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """(model directory, TrainResult) of a tiny BiLSTM trained on 4,000 generated rows."""
    out = str(tmp_path_factory.mktemp("model") / "tiny")
    result = train(labelled(4000, seed=11), out, TINY_ARCHITECTURE, TINY_TRAINING)
    return out, result


@pytest.fixture(scope="session")
def model_dir(trained) -> str:
    return trained[0]


@pytest.fixture(scope="session")
def loaded(model_dir):
    from model import artifact

    return artifact.load(model_dir)
