"""Data: every source (the embedded sample, Kaggle, Stanford Dogs, folders, Keras datasets) fetched and
normalised into the competition's layout, and the readers of its archives, annotations and photos."""
