"""Pure functions: no database, no server.

One file per module under test, named after it (test_ssrf.py: core/webhooks/ssrf.py), with a
line in its docstring saying where the same feature is tested through the store or the handler.
AWS calls stay in the process (moto, botocore's Stubber). A test that needs neither a store nor
the handler belongs here, not in tests/core or tests/api."""
