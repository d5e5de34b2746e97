"""Core services and the store itself, on SQLite and PostgreSQL."""
