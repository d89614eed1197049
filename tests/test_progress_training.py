"""Training says what it is doing: a line per phase, heartbeats in long ones, nothing with --quiet."""

from __future__ import annotations

import io
import time

import pytest
from click.testing import CliRunner

from model.progress import Phases
from model.sample import generate
from pipelines.app.cli import cli
from pipelines.app.files import write_frame

pytestmark = pytest.mark.slow  # whole jobs, services or trainings: left out of `pytest -m "not slow"`

PHASES = ("reading", "adapting the word and character vocabularies", "extracting TF-IDF features",
          "fitting the softmax layer (L-BFGS)", "out-of-fold fits for calibration",
          "scoring the linear model on the validation split", "calibrating", "evaluating on the test split",
          "computing the drift baseline", "exporting the model")


def _train(tmp_path, *extra):
    data = tmp_path / "d.parquet"
    write_frame(generate(600, seed=3), str(data))
    return CliRunner().invoke(cli, ["train", "--data", str(data), "--out", str(tmp_path / "m"), "--architecture",
                                    "linear", "--no-refit", "--max-tokens", "500", *extra])


def test_every_phase_of_a_training_run_is_announced_and_timed(tmp_path):
    result = _train(tmp_path)
    assert result.exit_code == 0, result.output
    for phase in PHASES:
        assert f"[train] {phase}" in result.output, phase
        assert f"[train] {phase}: done in " in result.output, phase
    assert result.output.index("[train] reading") < result.output.index("[train] exporting the model")


def test_quiet_prints_only_the_report(tmp_path):
    result = _train(tmp_path, "--quiet")
    assert result.exit_code == 0, result.output
    assert "[train]" not in result.output
    assert "written to" in result.output


def test_a_long_phase_shows_signs_of_life():
    out = io.StringIO()
    phases = Phases(stream=out, heartbeat_secs=0.05)
    with phases.phase("solving"):
        deadline = time.monotonic() + 10
        while out.getvalue().count("still solving") < 2:
            assert time.monotonic() < deadline, out.getvalue()
            time.sleep(0.01)
    lines = out.getvalue().splitlines()
    assert lines[0] == "[train] solving…" and lines[-1].startswith("[train] solving: done in ")
    assert phases.timings["solving"] > 0


def test_the_bilstm_says_it_vectorises_once_and_times_each_epoch(tmp_path):
    data = tmp_path / "d.parquet"
    write_frame(generate(400, seed=4), str(data))
    result = CliRunner().invoke(cli, ["train", "--data", str(data), "--out", str(tmp_path / "m"), "--epochs", "2",
                                      "--max-tokens", "500", "--lstm-units", "4", "--dense-units", "4",
                                      "--embedding-dim", "4", "--patience", "5"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("[train] vectorising the texts once (") for line in lines)
    for epoch in (1, 2):  # each on a line of its own, after Keras' bar
        assert any(line.startswith(f"[train] epoch {epoch}: done in ") for line in lines), epoch
    assert "val_loss" in result.output.split("[train] epoch 1: done in ")[1].splitlines()[0]
    assert any(line.startswith("[train] refit epoch 1: done in ") for line in lines)
