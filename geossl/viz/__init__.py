"""Pictures: every PNG geossl draws (``plots``)."""
