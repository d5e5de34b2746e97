"""Keeping a brain true and tidy: conflicts, merges, aliases, consolidation, hygiene (decay,
retention, forget), summaries, erasure and the health report."""
