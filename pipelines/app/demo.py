"""The README's first command: everything on built-in defaults, in one go.

Generates a labelled sample, trains a small model on it, writes an unlabelled
three-file archive (with a few malformed rows, to show the dead-letter output) and
labels it with the nightly job on the local runner.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pandas as pd

from model.architecture import ArchitectureConfig
from model.sample import generate
from model.train import TrainConfig
from pipelines.app.files import write_frame
from pipelines.app.predictor import Predictor
from pipelines.app.reports import train_and_report
from pipelines.nightly.job import run
from pipelines.nightly.summary import render
from pipelines.options import BatchConfig
from worker.transform import WorkerConfig

# Smaller than the reference so the demo trains in about a minute on two cores;
# `complaints train` defaults to the reference sizes.
DEMO_ARCHITECTURE = ArchitectureConfig(max_tokens=20_000, lstm_units=32)
DEMO_TRAINING = TrainConfig(epochs=4, batch_size=128, learning_rate=5e-3, verbose=2)


def _archive(rows: int) -> list[pd.DataFrame]:
    frame = generate(rows, seed=7, labelled=False)
    frame.loc[frame.index[:3], "text"] = [None, "", "?!... :)"]  # malformed rows go to dead letters
    return [part.reset_index(drop=True) for part in (frame[i::3] for i in range(3))]


def run_demo(workdir: str, rows: int, echo: Callable[[str], None] = print) -> dict:
    os.makedirs(workdir, exist_ok=True)
    training = os.path.join(workdir, "training.parquet")
    model_dir = os.path.join(workdir, "model")
    archive_dir = os.path.join(workdir, "archive")
    output = os.path.join(workdir, "labelled")

    echo(f"1/3 generating {rows:,} labelled sample complaints → {training}")
    echo("    (generated text: a template generator, not real complaints; the demo's model learns its patterns,"
         " and would label real complaints nearly at random. For a real model, train on your own labelled "
         "archive: complaints train --data YOUR.parquet --out model/)")
    write_frame(generate(rows, seed=1), training)
    echo(f"2/3 training a small BiLSTM → {model_dir}")
    report = train_and_report(training, "text", "category", model_dir, DEMO_ARCHITECTURE, DEMO_TRAINING, None)
    echo(report.splitlines()[-1])
    for v in Predictor(model_dir).predict(["Kargom 10 gündür teslim edilmedi, kurye adreste yok dedi!",
                                           "Buzdolabı soğutmuyor, servis gelmedi."]):
        echo(f"   {v.label} ({v.confidence:.2f})  ← {v.text}")

    parts = _archive(max(rows // 2, 100))
    for i, part in enumerate(parts):
        write_frame(part, os.path.join(archive_dir, f"complaints-{i}.parquet"))
    echo(f"3/3 labelling {sum(len(p) for p in parts):,} complaints in {archive_dir} → {output}")
    config = BatchConfig(input_pattern=os.path.join(archive_dir, "*.parquet"), output=output,
                         worker=WorkerConfig(model_dir=model_dir))
    summary = run(config)
    echo(render(summary))
    echo("The demo's model was trained on generated text: its labels show the pipeline working, not what a "
         "model trained on your own archive would say. Next: complaints train --data YOUR.parquet --out model/ "
         "(docs/training.md).")
    return summary
