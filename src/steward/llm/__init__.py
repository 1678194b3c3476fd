"""The LLM half of Steward: gateway, RAG, evals and guardrails."""
