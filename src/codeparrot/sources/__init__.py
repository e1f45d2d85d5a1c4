"""Sources of raw Python files; each writes raw shards (see codeparrot.raw)."""
