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


def _long_text(words: int, seed: int) -> str:
    """A complaint-like text of `words` words drawn from a vocabulary the model knows in part, up to 50,000 chars."""
    rng = np.random.default_rng(seed)
    pool = TEXTS[0].split() + TEXTS[1].split() + TEXTS[2].split() + ["xq" + str(i) for i in range(200)]
    return " ".join(rng.choice(pool, words))[:50_000]


class _Watching:
    """The served model, with what each `probabilities` call was given (how much text is held at once)."""

    def __init__(self, served):
        self.served, self.calls = served, []
        self.words, self.words_read = served.words, served.words_read

    def probabilities(self, texts):
        self.calls.append([len(t) for t in texts])
        return self.served.probabilities(texts)


def test_a_window_model_is_asked_only_about_its_window_and_the_answer_is_the_whole_texts_own(serving):
    """Item 6: the BiLSTM reads its first 40 words, so variants are built from those (removing a word pulls the
    next one in); the explanation equals leave-one-word-out over the whole 50,000-character text, and no text
    the model is given is longer than its window."""
    texts = [_long_text(9_000, seed) for seed in range(3)]
    labels = serving.probabilities(texts).argmax(axis=1)
    watching = _Watching(serving)
    explained = explain(watching, texts, labels, k=100)
    assert serving.words_read == 40
    longest_word = max(len(w) for t in texts for w in serving.words([t])[0])
    assert max(max(c) for c in watching.calls) <= 40 * (longest_word + 1)
    for text, label, words in zip(texts, labels, explained, strict=True):
        tokens = serving.words([text])[0]
        whole = [" ".join(t for t in tokens if t != w) for w in dict.fromkeys(tokens[:40])]
        lost = serving.probabilities([" ".join(tokens)])[0, label] - serving.probabilities(whole)[:, label]
        exact = {w: v for v, w in zip(lost, dict.fromkeys(tokens[:40]), strict=True) if v > 0}
        given = {e["word"]: e["contribution"] for e in words}  # unknown words tie: compare word by word
        assert given.keys() == exact.keys() and all(abs(given[w] - exact[w]) < 1e-5 for w in exact)


def test_a_model_that_reads_every_word_is_asked_in_chunks_of_bounded_size(linear, monkeypatch):
    """Item 6: the linear model reads every word, so its variants are whole texts; they are built and scored a
    bounded amount at a time, and the answer is the same as all at once."""
    from model import explain as explaining

    _, served = linear
    texts = [_long_text(7_000, seed) for seed in range(2)]
    labels = served.probabilities(texts).argmax(axis=1)
    at_once = explain(served, texts, labels, k=5)
    monkeypatch.setattr(explaining, "CHUNK_CHARS", 200_000)
    watching = _Watching(served)
    assert explain(watching, texts, labels, k=5) == at_once
    assert served.words_read is None and len(watching.calls) > 3
    assert max(sum(c) for c in watching.calls[1:]) <= 200_000 + 50_000  # the budget, and at most one text over


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
