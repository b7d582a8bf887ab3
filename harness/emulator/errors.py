"""Exception types of the emulator.

`NkiValidationError` is the emulator's `nki.isa.NkiValidationError` ("Raised when hardware constraints
are violated", S-ISA): every rule in `validate.py` raises it with the op, the operand, the limit and
the offending value, so a failure reads like a compiler diagnostic.
"""

from __future__ import annotations


class NkiValidationError(Exception):
    """A kernel broke a hardware or language rule of the selected target.

    Attributes:
        op: the nisa / nl call (or "ndarray", "getitem", … for tensor rules).
        operand: the argument that broke the rule ("dst", "stationary", "moving", "value", …).
        limit: the rule, stated as the limit it imposes ("partition dim <= 128").
        value: what the kernel passed.
        target: the target the rule was checked for ("trn2", …) or None.
    """

    def __init__(self, op: str, operand: str, limit: str, value, target: str | None = None):
        self.op, self.operand, self.limit, self.value, self.target = op, operand, limit, value, target
        where = f" on {target}" if target else ""
        super().__init__(f"{op}: {operand} violates '{limit}'{where} (got {value})")


class NkiTraceError(TypeError):
    """A kernel used a runtime value (a `VirtualRegister`) where a compile-time value is needed."""
