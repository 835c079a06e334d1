"""Training: the input pipeline and its augmentation policy, DiffAugment, the losses, the GAN's state,
the compiled distributed step, the per-epoch report and the loop that runs them under a strategy."""
