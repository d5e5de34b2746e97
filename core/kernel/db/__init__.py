"""The store: engine, declared schema, migrations and transactions."""
