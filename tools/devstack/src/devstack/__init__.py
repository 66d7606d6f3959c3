"""Runs the whole platform on one machine with embedded defaults (`make run`, `make demo`)."""
