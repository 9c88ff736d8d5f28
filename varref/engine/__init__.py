"""Numba kernels of the refinement engine: pure functions over flat numpy arrays."""
