"""NumPy emulator of the NKI API (placeholder: filled by the emulator issue)."""
