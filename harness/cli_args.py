"""Argument types and the console every `nkilab` subcommand shares (the main CLI and the subcommand packages)."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from nkilab.harness.chips import ALL_TARGETS, TARGETS


def csv_of(choices):
    """An argparse type: a comma-separated list of names from `choices`, as a tuple."""
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(s.strip() for s in text.split(",") if s.strip())
        bad = [s for s in items if s not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(bad)}; choose from {', '.join(choices)}")
        return items

    return parse


def power_override(text: str) -> tuple[str, float]:
    """An argparse type: TARGET=WATTS, a chip power assumption override."""
    target, _, watts = text.partition("=")
    if target not in TARGETS or not watts:
        raise argparse.ArgumentTypeError(f"expected TARGET=WATTS with TARGET in {', '.join(ALL_TARGETS)}, got {text!r}")
    return target, float(watts)


def console() -> Console:
    """A rich console; 160 columns when stdout is not a terminal, so piped tables stay readable."""
    return Console() if sys.stdout.isatty() else Console(width=160)


def add_cache_arguments(p: argparse.ArgumentParser) -> None:
    """--cache DIR / --no-cache: the on-disk cache of modeled records (`harness.record_cache`)."""
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="cache folder of modeled records (default $NKILAB_CACHE or ~/.cache/nkilab)")
    p.add_argument("--no-cache", action="store_true", help="trace every modeled record, reading no cache")
