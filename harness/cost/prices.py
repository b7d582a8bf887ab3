"""Instances (chips of one target per instance) and their on-demand prices, each price with its source and date.

Prices are on-demand Linux $/hour in us-east-1, as the instances.vantage.sh dataset lists them in the snapshot that
tsaol/aws-gpu commits as `data/<family>_instances.js` ("Auto-generated from instances.vantage.sh data", last
updated 2026-01-21, commit 77fcd9f); the inf2 and trn1 figures equal the AWS price list values nkilab's hardware
notes carry. A price that no stored source gives is None with the reason — never a guess: override it with
`--price INSTANCE=USD` (CLI, repeatable) or `NKILAB_PRICES="inst=usd,inst=usd"`; the CLI wins over the variable.
Chips per instance: the Neuron SDK's instance tables (about-neuron/arch/neuron-hardware/*-arch.rst) and AWS's P5
pages (8 GPUs per p5 / p5en .48xlarge).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

PRICES_ENV = "NKILAB_PRICES"
VANTAGE = "instances.vantage.sh on-demand us-east-1 Linux, via tsaol/aws-gpu data/{}_instances.js (2026-01-21)"


@dataclass(frozen=True)
class Instance:
    """One instance type: `chips` chips of `target`."""

    name: str
    target: str
    chips: int


@dataclass(frozen=True)
class Price:
    """$/hour of an instance: `usd_per_hour` with its `source` and `date`, or None with the `reason`."""

    usd_per_hour: float | None
    source: str | None
    date: str | None
    reason: str | None = None


INSTANCES: dict[str, Instance] = {i.name: i for i in (
    Instance("inf2.xlarge", "inf2", 1), Instance("inf2.8xlarge", "inf2", 1), Instance("inf2.24xlarge", "inf2", 6),
    Instance("inf2.48xlarge", "inf2", 12), Instance("trn1.2xlarge", "trn1", 1), Instance("trn1.32xlarge", "trn1", 16),
    Instance("trn2.48xlarge", "trn2", 16), Instance("p5.48xlarge", "h100", 8), Instance("p5en.48xlarge", "h200", 8),
)}

_NO_TRN2 = ("no stored source lists it: the vantage.sh snapshot (2026-01-21) has no trn2.48xlarge price and the "
            "Neuron docs give none; look it up with `aws pricing get-products` and pass --price trn2.48xlarge=USD")
PRICES: dict[str, Price] = {
    "inf2.xlarge": Price(0.7582, VANTAGE.format("inf2"), "2026-01-21"),
    "inf2.8xlarge": Price(1.96786, VANTAGE.format("inf2"), "2026-01-21"),
    "inf2.24xlarge": Price(6.49063, VANTAGE.format("inf2"), "2026-01-21"),
    "inf2.48xlarge": Price(12.98127, VANTAGE.format("inf2"), "2026-01-21"),
    "trn1.2xlarge": Price(1.34375, VANTAGE.format("trn1"), "2026-01-21"),
    "trn1.32xlarge": Price(21.50, VANTAGE.format("trn1"), "2026-01-21"),
    "trn2.48xlarge": Price(None, None, None, _NO_TRN2),
    # after AWS's mid-2025 P5 price cut; the pre-cut $98.32/h is stale
    "p5.48xlarge": Price(55.04, VANTAGE.format("p5"), "2026-01-21"),
    # matches dstackai/dstack PR #4110 (2026-08-06): $63.296/h
    "p5en.48xlarge": Price(63.296, VANTAGE.format("p5en"), "2026-01-21"),
}


def parse_overrides(items) -> dict[str, float]:
    """{instance: $/h} from "INSTANCE=USD" strings (ValueError naming the item, the rule and the value)."""
    out = {}
    for item in items:
        name, sep, usd = str(item).partition("=")
        name = name.strip()
        if not sep or name not in INSTANCES:
            raise ValueError(f"price: expected INSTANCE=USD with INSTANCE one of {', '.join(INSTANCES)}, got {item!r}")
        try:
            value = float(usd)
        except ValueError:
            raise ValueError(f"price: {name}'s USD must be a number, got {usd!r}") from None
        if not value > 0:
            raise ValueError(f"price: {name}'s USD must be > 0, got {value!r}")
        out[name] = value
    return out


def env_overrides() -> dict[str, float]:
    """$NKILAB_PRICES ("inst=usd,inst=usd") as {instance: $/h}; {} when unset."""
    text = os.environ.get(PRICES_ENV, "")
    try:
        return parse_overrides(s for s in text.split(",") if s.strip())
    except ValueError as exc:
        raise ValueError(f"{PRICES_ENV}: {exc}") from None


def price_of(instance: str, overrides: dict[str, float] | None = None) -> Price:
    """The price of `instance`: an override (CLI over $NKILAB_PRICES) with its origin, else the table's entry."""
    if instance not in INSTANCES:
        raise ValueError(f"instance: unknown {instance!r}; choose one of {', '.join(INSTANCES)}")
    if overrides and instance in overrides:
        return Price(overrides[instance], "user override (--price)", None)
    env = env_overrides()
    if instance in env:
        return Price(env[instance], f"user override (${PRICES_ENV})", None)
    return PRICES[instance]
