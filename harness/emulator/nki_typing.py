"""`nki.typing` (NKI 0.3+): shape annotations for kernel tensor parameters, `nt.tensor[128, 512]` (S-MIG 0.2 -> 0.3:
"a new module for type-annotating kernel tensor parameters ... to declare expected tensor shapes"), plus the
legacy `mutable_tensor` spelling older kernels use. Annotations carry the declared shape; the emulator does not
enforce them (the docs do not say the compiler checks arguments against them)."""

from __future__ import annotations


class TensorType:
    """`tensor` / `tensor[shape...]`: an annotation holding the declared shape (None: any)."""

    def __init__(self, name: str, shape: tuple | None = None):
        self.name, self.shape = name, shape

    def __getitem__(self, shape) -> "TensorType":
        shape = shape if isinstance(shape, tuple) else (shape,)
        return TensorType(self.name, shape)

    def __repr__(self) -> str:
        return f"nki.typing.{self.name}" + (f"{list(self.shape)}" if self.shape is not None else "")

    def __eq__(self, other) -> bool:
        return isinstance(other, TensorType) and (self.name, self.shape) == (other.name, other.shape)

    def __hash__(self) -> int:
        return hash((self.name, self.shape))


tensor = TensorType("tensor")
mutable_tensor = TensorType("mutable_tensor")

__all__ = ["mutable_tensor", "tensor"]
