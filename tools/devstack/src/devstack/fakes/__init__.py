"""Stand-ins for what lies outside the platform, as real HTTP servers: the LLM (`llm`, a vLLM-like
batching GPU with a mode for exact latencies and injected faults), the backend's callback
receiver, the OpenAI Batch API and an OTLP collector. `make run` uses them for its local stack
(the LLM only as `llm="fake"`: by default it runs vLLM on CPU); the tests and `make bench` use
them where they need controlled latency, capacity or faults."""
