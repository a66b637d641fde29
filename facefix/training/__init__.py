"""Training support shared by every network plugin: degradations, datasets, the training engine."""
