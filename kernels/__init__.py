"""nkilab.kernels: the public kernel API."""
