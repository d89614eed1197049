"""One text, one verdict: the nightly job, the live job, `predict` and the web page agree (hypothesis).

Each runs at its own production settings: the nightly job is the real `complaints
label` command (batches of 1,024 filled across tables, graph mode below 15,000 rows);
the live job is its classification stage as `complaints stream` builds it (messages
decoded from Pub/Sub's JSON, batches of 32–512 by Beam's `BatchElements`, XLA), run
on the in-process runner without the Pub/Sub emulator, whose part (reading,
publishing, acknowledging) has its own tests; `predict` and the page are the
`Predictor` both commands use, the page through an uploaded Parquet file. Generated
archives vary the texts (real-looking complaints, odd ones, any Unicode), the ids
(blank and missing among them), a kept column, the number of rows (some across the
nightly batch of 1,024) and the files and row groups they are split into. Every
labelled row must get the same label and top-k with confidences within `TOLERANCE`,
and every refused row the same dead-letter reason, everywhere.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.testing.util import BeamAssertException, assert_that
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from model.sample import generate
from pipelines.app.cli import cli
from pipelines.app.predictor import Predictor
from pipelines.plumbing.codec import DecodeMessages
from worker import record_columns
from worker.transform import DEAD_LETTER_PARTS, DEAD_LETTERS, PREDICTIONS, ClassifyComplaints, WorkerConfig

pytestmark = pytest.mark.slow  # whole jobs, services or trainings: left out of `pytest -m "not slow"`

# Graph mode (nightly, small archives) and XLA (live) sum in different orders: float32 rounding, measured
# at up to 5.4e-7 on the session model's probabilities of 1,100 generated complaints.
TOLERANCE = 1e-6
POOL = generate(1200, seed=41, labelled=False)["text"].tolist()
ODD = ["", " ", "?!...", "😡😡", "kargo gelmedi", "İSTANBUL ılık", "a\x00b", "\ufeffmetin", "\n\t", "ﬁ",
       "x" * 5000, "kargo gelmedi " * 4000]  # the last: 56,000 characters, labelled on its start
TEXT = st.one_of(st.none(), st.sampled_from(POOL), st.sampled_from(ODD), st.text(max_size=60))
MISSING_ID = st.sampled_from([None, "", "  "])


@st.composite
def archives(draw) -> dict:
    rows = draw(st.integers(1, 40))
    texts = draw(st.lists(TEXT, min_size=rows, max_size=rows))
    ids = [draw(st.one_of(st.just(f"r{i}"), MISSING_ID)) for i in range(rows)]
    stores = draw(st.lists(st.one_of(st.none(), st.text(max_size=6)), min_size=rows, max_size=rows))
    if draw(st.integers(0, 3)) == 0:  # across the nightly job's batch of 1,024
        extra = draw(st.integers(1000, 1100))
        texts += POOL[:extra]
        ids += [f"r{i}" for i in range(rows, rows + extra)]
        stores += [None] * extra
    cut = draw(st.integers(0, len(texts) - 1))
    return {"texts": texts, "ids": ids, "stores": stores, "files": [(0, cut), (cut, len(texts))] if cut else
            [(0, len(texts))], "row_group_size": draw(st.sampled_from([7, 100, 10_000]))}


def verdict(output: dict) -> tuple:
    """What must agree: a label with its top-k, or a dead letter's reason."""
    if "reason" in output:
        return ("dead letter", output["reason"])
    return ("label", output["label"], tuple(t["label"] for t in output["top_k"]), output["confidence"],
            tuple(t["confidence"] for t in output["top_k"]), output["needs_review"], output["text_truncated"],
            output.get("store"))


def same(a: tuple, b: tuple) -> bool:
    if a[0] != b[0] or a[0] == "dead letter":
        return a == b
    close = abs(a[3] - b[3]) <= TOLERANCE and all(abs(x - y) <= TOLERANCE for x, y in zip(a[4], b[4], strict=True))
    return a[1:3] == b[1:3] and a[5:] == b[5:] and close


def nightly(model_dir: str, work: str, archive: dict, extra: list[str] | None = None) -> dict[str, tuple]:
    """`complaints label` on the archive: verdict by id (rows without an id only counted, under None)."""
    for n, (lo, hi) in enumerate(archive["files"]):
        pq.write_table(pa.table({"id": pa.array(archive["ids"][lo:hi], pa.string()),
                                 "text": pa.array(archive["texts"][lo:hi], pa.string()),
                                 "store": pa.array(archive["stores"][lo:hi], pa.string())}),
                       os.path.join(work, f"part-{n}.parquet"), row_group_size=archive["row_group_size"])
    out = os.path.join(work, "labelled")
    result = CliRunner().invoke(cli, ["label", "--model", model_dir, "--input", os.path.join(work, "part-*.parquet"),
                                      "--output", out, "--keep-columns", "store", "--no-progress", *(extra or [])])
    assert result.exit_code == 0, result.output
    found: dict = {}
    for path in sorted(glob.glob(os.path.join(out, "*-of-*.parquet"))):
        for row in pq.read_table(path).to_pylist():
            found.setdefault(row["id"], []).append(verdict(row))
    return found


