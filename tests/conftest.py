"""Shared fixtures: a tiny real model trained once per session on generated data."""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# `--precision auto` serves FP32 in every test, on any CPU, unless a test asks for bf16 hardware itself
# (tests/test_precision.py): on a CPU with AMX, auto would serve bf16 wherever it measures faster, and tests
# that compare served probabilities with Keras' FP32 ones would depend on the machine they run on.
os.environ.setdefault("COMPLAINTS_BF16_HARDWARE", "no")
# And FP32 on TensorFlow, unless a test asks for OpenVINO's f32 itself: both compute the same (to 1e-5), but
# which one a load-time timing picks would vary by machine and load, and so would the last bits of a probability.
os.environ.setdefault("COMPLAINTS_OPENVINO_F32", "no")
os.environ.setdefault("COMPLAINTS_PRECISION_CACHE", "off")  # what auto measured is kept only where a test says so

import pytest

from model.architecture import ArchitectureConfig
from model.config import LinearConfig
from model.data import LabelledData
from model.sample import generate
from model.train import TrainConfig, train

PROJECT = "complaints-test"  # the Pub/Sub emulator's project


@pytest.fixture(scope="session")
def emulator_host():
    """Google's Pub/Sub emulator on a free loopback port, for every streaming test; stopped at the end."""
    from pipelines.app import pubsub_admin as admin

    with admin.emulator(PROJECT) as host:
        previous = os.environ.get("PUBSUB_EMULATOR_HOST")
        os.environ["PUBSUB_EMULATOR_HOST"] = host
        yield host
        if previous is None:
            del os.environ["PUBSUB_EMULATOR_HOST"]
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = previous


# Small enough to train in ~10 s on two cores, big enough to learn the sample data well.
TINY_ARCHITECTURE = ArchitectureConfig(max_tokens=3000, embedding_dim=16, lstm_units=16, dense_units=32)
TINY_TRAINING = TrainConfig(epochs=8, batch_size=64, learning_rate=0.01, seed=3, verbose=0)
SMALL_LINEAR = LinearConfig(word_max_tokens=3000, char_max_tokens=5000)
FAST = TrainConfig(epochs=3, batch_size=64, learning_rate=0.01, seed=5, verbose=0)


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
def linear_trained(tmp_path_factory):
    """(model directory, TrainResult) of a small linear TF-IDF model on 2,000 generated rows."""
    out = str(tmp_path_factory.mktemp("linear") / "m")
    result = train(labelled(2000, seed=12), out, TINY_ARCHITECTURE,
                   dataclasses.replace(FAST, architecture="linear"), SMALL_LINEAR)
    return out, result


@pytest.fixture(scope="session")
def model_dir(trained) -> str:
    return trained[0]


@pytest.fixture(scope="session")
def loaded(model_dir):
    from model import artifact

    return artifact.load(model_dir)


@pytest.fixture(scope="session")
def serving(loaded):
    """The jobs' serving function over the session's model: the tests' oracle (tests/test_compiled.py shows it
    gives Keras' own probabilities)."""
    from model.serving import ServingModel

    return ServingModel(loaded)


@pytest.fixture(scope="session")
def retrained_model_dir(tmp_path_factory) -> str:
    """Another tiny model with the same labels as `model_dir` and other weights: a nightly retrain."""
    out = str(tmp_path_factory.mktemp("retrained") / "tiny-b")
    train(labelled(4000, seed=12), out, TINY_ARCHITECTURE, dataclasses.replace(TINY_TRAINING, epochs=2, seed=4))
    return out


@pytest.fixture(scope="session")
def other_labels_model_dir(tmp_path_factory) -> str:
    """A tiny model trained on five categories only: its label set differs from `model_dir`'s."""
    frame = generate(3000, seed=13)
    frame = frame[frame["category"].isin(sorted(frame["category"].unique())[:5])]
    data = LabelledData(frame["text"].to_numpy(dtype=object), frame["category"].to_numpy(dtype=object), 0, [])
    out = str(tmp_path_factory.mktemp("other-labels") / "tiny-c")
    train(data, out, TINY_ARCHITECTURE, dataclasses.replace(TINY_TRAINING, epochs=1, seed=5))
    return out


@pytest.fixture(scope="session")
def weak_model_dir(tmp_path_factory) -> str:
    """The tiny model's architecture after a single epoch: clearly worse than `model_dir`."""
    out = str(tmp_path_factory.mktemp("weak") / "tiny-weak")
    train(labelled(4000, seed=11), out, TINY_ARCHITECTURE,
          dataclasses.replace(TINY_TRAINING, epochs=1, learning_rate=0.002))
    return out
