"""Feedback worker: SQS → LLM → result queue and signed callback."""
