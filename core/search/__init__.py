"""Retrieval: the full-text index, vectors and their cache, fusion and ranking, context packs."""
