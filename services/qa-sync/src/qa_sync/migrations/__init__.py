"""Alembic migrations of the registry; shipped inside the package and run by `migrate`."""
