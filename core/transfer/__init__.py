"""Moving a brain in and out: the JSON Lines export format, export, import, snapshots."""
