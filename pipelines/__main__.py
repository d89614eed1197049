"""`python -m pipelines …` is the same as the `complaints` console script."""

from pipelines.cli import main

main()
