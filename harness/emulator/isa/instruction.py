"""`nki.isa.NkiInstruction`: the handle of a traced instruction, for scheduling edges."""

from __future__ import annotations


class NkiInstruction:
    """An opaque instruction handle; `depends_on(*producers)` adds scheduling edges (S-ISA: "this instruction
    runs after every listed producer completes"). The emulator executes every instruction in program order, so an
    edge is already honoured: it only checks that producers are NkiInstructions and returns self."""

    def __init__(self, handle=None):
        self.handle = handle

    def depends_on(self, *producers: "NkiInstruction") -> "NkiInstruction":
        for p in producers:
            if not isinstance(p, NkiInstruction):
                raise TypeError(f"producers: {p!r} is not an NkiInstruction")
        return self
