"""Finding memories: full-text and vector evidence, filters, ranking, search and context packs."""
