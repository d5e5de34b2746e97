"""Who is calling: accounts, passwords, sessions, API keys, brains and their members, and the OAuth
authorization server."""
