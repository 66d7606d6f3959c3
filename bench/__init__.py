"""`make bench` (`python -m bench`): the pipeline's figures, each beside a same-run baseline."""
