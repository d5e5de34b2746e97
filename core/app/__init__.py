"""Use cases that span packages: the maintenance runs."""
