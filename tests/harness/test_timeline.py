"""Timelines: the modeled schedule as a Chrome trace-event JSON (what ui.perfetto.dev opens), checked against the
format's rules, and as a Gantt PNG."""

import json
import numbers

import pytest

from nkilab.harness.chips import get_target
from nkilab.harness.perf.schedule import schedule
from nkilab.harness.profile import model_problem
from nkilab.harness.timeline import DMA_TID, ENGINE_TRACKS, chrome_trace, spans, write_chrome_trace, write_gantt
from nkilab.harness.workloads import model_problems, select_problem

PHASES = {"X", "M"}  # the event types nkilab writes: complete events and metadata
METADATA = {"process_name": "name", "thread_name": "name", "process_sort_index": "sort_index",
            "thread_sort_index": "sort_index"}


def validate_trace_events(doc) -> list[str]:
    """Violations of the Chrome Trace Event Format (JSON object form) for complete and metadata events: a
    "traceEvents" list; every event a dict with str name, ph, int pid/tid; "X" events with numeric ts >= 0 and
    dur >= 0 (microseconds) and a dict of args; "M" events naming a known metadata kind with its argument;
    displayTimeUnit "ms" or "ns"; the whole document JSON-serializable."""
    errors = []
    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        return ["top level must be an object with a traceEvents list"]
    if doc.get("displayTimeUnit", "ms") not in ("ms", "ns"):
        errors.append("displayTimeUnit must be 'ms' or 'ns'")
    try:
        json.dumps(doc, allow_nan=False)
    except ValueError as exc:
        errors.append(f"not strict JSON: {exc}")
    for i, e in enumerate(doc["traceEvents"]):
        where = f"event {i}"
        if not isinstance(e, dict) or e.get("ph") not in PHASES:
            errors.append(f"{where}: ph must be one of {PHASES}")
            continue
        if not isinstance(e.get("name"), str) or not e["name"]:
            errors.append(f"{where}: name must be a non-empty string")
        for key in ("pid", "tid"):
            if not isinstance(e.get(key), int) or isinstance(e.get(key), bool):
                errors.append(f"{where}: {key} must be an int")
        if e["ph"] == "X":
            for key in ("ts", "dur"):
                if not isinstance(e.get(key), numbers.Real) or e[key] < 0:
                    errors.append(f"{where}: {key} must be a number >= 0 (microseconds)")
            if not isinstance(e.get("args", {}), dict):
                errors.append(f"{where}: args must be an object")
        else:
            arg = METADATA.get(e["name"])
            if arg is None or arg not in (e.get("args") or {}):
                errors.append(f"{where}: metadata {e['name']!r} needs args.{arg}")
    return errors


@pytest.fixture(scope="module")
def traced():
    problems = model_problems(phase="decode", grid="quick", ops=("qmatmul",))
    problem = select_problem(problems, "qkv-m8")
    trace, est, _ = model_problem(problem, "trn2", lnc=2)
    return problem, trace, est


def test_the_trace_is_valid_chrome_trace_event_json(traced, tmp_path):
    problem, trace, est = traced
    path = write_chrome_trace(trace, "trn2", str(tmp_path / "t.json"), title=problem.name)
    doc = json.loads(open(path).read())
    assert validate_trace_events(doc) == []
    assert validate_trace_events({"traceEvents": [{"ph": "X", "name": "a", "pid": 0, "tid": 1, "ts": -1}]})
    assert doc["otherData"]["lnc"] == 2 and "modeled" in doc["otherData"]["kind"]
    assert doc["otherData"]["makespan_us"] == pytest.approx(est.latency_s * 1e6)


def test_one_track_per_engine_and_dma_queue_per_core(traced):
    _, trace, _ = traced
    doc = chrome_trace(trace, "trn2")
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"}
    used = {(e["pid"], e["tid"]) for e in doc["traceEvents"] if e["ph"] == "X"}
    assert used == set(names)  # every track with work is named, no empty track
    for core in (0, 1):  # LNC=2: both NeuronCores, each with its own engines and DMA queues
        assert {"TensorE", "VectorE", "ScalarE"} <= {n for (pid, _), n in names.items() if pid == core}
        assert any(n.startswith("DMA queue ") for (pid, _), n in names.items() if pid == core)
    processes = {e["pid"]: e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "process_name"}
    assert sorted(processes) == [0, 1] and "NeuronCore 1" in processes[1]


def test_events_carry_instruction_names_and_operand_shapes(traced):
    _, trace, _ = traced
    events = [e for e in chrome_trace(trace, "trn2")["traceEvents"] if e["ph"] == "X"]
    by_index = {}
    for e in events:
        by_index.setdefault(e["args"]["index"], []).append(e)
    assert set(by_index) == set(range(len(trace)))  # every instruction is on the timeline
    for i, inst in enumerate(trace.instructions):
        for e in by_index[i]:
            assert e["name"] in (inst.opcode, inst.opcode + " descriptors") and e["cat"] == inst.engine
            assert e["args"]["operands"] == [f"{o.name}{'(w)' if o.is_write else ''}: {list(o.shape)} {o.dtype} "
                                             f"@{o.buffer}" for o in inst.operands]
    matmul = next(e for e in events if e["name"] == "nc_matmul")
    assert matmul["args"]["flops"] > 0 and "stationary" in " ".join(matmul["args"]["operands"])


def test_bars_follow_the_schedule_and_never_overlap_on_a_track(traced):
    _, trace, _ = traced
    timed = schedule(trace, get_target("trn2"))
    bars = spans(trace, timed)
    for b in bars:
        inst = trace.instructions[b.index]
        assert timed.start_s[b.index] <= b.start_s <= b.end_s <= timed.done_s[b.index] + 1e-15
        if inst.engine == "dma":  # packets on DMA queues, software-DGE descriptors on GpSimdE
            assert b.tid >= DMA_TID or b.track == "GpSimdE"
        else:
            assert b.track == ENGINE_TRACKS[inst.engine]
    tracks = {}
    for b in bars:
        tracks.setdefault((b.core, b.tid), []).append((b.start_s, b.end_s))
    for intervals in tracks.values():
        intervals.sort()
        assert all(a[1] <= b[0] + 1e-15 for a, b in zip(intervals, intervals[1:]))  # in-order engines and queues
    assert max(b.end_s for b in bars) <= timed.makespan_s + 1e-15


def test_gantt_png(traced, tmp_path):
    problem, trace, _ = traced
    path = write_gantt(trace, "trn2", str(tmp_path / "g.png"), title=problem.name)
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_software_dge_descriptors_show_on_gpsimd():
    """Paged attention's indirect gathers write their descriptors on GpSimdE: the timeline shows that work, and the
    busy time of its GpSimdE track is the model's."""
    problem = select_problem(model_problems(phase="decode", grid="quick", ops=("paged_attention",)),
                             "paged_attention/b1-ctx512-bs32")
    trace, est, _ = model_problem(problem, "trn2", lnc=1)
    bars = spans(trace, schedule(trace, get_target("trn2")))
    descriptors = [b for b in bars if b.track == "GpSimdE" and trace.instructions[b.index].engine == "dma"]
    assert descriptors
    gpsimd = sum(b.end_s - b.start_s for b in bars if b.track == "GpSimdE")
    assert gpsimd == pytest.approx(est.engine_busy_s["gpsimd"], rel=1e-9)
