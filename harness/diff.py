"""`nkilab diff RUN_A RUN_B`: two run folders compared record by record — a kernel developer's before / after.

Records pair up by `record_key` (stage, kernel, backend, target, problem name, dtype: the LNC is compared, not
matched, so a run at LNC=1 diffs against one at LNC=2). For each pair the compared fields are the status, the
latency (modeled, measured or emulation-wall: the kind is compared too), MFU, MBU, bottleneck, J/token, LNC, and
for checks the max abs error and its bound. A numeric field counts as changed when it moved by more than `rtol`
relative to its before value; a record is a regression when its status got worse (ok -> failed / error) or its
latency grew by more than `rtol`. Emulation wall time (the CPU time of a correctness run, kind "emulation-wall")
varies from run to run and says nothing about the kernel's speed: it is never compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nkilab.harness.report.records import read_jsonl
from nkilab.harness.report.run_info import RESULTS

# field -> how to read it from a record
FIELDS = {
    "status": lambda r: r.get("status"),
    "kind": lambda r: (r.get("perf") or {}).get("kind"),
    "latency_s": lambda r: (r.get("perf") or {}).get("latency_s"),
    "mfu": lambda r: (r.get("perf") or {}).get("mfu"),
    "mbu": lambda r: (r.get("perf") or {}).get("mbu"),
    "bottleneck": lambda r: (r.get("perf") or {}).get("bottleneck"),
    "joules_per_token": lambda r: (r.get("energy") or {}).get("joules_per_token"),
    "lnc": lambda r: r.get("lnc") or (r.get("perf") or {}).get("lnc"),
    "max_abs_err": lambda r: (r.get("check") or {}).get("max_abs_err"),
    "bound": lambda r: (r.get("check") or {}).get("bound"),
}
WORSE = {"ok": 0, "unsupported": 0, "unavailable": 0, "failed": 1, "error": 1}


def record_key(r: dict) -> tuple:
    """(stage, kernel, backend, target, problem name, dtype): what pairs a record of one run with the other's."""
    p = r.get("problem") or {}
    return (r.get("stage"), r["kernel"], r["backend"], r["target"], p.get("name"), p.get("dtype"))


@dataclass
class Pair:
    """One record key in either run: `before` / `after` (None where that run lacks it) and the fields that
    changed, {field: (before value, after value)}."""

    key: tuple
    before: dict | None
    after: dict | None
    changed: dict = field(default_factory=dict)

    @property
    def state(self) -> str:
        """"added" | "removed" | "changed" | "same"."""
        if self.before is None:
            return "added"
        if self.after is None:
            return "removed"
        return "changed" if self.changed else "same"

    @property
    def status_worse(self) -> bool:
        """The status went from ok / unsupported / unavailable to failed / error."""
        a, b = self.changed.get("status", (None, None))
        return "status" in self.changed and WORSE.get(b, 1) > WORSE.get(a, 1)

    @property
    def regression(self) -> bool:
        """Status got worse, or latency grew beyond the tolerance the pair was built with."""
        a, b = self.changed.get("latency_s", (None, None))
        return self.status_worse or (a is not None and b is not None and b > a)


def _moved(a, b, rtol: float) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(b - a) > rtol * abs(a)
    return a != b


def compare(before: list[dict], after: list[dict], *, rtol: float = 0.01) -> list[Pair]:
    """Every record key of either list, in the order of `before` then the new ones of `after`.

    Raises:
        ValueError: rtol is negative, or a list holds two records with one key (not a run folder's records).
    """
    if not rtol >= 0:
        raise ValueError(f"rtol: must be >= 0, got {rtol!r}")
    a, b = _index(before, "before"), _index(after, "after")
    pairs = []
    for key in list(a) + [k for k in b if k not in a]:
        ra, rb = a.get(key), b.get(key)
        changed = {}
        if ra is not None and rb is not None:
            wall = FIELDS["kind"](ra) == FIELDS["kind"](rb) == "emulation-wall"
            for name, read in FIELDS.items():
                if wall and name == "latency_s":
                    continue
                va, vb = read(ra), read(rb)
                # a field one run does not record (an older schema, a record without figures) is not compared;
                # the status says why a figure went missing
                if (name == "status" or (va is not None and vb is not None)) and _moved(va, vb, rtol):
                    changed[name] = (va, vb)
        pairs.append(Pair(key, ra, rb, changed))
    return pairs


def _index(records: list[dict], which: str) -> dict:
    out = {}
    for r in records:
        key = record_key(r)
        if key in out:
            raise ValueError(f"{which}: two records share the key {key}")
        out[key] = r
    return out


def compare_folders(folder_a: str, folder_b: str, *, rtol: float = 0.01) -> list[Pair]:
    """`compare` of the results.jsonl of two run folders."""
    return compare(read_jsonl(f"{folder_a}/{RESULTS}"), read_jsonl(f"{folder_b}/{RESULTS}"), rtol=rtol)


def _value(name: str, v) -> str:
    if v is None:
        return "—"
    if name == "latency_s":
        return f"{v * 1e6:.4g} us"
    if name in ("mfu", "mbu"):
        return f"{v:.1%}"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _arrow(pair: Pair, name: str) -> str:
    """"before -> after" for a changed field (latency with its ratio), else the value the records hold."""
    if name in pair.changed:
        va, vb = pair.changed[name]
        text = f"{_value(name, va)} -> {_value(name, vb)}"
        if name == "latency_s" and va and vb:
            text += f" (x{vb / va:.3g})"
        return text
    rec = pair.after if pair.after is not None else pair.before
    if name == "latency_s" and FIELDS["kind"](rec) == "emulation-wall":
        return "—"  # CPU time of the emulator or interpreter, not compared
    return _value(name, FIELDS[name](rec))


DIFF_HEADER = ["state", "record", "status", "latency", "MFU", "MBU", "max abs err", "other changes"]
SHOWN = ("status", "latency_s", "mfu", "mbu", "max_abs_err")


def diff_rows(pairs: list[Pair], *, show_all: bool = False) -> list[list[str]]:
    """Table rows of `pairs` (unchanged ones only with show_all): the record as `<backend>/<target> <problem>`
    (as the reports name it: a modeled problem without its model, a check's smoke problem with its dtype), then each
    compared field, "before -> after" where it changed."""
    rows = []
    for pair in pairs:
        if pair.state == "same" and not show_all:
            continue
        stage, kernel, backend, target, name, dtype = pair.key
        problem = name or kernel
        record = f"{backend}/{target} " + (f"{problem} {dtype}" if stage == "check" else problem.split("/", 1)[-1])
        other = ", ".join(f"{k} {_value(k, a)} -> {_value(k, b)}" for k, (a, b) in pair.changed.items()
                          if k not in SHOWN)
        state = "failed now" if pair.status_worse else "slower" if pair.regression else pair.state
        rows.append([state, record, *(_arrow(pair, k) for k in SHOWN), other])
    return rows


def summary_line(pairs: list[Pair]) -> str:
    counts = {s: sum(p.state == s for p in pairs) for s in ("same", "changed", "added", "removed")}
    worse, slower = sum(p.status_worse for p in pairs), sum(p.regression and not p.status_worse for p in pairs)
    return (f"{len(pairs)} records: {counts['same']} unchanged, {counts['changed']} changed, {counts['added']} only "
            f"after, {counts['removed']} only before; {worse} failed or errored now, {slower} slower")
