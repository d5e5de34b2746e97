"""Use cases that span packages: the maintenance runs and erasing an end user."""
