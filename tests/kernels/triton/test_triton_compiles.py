"""Every Triton kernel compiles for an H100/H200 (sm_90, through ptxas) even on a machine without a GPU.

The interpreter never compiles, so a kernel could pass every CPU test and still fail on a GPU (a non-constexpr
global, a dtype the MMA rejects, a loop-carried type change). This test compiles one bfloat16 configuration per
kernel ahead of time with Triton's bundled LLVM and ptxas, in a subprocess with TRITON_INTERPRET=0.
"""

import os
import subprocess
import sys

import pytest

TARGET_CAPABILITY = 90  # Hopper (H100/H200): the GPU the prepared bench script is written for


def _compile_all() -> None:
    """Compile the kernels (run in the subprocess; raises on the first failure)."""
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    import nkilab.kernels.triton as backend
    from nkilab.kernels.triton.attention import _attention_fwd_kernel
    from nkilab.kernels.triton.kv_cache import _quantize_kv_kernel, _write_kv_cache_kernel
    from nkilab.kernels.triton.paged_attention import _merge_segments_kernel, _paged_attention_kernel
    from nkilab.kernels.triton.qmatmul import _qmatmul_kernel

    assert not backend.INTERPRET
    target = GPUTarget("cuda", TARGET_CAPABILITY, 32)

    def compile_one(fn, pointers: dict, floats: tuple, constexprs: dict, num_warps: int = 4) -> None:
        signature = {name: "constexpr" if name in constexprs else pointers.get(name, "fp32" if name in floats else
                                                                                 "i32")
                     for name in fn.arg_names}
        triton.compile(ASTSource(fn, signature, constexprs), target=target,
                       options={"num_warps": num_warps, "num_stages": 2})

    flags = dict(IS_CAUSAL=True, HAS_WINDOW=True, HAS_SOFTCAP=True, DOT_PRECISION="tf32")
    bf16 = {name: "*bf16" for name in ("q_ptr", "k_ptr", "v_ptr", "out_ptr", "key_cache_ptr", "value_cache_ptr",
                                       "key_ptr", "value_ptr")}
    compile_one(_attention_fwd_kernel, bf16, ("scale", "softcap"),
                dict(D=128, D_PAD=128, BLOCK_M=128, BLOCK_N=64, **flags), num_warps=8)
    paged = dict(bf16, block_tables_ptr="*i32", seq_lens_ptr="*i32", query_start_loc_ptr="*i32",
                 seg_max_ptr="*fp32", seg_sum_ptr="*fp32", seg_acc_ptr="*fp32", k_scale_ptr="*fp32",
                 v_scale_ptr="*fp32")
    for segments, quant, cache in ((1, 0, "*bf16"), (16, 0, "*bf16"), (1, 1, "*fp8e4nv"), (16, 2, "*i8")):
        compile_one(_paged_attention_kernel, dict(paged, key_cache_ptr=cache, value_cache_ptr=cache),
                    ("scale", "softcap"), dict(GROUP=4, D=128, D_PAD=128, BLOCK_M=16, BLOCK_Q=4, TILE=32,
                                               NUM_SEGMENTS=segments, num_seqs=1, QUANT=quant, **flags))
    compile_one(_merge_segments_kernel, paged, (), dict(D=128, D_PAD=128, NUM_SEGMENTS=16))
    compile_one(_write_kv_cache_kernel, dict(bf16, slot_ptr="*i64"), (), dict(BLOCK=1024))
    for cache, is_int8 in (("*fp8e4nv", False), ("*i8", True)):
        compile_one(_quantize_kv_kernel, dict(x_ptr="*bf16", cache_ptr=cache, inv_ptr="*fp32", scale_cache_ptr="*fp32",
                                              slot_ptr="*i64"), ("qmax", "inv_qmax", "tiny"),
                    dict(D_PAD=128, IS_INT8=is_int8))
    quant = dict(x_scale_ptr="*fp32", w_scale_ptr="*fp32", w_ptr="*u8", w_zero_ptr="*u8")
    for weight, per_group, zeros in ((0, False, False), (1, True, True), (2, True, False)):
        compile_one(_qmatmul_kernel, dict(quant, x_ptr="*bf16", out_ptr="*bf16", w_ptr="*i8" if weight == 0 else "*u8"),
                    (), dict(WEIGHT=weight, SIGNED=not zeros, HAS_ZEROS=zeros, PER_GROUP=per_group, X_FP8=False,
                             FP8_MMA=False, COMPUTE=tl.bfloat16, DOT_PRECISION="tf32", BLOCK_M=16, BLOCK_N=64,
                             BLOCK_K=128))
    for fp8_mma in (True, False):
        compile_one(_qmatmul_kernel, dict(quant, x_ptr="*u8", out_ptr="*bf16" if fp8_mma else "*fp32"), (),
                    dict(WEIGHT=2, SIGNED=True, HAS_ZEROS=False, PER_GROUP=False, X_FP8=True, FP8_MMA=fp8_mma,
                         COMPUTE=tl.float32, DOT_PRECISION="ieee", BLOCK_M=64, BLOCK_N=64, BLOCK_K=128))


def test_kernels_compile_for_sm90():
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_DEFAULT_FP_FUSION="1")
    done = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=600)
    if done.returncode == 3:
        pytest.skip(done.stdout.strip())
    assert done.returncode == 0, done.stderr[-4000:]


if __name__ == "__main__":
    try:
        from triton.backends.nvidia.compiler import CUDABackend  # noqa: F401
    except ImportError as e:
        print(f"Triton's NVIDIA backend is not installed: {e}")
        sys.exit(3)
    _compile_all()
