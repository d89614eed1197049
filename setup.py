"""Installs the complaint classifier; Dataflow stages this same file with --setup_file."""

from setuptools import find_packages, setup

setup(
    name="complaints",
    version="0.1.0",
    description="Batch/stream complaint classification: BiLSTM topic model served by Apache Beam",
    python_requires=">=3.11,<3.13",
    packages=find_packages(include=["model", "model.*", "worker", "worker.*", "pipelines", "pipelines.*"]),
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "keras>=3.11.3,<4",  # safe_mode bypasses fixed by 3.11 (CVE-2025-1550 in 3.9, CVE-2025-8747 in 3.11)
        "apache-beam[gcp]>=2.60,<3",
        "pyarrow>=17",  # 14.0.0 reads Parquet unsafely (CVE-2023-47248); string_view columns need 16+
        "pandas>=2.0",
        "numpy>=1.26",
        "click>=8.1",
        "matplotlib>=3.8",
        "scipy>=1.10",
        "prometheus-client>=0.20,<1",  # the live job's optional /metrics endpoint
    ],
    extras_require={
        "ui": ["gradio>=6,<7"],
        "dev": ["pytest>=8", "ruff>=0.6", "psutil>=5.9", "gradio>=6,<7", "selenium>=4.20", "hypothesis>=6.100",
                "scikit-learn>=1.4"],  # scikit-learn: the tests' reference definitions, the quality baselines
    },
    entry_points={"console_scripts": ["complaints=pipelines.app.cli:main"]},
)
