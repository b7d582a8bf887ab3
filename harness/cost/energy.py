"""Modeled energy of one step of one replica, end to end (every call, its launches and the TP collectives).

Each launch on each of the replica's `tp` ranks draws the rank's power (`measure.energy.modeled_energy`: the chip's
full-load power attributed to the rank's `lnc` NeuronCores, chip power x lnc / cores, or the whole GPU; its static share always, the rest scaled by the
call's utilization) over its kernel time; launch overheads and collectives draw the static share only (the link's
own power is not modeled). J/token = the replica's joules per step / tokens per step. Every figure is modeled: no
meter exists here (NVML on a GPU and the Neuron sysfs power file are read by `nkilab run`'s measured pass).
"""

from __future__ import annotations

from nkilab.harness.chips import Target
from nkilab.harness.measure.energy import modeled_energy

METHOD = ("per launch: latency x the rank's assumed power (static + utilization-scaled dynamic); launch overheads "
          "and TP collectives at static power; x tp ranks")


def _joules(seconds: float, target: Target, utilization: float, lnc: int | None, power_w: float | None) -> float:
    return modeled_energy(seconds, target, utilization=utilization, lnc=lnc, power_w=power_w).joules_per_call


def step_joules(costs, collective_s: float, target: Target, tp: int, lnc: int | None, *,
                power_w: float | None = None) -> float:
    """Joules of one step of a `tp`-rank replica of `lnc`-core ranks (None on a GPU); `costs` = [(CallCost,
    launches per step)]."""
    per_rank = sum(count * (_joules(c.latency_s, target, c.utilization, lnc, power_w)
                            + _joules(c.launch_s, target, 0.0, lnc, power_w)) for c, count in costs)
    per_rank += _joules(collective_s, target, 0.0, lnc, power_w)
    return tp * per_rank


def assumption(target: Target, lnc: int | None, power_w: float | None = None) -> str:
    """The power assumption behind the figure: the chip's power source, a rank's full-load share, the static share."""
    tgt = target.with_power(power_w) if power_w is not None else target
    rank = f"a rank ({lnc} of {tgt.cores} NeuronCores)" if lnc else "a rank (the GPU)"
    return (f"{tgt.power_source}; {rank} draws {tgt.power(lnc=lnc):.3g} W at full load, {tgt.idle_share:.0%} of it "
            "always, the rest scaled by each call's utilization")
