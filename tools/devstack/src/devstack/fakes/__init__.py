"""Fake servers shared by the tests and `make bench`: each a real HTTP server standing for one
outside system (the LLM, the backend's callback endpoint, ...) with controls for faults."""
