"""Distributed training of SSA-CycleGAN (DESIGN.md section 5)."""
