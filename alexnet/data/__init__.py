"""Data: sources (ILSVRC-2012 archives, ImageFolder, the embedded synthetic set),
prepare-once caching (§2), augmentation (§4.1) and loaders."""
