"""Importers from other memory systems (mem0, OpenMemory, MemoryVault): one module per source
turns its files into Mnemo records (records.py); pipeline.py writes them into a brain."""
