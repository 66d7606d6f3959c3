"""The one home of test helpers (imported as `tests.support.<module>`; fixtures stay in the
conftest.py files, which nothing imports)."""
