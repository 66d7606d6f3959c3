"""Stand-ins for what lies outside the platform, as real HTTP servers: the LLM (`fake_llm`, and
`vllm_sim`, a vLLM-like batching GPU for capacity figures), the backend's callback receiver, the
OpenAI Batch API and an OTLP collector. `make run` uses them for its local stack; the tests and
`make bench` use them where they need controlled latency, capacity or faults."""
