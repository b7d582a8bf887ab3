"""Energy meters on fake NVML / sysfs / RAPL sources, `measure_energy` windows, and the modeled figure."""

import pytest

from nkilab.harness.measure.energy import (
    EnergyResult,
    NeuronPowerMeter,
    NvmlEnergyMeter,
    RaplEnergyMeter,
    find_neuron_power_files,
    measure_energy,
    modeled_energy,
    parse_neuron_utilization,
)
from nkilab.harness.chips import get_target


class FakeNvml:
    """pynvml stand-in whose energy counter (mJ) advances by `step_mj` per read."""

    def __init__(self, step_mj=500.0, fail=False):
        self.mj = 1_000_000.0
        self.step_mj = step_mj
        self.fail = fail

    def nvmlInit(self):
        if self.fail:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("gpu", index)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        self.mj += self.step_mj
        return self.mj


class FakeClock:
    def __init__(self, step):
        self.t = 0.0
        self.step = step

    def __call__(self):
        self.t += self.step
        return self.t


def test_nvml_meter_reports_joules_from_counter_delta():
    meter = NvmlEnergyMeter(nvml=FakeNvml(step_mj=250.0))
    meter.begin()
    reading = meter.end()
    assert reading.kind == "measured" and reading.unit == "J"
    assert reading.value == pytest.approx(0.25)


def test_nvml_meter_without_library_returns_null_with_reason():
    meter = NvmlEnergyMeter(nvml=FakeNvml(fail=True))
    assert not meter.available
    result = measure_energy(lambda: None, meter)
    assert result.joules_per_call is None
    assert "NVML" in result.reason


def test_nvml_counter_that_does_not_advance_is_null():
    meter = NvmlEnergyMeter(nvml=FakeNvml(step_mj=0.0))
    meter.begin()
    reading = meter.end()
    assert reading.value is None and "did not advance" in reading.reason


def test_measure_energy_repeats_until_window_and_divides_by_calls():
    calls = []
    meter = NvmlEnergyMeter(nvml=FakeNvml(step_mj=1000.0))
    result = measure_energy(lambda: calls.append(1), meter, min_window_s=1.0, clock=FakeClock(0.25))
    # clock reads 0.25 at the start, then 0.5, 0.75, 1.0, 1.25 after each call: the 4th call closes the window
    assert result.calls == len(calls) == 4
    assert result.window_s == pytest.approx(1.0)
    assert result.joules_per_call == pytest.approx(1.0 / 4)  # one 1000-mJ step between begin and end
    assert result.kind == "measured" and result.method.startswith("nvml")
    with pytest.raises(ValueError, match="min_window_s"):
        measure_energy(lambda: None, meter, min_window_s=0)


def _neuron_tree(tmp_path, name, content):
    power = tmp_path / "neuron0" / "stats" / "power"
    power.mkdir(parents=True)
    (power / name).write_text(content)
    return power / name


def test_neuron_power_files_are_discovered_live_first(tmp_path):
    _neuron_tree(tmp_path, "utilization", "POWER_STATUS_VALID,1753920000,12.00,80.00,40.00\n")
    (tmp_path / "neuron0" / "stats" / "power" / "utilization_raw").write_text("4000 4200\n")
    (tmp_path / "neuron0" / "power").mkdir()
    (tmp_path / "neuron0" / "power" / "runtime_status").write_text("active\n")  # generic runtime PM: ignored
    files = find_neuron_power_files(str(tmp_path))
    assert [f.rsplit("/", 1)[1] for f in files] == ["utilization_raw", "utilization"]


@pytest.mark.parametrize("text, pct", [
    ("POWER_STATUS_VALID,1753920000,12.34,78.90,45.67", 45.67),
    ("POWER_STATUS_NO_DATA,1753920000,0,0,0", None),
    ("4000 4200", 42.0),          # basis points per die, max over dies
    ("37.5", 37.5),
    ("", None),
])
def test_parse_neuron_utilization(text, pct):
    assert parse_neuron_utilization(text) == pct