def live_messages(archive: dict) -> list[PubsubMessage]:
    """The rows as a producer publishes them: one JSON object a message."""
    return [PubsubMessage(json.dumps({"id": i, "text": t, "store": s}).encode("utf-8"), {}, message_id=f"m{n}")
            for n, (i, t, s) in enumerate(zip(archive["ids"], archive["texts"], archive["stores"], strict=True))]


def agrees_with(expected: dict[str, list[tuple]]):
    """An `assert_that` matcher: the live job's outputs give the nightly job's verdicts, row for row."""
    def match(outputs: list[dict]) -> None:
        found: dict = {}
        for output in outputs:
            found.setdefault(output["id"], []).append(verdict(output))
        if sorted(map(str, found)) != sorted(map(str, expected)):
            raise BeamAssertException(f"ids differ: live {sorted(map(str, found))[:5]}…, "
                                      f"nightly {sorted(map(str, expected))[:5]}…")
        for rid, verdicts in found.items():
            ours, theirs = sorted(verdicts), sorted(expected[rid])
            if len(ours) != len(theirs) or not all(same(a, b) for a, b in zip(ours, theirs, strict=True)):
                raise BeamAssertException(f"row {rid!r}: live {ours} != nightly {theirs}")
    return match


def live(model_dir: str, archive: dict, expected: dict[str, list[tuple]], precision: str = "auto") -> None:
    """The live job's stage as `complaints stream` builds it for the local read, checked with `assert_that`."""
    # the live defaults: batches of 32–512, XLA; the local read forms batches a poll
    worker = WorkerConfig(model_dir, precision=precision)
    with beam.Pipeline(runner="FnApiRunner") as p:
        decoded = (p | beam.Create(live_messages(archive), reshuffle=False)
                   | beam.ParDo(DecodeMessages()).with_outputs(DEAD_LETTERS, main="records"))
        results = decoded.records | ClassifyComplaints(worker)
        predictions = results[PREDICTIONS] | beam.FlatMap(record_columns.records)  # as the Pub/Sub edge sends them
        outputs = [decoded[DEAD_LETTERS], predictions, *(results[part] for part in DEAD_LETTER_PARTS)]
        assert_that(outputs | beam.Flatten(), agrees_with(expected))


@pytest.fixture(scope="module")
def predictor(model_dir) -> Predictor:
    return Predictor(model_dir)


@settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "6")), deadline=None,
          phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(archive=archives())
def test_the_jobs_predict_and_the_page_give_each_text_one_verdict(model_dir, predictor, archive):
    work = tempfile.mkdtemp(prefix="agree-")
    expected = nightly(model_dir, work, archive)
    assert sum(map(len, expected.values())) == len(archive["texts"])  # every row answered once

    live(model_dir, archive, expected)

    # `predict` takes texts, numbers them itself and keeps no columns: compare the rows with an id.
    rows = [n for n, rid in enumerate(archive["ids"]) if rid and rid.strip()]
    texts = [archive["texts"][n] if archive["texts"][n] is not None else "" for n in rows]
    for n, answer in zip(rows, predictor.predict(texts), strict=True):
        theirs = expected[archive["ids"][n]][0]
        ours = (*verdict(answer.record)[:-1], theirs[-1]) if not answer.rejected else verdict(answer.record)
        if archive["texts"][n] is None:  # no text at all is `missing_text` in a job; as typed text it is empty
            assert theirs == ("dead letter", "missing_text") and ours == ("dead letter", "empty_text")
        else:
            assert same(ours, theirs), (archive["ids"][n], ours, theirs)

    # The page: the non-blank texts of an uploaded file, in order (it refuses texts over its 50,000 characters).
    shown = [(n, t) for n, t in zip(rows, texts, strict=True) if t.strip()]
    if not shown or max(len(t) for _, t in shown) > predictor.limits.max_text_chars:
        return
    upload = os.path.join(work, "upload.parquet")
    pq.write_table(pa.table({"text": [t for _, t in shown]}), upload)
    table = predictor.classify_many(None, upload)
    for (n, _), (_, row) in zip(shown, table.iterrows(), strict=True):
        theirs = expected[archive["ids"][n]][0]
        if theirs[0] == "dead letter":
            assert row["dead_letter"].startswith(theirs[1] + ":"), (row["dead_letter"], theirs)
        else:
            assert row["label"] == theirs[1] and abs(row["confidence"] - theirs[3]) <= 5e-5 + TOLERANCE  # shown to 4
