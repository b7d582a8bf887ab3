"""Adapters that put nkilab's kernels under a runtime: `hf` (a Hugging Face transformers attention function and
quantized linear layers) and `vllm` (a vLLM-v1-style paged attention backend, usable without vLLM). Both call the
torch custom ops (`nkilab.kernels.torch_ops`), so a model using them compiles with torch.compile. Importing this
package imports neither transformers nor vLLM."""
