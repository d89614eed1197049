"""The nightly job's room: a Parquet archive in, one whole labelled output committed, or a clear refusal.

- `job`: the run, step by step (pre-flight, hold, pipeline, books, monitors, commit);
- `reading`: which files are read, their footers, row groups as Arrow tables;
- `commit`: staging, the commit file by file and its rollback (what happens when a
  night's commit fails);
- `hold`: one writer per output, and the fence that keeps a run that lost it from committing;
- `summary`, `drift`, `progress`: the run's figures, its drift check and report, its progress line;
- `dask_runner`: the job on a Dask cluster.
"""
