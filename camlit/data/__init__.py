"""Photos on disk to training batches: scanning, checking, manipulating, cropping, caching, preparing."""
