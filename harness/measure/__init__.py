"""Measured figures, on the device that exists: CUDA timing (`cuda`), Neuron host timing and whole-problem
measurements (`device`), energy meters and the modeled energy that says it is one (`energy`), and the GPU bench's
engine, Triton against each op's torch baselines (`bench`). Nothing here runs without its device; CPU wall time is
never reported as device speed."""
