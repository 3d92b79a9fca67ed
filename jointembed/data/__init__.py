"""Data: readers for files users download, synthetic generators, and LightningDataModules."""
