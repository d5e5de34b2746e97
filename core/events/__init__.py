"""What a change leaves behind, written in the caller's transaction: the brain's changelog and each
memory's history."""
