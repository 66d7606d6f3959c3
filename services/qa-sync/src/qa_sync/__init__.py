"""qa-sync: OpenAI Batch output → S3 standard layout, verified, repaired, served for fine-tuning."""
