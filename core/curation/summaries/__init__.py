"""User summaries and the brain digest: extractive by default, an LLM when configured."""
