"""`python -m pipelines …` is the same as the `complaints` console script."""

from pipelines.app.cli import main

main()
