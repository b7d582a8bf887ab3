"""Op families: one module per op, each declaring `OP = Op(...)` (see `_op.py`); discovered by
`nkilab.kernels._registry`. How to add a family: README "How to add a kernel family"."""
