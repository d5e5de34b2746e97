"""The HTTP and Lambda contract: requests through the real handler, events/*.json."""
