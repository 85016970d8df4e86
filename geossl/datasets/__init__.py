"""One file per data source; the registry is the only constructor."""
