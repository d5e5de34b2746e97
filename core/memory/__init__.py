"""Memories: the only writer of memories, their tags, index rows and end users; brain policy,
source trust and the write gate."""
