"""The registry page's screenshot of a registered version in MLflow's own UI:
`python -m tests.mlflow_screenshot OUT_DIR`.

A real `mlflow server` (its own tool environment, loopback) gets a small linear model on
generated complaints registered the way `train --register` registers one (an MLflow
Model with its signature, the run's metrics, dataset input and source commit); headless
Chromium photographs the version's page and the run's page. Run by hand when what a
registration logs changes.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile

from model.architecture import ArchitectureConfig
from model.data import LabelledData
from model.sample import generate
from model.train import TrainConfig, train
from pipelines.app.registered import register_trained
from tests.registries import MlflowServer, client
from tests.screenshots import photograph


def main(out_dir: str) -> None:
    work = tempfile.mkdtemp(prefix="mlflow-shot-")
    frame = generate(3000, seed=1)
    data = LabelledData(frame["text"].to_numpy(object), frame["category"].to_numpy(object), 0, [])
    model_dir = os.path.join(work, "candidates", "2026-12-06")
    train(data, model_dir, ArchitectureConfig(), dataclasses.replace(TrainConfig(), architecture="linear", verbose=0))
    os.makedirs(os.path.join(work, "server"))
    server = MlflowServer(os.path.join(work, "server")).start()
    try:
        print(register_trained(model_dir, "complaints", "champion", server.uri, {"data": "generated complaints"}))
        run_id = client(server.uri).get_model_version("complaints", "1").run_id
        experiment = client(server.uri).get_run(run_id).info.experiment_id
        photograph(server.uri, [("/#/models/complaints/versions/1", "mlflow-version.png"),
                                (f"/#/experiments/{experiment}/runs/{run_id}", "mlflow-run.png")], out_dir, 8)
    finally:
        server.stop()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/images")
