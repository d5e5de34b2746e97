"""Mnemo core: the memory domain. Knows nothing of HTTP, Starlette or Lambda."""

__version__ = "0.1.0"
