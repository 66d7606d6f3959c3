"""Ingest service: POST /ai/feedback → SQS FIFO."""
