"""Output: drawing images from a trained generator, sample grids, the submission zip and its
validator, and the upload to Kaggle."""
