"""Server-rendered HTML pages (hand-written, no scripts, no external assets)."""