def test_neuron_meter_integrates_live_samples_to_percent_seconds(tmp_path):
    path = _neuron_tree(tmp_path, "utilization_raw", "5000\n")
    meter = NeuronPowerMeter(str(tmp_path), clock=FakeClock(1.0), poll_s=3600)  # poll thread never fires
    meter.begin()            # sample at t=1: 50 %
    path.write_text("7000\n")
    reading = meter.end()    # sample at t=2: 70 %
    assert reading.unit == "%*s" and reading.kind == "measured"
    assert reading.value == pytest.approx(60.0)  # trapezoid: (50 + 70) / 2 x 1 s
    assert reading.joules is None


def test_neuron_meter_joules_only_as_modeled_with_stated_max_power(tmp_path):
    _neuron_tree(tmp_path, "utilization_raw", "5000\n")
    meter = NeuronPowerMeter(str(tmp_path), max_power_w=400.0, clock=FakeClock(2.0), poll_s=3600)
    meter.begin()
    reading = meter.end()
    assert reading.kind == "modeled"
    assert reading.joules == pytest.approx(100.0 / 100 * 400.0)  # 50 % x 2 s = 100 %·s
    assert "400" in reading.assumption


def test_neuron_meter_refuses_short_windows_on_the_per_minute_file(tmp_path):
    _neuron_tree(tmp_path, "utilization", "POWER_STATUS_VALID,1,1,2,30.0\n")
    meter = NeuronPowerMeter(str(tmp_path), clock=FakeClock(1.0), poll_s=3600)
    result = measure_energy(lambda: None, meter, min_window_s=0.001)
    assert result.joules_per_call is None and "per-minute" in result.reason


def test_neuron_meter_without_device_is_null(tmp_path):
    result = measure_energy(lambda: None, NeuronPowerMeter(str(tmp_path)))
    assert result.joules_per_call is None and "no Neuron" in result.reason


def _rapl_tree(tmp_path, energy, max_range):
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir(exist_ok=True)
    (zone / "energy_uj").write_text(f"{energy}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_range}\n")
    return zone


def test_rapl_meter_handles_wrap_around(tmp_path):
    zone = _rapl_tree(tmp_path, 999_000_000, 999_999_999)
    meter = RaplEnergyMeter(str(tmp_path))
    meter.begin()
    (zone / "energy_uj").write_text("1000000\n")  # wrapped: 999e6 -> 1e9 (= 0) -> 1e6
    reading = meter.end()
    assert reading.value == pytest.approx(2.0)  # (1e9 - 999e6 + 1e6) uJ
    assert reading.kind == "measured"


def test_rapl_unreadable_or_missing_is_null(tmp_path):
    assert not RaplEnergyMeter(str(tmp_path)).available
    zone = _rapl_tree(tmp_path, 5, 10)
    (zone / "energy_uj").write_text("not-a-number\n")
    meter = RaplEnergyMeter(str(tmp_path))
    result = measure_energy(lambda: None, meter)
    assert result.joules_per_call is None and "RAPL" in result.reason


def test_modeled_energy_states_its_assumptions():
    trn2 = get_target("trn2")
    e = modeled_energy(1e-3, "trn2", utilization=1.0, lnc=2, tokens=8)
    assert e.kind == "modeled"
    assert e.joules_per_call == pytest.approx(trn2.power_w * 2 / 8 * 1e-3)
    assert e.joules_per_token == pytest.approx(e.joules_per_call / 8)
    assert "assumed" in e.assumption and "static" in e.assumption
    idle = modeled_energy(1e-3, "trn2", utilization=0.0, lnc=2)
    assert idle.joules_per_call == pytest.approx(e.joules_per_call * trn2.idle_share)
    override = modeled_energy(1e-3, "h100", power_w=350.0, idle_share=0.0, utilization=0.5)
    assert override.joules_per_call == pytest.approx(175.0 * 1e-3)
    assert "override" in override.assumption
    with pytest.raises(ValueError, match="power_w"):
        modeled_energy(1e-3, "h100", power_w=-1.0)


def test_energy_result_per_token_keeps_null():
    assert EnergyResult(None, "measured", "m", "b").per_token(4).joules_per_token is None
