"""clipreid-edge export package (see README: planned work)."""
