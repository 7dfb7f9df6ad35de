"""clipreid-edge edge package (see README: planned work)."""
