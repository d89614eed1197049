"""The terminal progress of a local run: rows read, share done and rows/s."""

from pipelines.nightly.progress import ReportProgress, _Progress


def test_progress_lines(capsys):
    _Progress.count = 0
    step = ReportProgress(total_rows=4, every_seconds=0.0)
    outputs = [list(step.process(i)) for i in range(4)]
    assert outputs == [[0], [1], [2], [3]]  # a pass-through
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("  4 / 4 rows read (100%), ") and lines[-1].endswith(" rows/s")


def test_progress_is_throttled(capsys):
    _Progress.count = 0
    step = ReportProgress(total_rows=None, every_seconds=3600)
    for i in range(100):
        list(step.process(i))
    assert capsys.readouterr().err == ""
