"""Real clients end to end: browser, MCP SDK, OAuth client, CLI, the template."""
