"""Keeping a brain true and tidy: conflicts, merges, aliases, consolidation, hygiene (decay,
retention, forget) and summaries."""
