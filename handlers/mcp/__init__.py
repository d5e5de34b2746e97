"""The Model Context Protocol without the transport: JSON-RPC messages, the protocol revisions
Mnemo speaks, the methods of both eras and the tool registry.

HTTP (Streamable HTTP: headers, status codes, Origin, auth) lives in handlers/routes/mcp.py.
"""
