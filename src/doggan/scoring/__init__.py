"""Scoring: feature backbones and their weights, FID and MiFID as Kaggle computed them, the
memorization check, and the evaluation of a set of images against the real statistics."""
