"""Edge runtime (issue 7, not built yet): cameras -> detection -> tracking -> ReID -> identities."""
