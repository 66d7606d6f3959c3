"""The batch job registry: the `BATCH_KEY` table, its migrations and the queries the sync needs."""
