"""Thin adapters: an event or request in, one core call, a response out. No SQL here."""
