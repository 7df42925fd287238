"""Datasets on disk → decoded tensor cache → nested seeded subsets → tensor augmentation."""
