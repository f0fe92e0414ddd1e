"""Training StyleGAN-V: datasets and preparation, augmentation, loss, the training loop, metrics, CLI.

Imports stay light here (torch + numpy); submodules are imported where used.
"""
