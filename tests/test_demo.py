"""The README's demo command, on fewer rows."""

import pytest
from click.testing import CliRunner

from pipelines.app.cli import cli

pytestmark = pytest.mark.slow  # whole jobs, services or trainings: left out of `pytest -m "not slow"`


def test_demo_runs_end_to_end(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--workdir", str(tmp_path), "--rows", "600"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "rows in               300" in result.output
    assert "accounted for  yes" in result.output
    assert "empty_text 2, missing_text 1" in result.output
    assert (tmp_path / "labelled" / "_SUCCESS").exists()
    assert (tmp_path / "model" / "report" / "confusion_matrix.png").exists()
