"""Cross-core synchronization points of an LNC=2 trace: which instructions of the two cores' streams meet.

The emulator records one instruction per participant of each synchronization point (`harness/emulator/isa/sync.py`,
`harness/emulator/collectives.py`), all carrying `attrs["sync"]`, the participant's arrival number on its channel:
  - `core_barrier` (channel: the barrier): "a synchronization point where all specified NeuronCores must reach before
    any can proceed ... each NeuronCore writes a semaphore to each other core (remote semaphore update) and then
    waits for the other cores' semaphores", on the engine it names: "The barrier will block execution on this
    engine, other engines will not be blocked" (nki/api/nki/isa/__init__.py, core_barrier);
  - `sendrecv` (channel: its `pipe_id`): the exchange of SBUF tiles "using the standard DMA engine with CoreBarrier
    synchronization" or GpSimd's internal DMA (the same page, sendrecv);
  - the `nki.collectives` ops (one channel): every rank of the group issues them in the same order.
The participants of one point share (channel, arrival number). `schedule.py` joins their cores there: each
participant arrives when its own inputs and engine allow; the point releases `cross_core_sync_s` (the remote
semaphore update, an assumption of `chips.py`) after the last arrival; a blocking participant holds its engine from
its arrival to the release, a transfer starts at the release.
"""

from __future__ import annotations

from collections import defaultdict

from nkilab.harness.emulator.trace import Instruction, Trace


def sync_key(inst: Instruction) -> tuple | None:
    """(channel, arrival number) of a synchronizing instruction, None for any other."""
    attrs = inst.attrs
    if "sync" not in attrs:
        return None
    if "ranks" in attrs:
        channel: tuple = ("collective",)
    elif inst.opcode == "sendrecv":
        channel = ("sendrecv", attrs.get("pipe_id"))
    else:
        channel = (inst.opcode,)
    return channel, attrs["sync"]


def sync_groups(trace: Trace) -> dict[int, tuple[int, ...]]:
    """{instruction index: the indices of every participant of its synchronization point, in trace order} for the
    synchronizing instructions of `trace`. A point whose participants all sit on one core (an LNC=1 trace) joins
    nothing and is left out."""
    points: dict[tuple, list[int]] = defaultdict(list)
    for inst in trace.instructions:
        key = sync_key(inst)
        if key is not None:
            points[key].append(inst.index)
    groups: dict[int, tuple[int, ...]] = {}
    for members in points.values():
        if len({trace.instructions[i].program_id for i in members}) > 1:
            for i in members:
                groups[i] = tuple(members)
    return groups
