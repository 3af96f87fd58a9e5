"""Distributed training of SSA-CycleGAN (docs/training.md)."""
