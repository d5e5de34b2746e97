"""The kernel: ids, errors, the tenant scope, cursors, settings and the store."""
