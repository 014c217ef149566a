"""The LatentSync 1.5/1.6 inference pipeline in our own torch code."""
