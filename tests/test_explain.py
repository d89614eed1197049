"""Why a label (issue #43, item 1): leave-one-word-out explanations, in the record only when asked."""

from __future__ import annotations

import glob
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model import artifact
from model.explain import explain
from model.serving import ServingModel
from pipelines.app.cli import cli
from tests.archives import write_archive
from worker.config import WorkerConfig
from worker.local import LocalClassifier, texts_as_records

TEXTS = ["Kargom 10 gündür gelmedi, iade istiyorum. Kargo firması telefonu açmıyor!",
         "Faturama izinsiz ücret yansıtıldı, müşteri hizmetlerine ulaşamıyorum",
         "Otel odası kirliydi ve rezervasyonum bulunamadı otel otel"]


@pytest.fixture(scope="module")
def linear(linear_trained):
    loaded = artifact.load(linear_trained[0])
    return loaded, ServingModel(loaded)


def test_explanations_are_exact_leave_one_word_out_on_the_linear_model(linear):
    """Each contribution is p(label | text) − p(label | text without every occurrence of the word), computed
    here one text at a time through Keras itself: the batched, served explanation must equal it."""
    loaded, served = linear
    labels = served.probabilities(TEXTS).argmax(axis=1)
    explained = explain(served, TEXTS, labels, k=100)

    def keras_probability(text: str, label: int) -> float:
        return float(loaded.model(tf.constant([text]), training=False).numpy()[0, label])

    for text, label, words in zip(TEXTS, labels, explained, strict=True):
        tokens = served.words([text])[0]
        base = keras_probability(" ".join(tokens), label)
        exact = {w: base - keras_probability(" ".join(t for t in tokens if t != w), label) for w in set(tokens)}
        expected = sorted(((-v, w) for w, v in exact.items() if v > 0))
        assert [e["word"] for e in words] == [w for _, w in expected], text
        assert np.allclose([e["contribution"] for e in words], [-v for v, _ in expected], atol=1e-5)
        assert words, "a confidently labelled complaint has words that carry its label"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.text(min_size=1, max_size=12), st.sampled_from(
    ["kargo", "İADE", "fatura", "ücret", "ısıtıcı", "🙂", "ЖКХ", "配送", "الشحنة"])), min_size=1, max_size=12),
       st.integers(1, 6))
def test_an_explanation_never_names_a_word_absent_from_the_text(serving, words, k):
    text = " ".join(words)
    label = int(serving.probabilities([text]).argmax())
    [explained] = explain(serving, [text], [label], k)
    own = set(serving.words([text])[0])
    assert len(explained) <= k
    assert all(e["word"] in own for e in explained)
    contributions = [e["contribution"] for e in explained]
    assert all(c > 0 for c in contributions) and contributions == sorted(contributions, reverse=True)


def test_the_record_has_an_explanation_only_when_asked(model_dir):
    plain = LocalClassifier(WorkerConfig(model_dir)).classify(texts_as_records(TEXTS))
    assert all("explanation" not in record for _, record in plain)
    some = LocalClassifier(WorkerConfig(model_dir, explain=2)).classify(texts_as_records(TEXTS))
    for _, record in some:  # the needs_review rows only
        assert (record["explanation"] is not None) == record["needs_review"] or record["explanation"] == []
    every = LocalClassifier(WorkerConfig(model_dir, explain=2, explain_all=True)).classify(texts_as_records(TEXTS))
    assert all(isinstance(record["explanation"], list) and len(record["explanation"]) <= 2 for _, record in every)


def test_predict_explains_every_text(model_dir):
    result = CliRunner().invoke(cli, ["predict", "--model", model_dir, "--explain", "3", "--json", *TEXTS])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert len(lines) == 3 and all(len(line["explanation"]) <= 3 for line in lines)
    assert any(line["explanation"] for line in lines)
    shown = CliRunner().invoke(cli, ["predict", "--model", model_dir, "--explain", "2", TEXTS[0]])
    assert "because:" in shown.output


def test_explain_all_without_explain_is_one_line(model_dir, tmp_path):
    from tests.commands import invoke, one_error

    one_error(invoke("label", "--model", model_dir, "--input", tmp_path / "x.parquet", "--output", tmp_path / "out",
                     "--explain-all"), "--explain K")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, explained", [([], None), (["--explain", "3"], "review"),
                                              (["--explain", "3", "--explain-all"], "all")])
def test_the_nightly_job_explains_the_rows_it_is_asked_to(model_dir, tmp_path, flags, explained):
    write_archive(tmp_path / "in", rows=300, files=1)
    result = CliRunner().invoke(cli, ["label", "--model", model_dir, "--input", str(tmp_path / "in" / "*.parquet"),
                                      "--output", str(tmp_path / "out"), "--no-progress", "--review-threshold",
                                      "0.6", *flags])
    assert result.exit_code == 0, result.output
    [path] = glob.glob(str(tmp_path / "out" / "predictions-*.parquet"))
    table = pq.read_table(path)
    if explained is None:
        assert "explanation" not in table.schema.names
        return
    rows = table.to_pylist()
    assert any(r["needs_review"] for r in rows) and any(not r["needs_review"] for r in rows)
    for r in rows:
        if explained == "all" or r["needs_review"]:
            assert r["explanation"] is not None and len(r["explanation"]) <= 3
        else:
            assert r["explanation"] is None
