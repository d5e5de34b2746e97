"""Links between memories: the only writer of links, traversal, inferred links (waypoints) and link
suggestions."""
