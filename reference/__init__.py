"""nkilab.reference: float64 NumPy reference implementations and the quantization formats."""
