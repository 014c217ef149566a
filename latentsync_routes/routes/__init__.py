"""Routes: one module per way of running LatentSync, and a registry."""
