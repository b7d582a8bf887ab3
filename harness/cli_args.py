"""Argument types every `nkilab` subcommand shares (the main parser in `cli.py` and the subcommand packages
`sweep`, `tune`): each raises `argparse.ArgumentTypeError` naming the rule and the valid choices."""

from __future__ import annotations

import argparse

from nkilab.harness.chips import NEURON_TARGETS, TARGETS, get_target

LNC_CHOICES = (1, 2)  # logical NeuronCore degrees (`--lnc` of run, bench and cost)
DEFAULT_LNC = ", ".join(f"{t} {get_target(t).lnc_default}" for t in NEURON_TARGETS)  # each target's default


def csv_of(choices, what: str):
    """An argparse type: a non-empty comma-separated list of `what` names from `choices`, as a tuple."""
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(s.strip() for s in text.split(",") if s.strip())
        bad = [s for s in items if s not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(bad) or repr(text)}; choose from "
                                             f"{', '.join(choices)}")
        return items

    return parse


def ints(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated positive ints, as a tuple."""
    try:
        values = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        values = ()
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints (e.g. 1,8,32), got {text!r}")
    return values


def positive_int(text: str) -> int:
    """An argparse type: one positive int."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return value


def power_override(text: str) -> tuple[str, float]:
    """An argparse type: TARGET=WATTS (WATTS > 0), a chip power assumption override."""
    target, _, watts = text.partition("=")
    try:
        value = float(watts)
    except ValueError:
        value = 0.0
    if target not in TARGETS or not value > 0:
        raise argparse.ArgumentTypeError(f"expected TARGET=WATTS with TARGET in {', '.join(NEURON_TARGETS)} and "
                                         f"WATTS > 0, got {text!r}")
    return target, value


def add_cache_arguments(p: argparse.ArgumentParser) -> None:
    """--cache DIR / --no-cache: the on-disk cache of modeled records (`harness.record_cache`)."""
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="cache folder of modeled records (default $NKILAB_CACHE or ~/.cache/nkilab)")
    p.add_argument("--no-cache", action="store_true", help="trace every modeled record, reading no cache")
