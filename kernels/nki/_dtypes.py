"""Element sizes of the kernels' on-device dtypes, in bytes.

Kernel-side helper: plain Python on `nl` dtypes, evaluated while a kernel is specialized, so it is valid under the
real NKI compiler and the emulator alike.
"""

from ._shim import nl

_ONE_BYTE = (nl.int8, nl.float8_e4m3, nl.float8_e5m2, nl.float8_e4m3fn)  # 1-byte formats (int8 / fp8 KV caches)


def itemsize(dtype) -> int:
    """Bytes of one element of `dtype`: 4 for float32, 1 for int8 and the fp8 formats, else 2 (bfloat16, float16)."""
    return 4 if dtype == nl.float32 else 1 if dtype in _ONE_BYTE else 2
