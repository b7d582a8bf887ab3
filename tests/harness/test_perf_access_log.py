"""The scheduler's access log: its merged entries give exactly the ready times of keeping every access, and it
stays small on the fill-then-read loops that made the scheduler quadratic."""

from hypothesis import given
from hypothesis import strategies as st

from nkilab.harness.perf.access_log import AccessLog

ENGINES = ("tensor", "vector", "scalar", "gpsimd", "dma")
WAIT = {"tensor": 1.5e-8, "vector": 2.5e-8, "scalar": 3e-8, "gpsimd": 4e-8, "dma": 0.0}


class ListLog:
    """The specification: every access in a list, scanned in full; a write drops the entries its footprint covers
    (and nothing is merged)."""

    def __init__(self):
        self.reads, self.writes = [], []

    def ready(self, p0, p1, s0, s1, engine, is_write, wait):
        scanned = self.writes + self.reads if is_write else self.writes
        return max([same if eng == engine else other + (0.0 if eng == "dma" else wait)
                    for q0, q1, t0, t1, eng, same, other in scanned
                    if q0 < p1 and p0 < q1 and t0 < s1 and s0 < t1], default=0.0)

    def add(self, p0, p1, s0, s1, engine, is_write, same, other):
        entry = (p0, p1, s0, s1, engine, same, other)
        if not is_write:
            self.reads.append(entry)
            return
        def kept(entries):
            return [e for e in entries if not (e[0] >= p0 and e[1] <= p1 and e[2] >= s0 and e[3] <= s1)]

        self.writes, self.reads = kept(self.writes) + [entry], kept(self.reads)


def _ranges(stop):
    return st.integers(0, stop - 1).flatmap(lambda start: st.tuples(st.just(start), st.integers(start + 1, stop)))


# few distinct footprints, so that equal footprints, covering writes and partial overlaps all occur
ACCESS = st.tuples(_ranges(4), _ranges(4), st.sampled_from(ENGINES), st.booleans(),
                   st.floats(0.0, 1e-5, allow_nan=False), st.floats(0.0, 1e-5, allow_nan=False))


@given(st.lists(ACCESS, min_size=1, max_size=60))
def test_every_ready_time_equals_the_full_scan_of_every_earlier_access(accesses):
    log, spec = AccessLog(), ListLog()
    for (p0, p1), (s0, s1), engine, is_write, same, other in accesses:
        for probe_write in (False, True):
            got = log.ready(p0, p1, s0, s1, engine, probe_write, WAIT[engine])
            assert got == spec.ready(p0, p1, s0, s1, engine, probe_write, WAIT[engine])  # bit for bit
        log.add(p0, p1, s0, s1, engine, is_write, same, other)
        spec.add(p0, p1, s0, s1, engine, is_write, same, other)


def test_repeated_reads_of_a_footprint_are_one_entry_with_the_latest_times():
    log = AccessLog()
    for t in (3e-6, 5e-6, 4e-6):
        log.add(0, 128, 0, 64, "vector", False, t, t)
    log.add(0, 128, 0, 64, "scalar", False, 1e-6, 1e-6)
    assert log.reads == {(0, 128, 0, 64, "vector"): (5e-6, 5e-6), (0, 128, 0, 64, "scalar"): (1e-6, 1e-6)}
    assert log.ready(0, 128, 32, 40, "vector", True, WAIT["vector"]) == 5e-6
    assert log.ready(0, 128, 32, 40, "tensor", True, WAIT["tensor"]) == 5e-6 + WAIT["tensor"]
    assert log.ready(0, 128, 32, 40, "tensor", False, WAIT["tensor"]) == 0.0  # a read waits for writes only


def test_a_tile_filled_in_pieces_then_read_whole_keeps_a_bounded_log():
    """Four transposes write 8-byte slices of a PSUM tile, a copy reads all 32 bytes, 500 times: no single write
    covers the read, so without merging every write would rescan one read per earlier iteration."""
    log = AccessLog()
    t = 0.0
    for _ in range(500):
        for k in range(4):
            t = max(t, log.ready(0, 128, 8 * k, 8 * k + 8, "tensor", True, WAIT["tensor"])) + 1e-7
            log.add(0, 128, 8 * k, 8 * k + 8, "tensor", True, t, t + 1e-8)
        t = max(t, log.ready(0, 128, 0, 32, "vector", False, WAIT["vector"])) + 1e-7
        log.add(0, 128, 0, 32, "vector", False, t, t)
    assert len(log.writes) == 4 and len(log.reads) == 1
    assert log.reads[(0, 128, 0, 32, "vector")] == (t, t)
