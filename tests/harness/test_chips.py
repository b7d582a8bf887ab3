"""The hardware table: one row per target read by the emulator and the model alike, one `get_target` with the env
override, aliases and a Neuron requirement, and the published figures the rows must agree with."""

import pytest

from nkilab.harness import chips
from nkilab.harness.chips import ALL_TARGETS, NEURON_TARGETS, TARGET_ENV, TARGETS, NeuronTarget, get_target
from nkilab.harness.emulator import TARGETS as EMULATOR_TARGETS

MiB = 1024 * 1024


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(TARGET_ENV, raising=False)
    return monkeypatch


def test_default_env_override_and_aliases(no_env):
    assert get_target() is TARGETS["trn2"]
    no_env.setenv(TARGET_ENV, "trn1")
    assert get_target() is TARGETS["trn1"] and get_target(neuron=True) is TARGETS["trn1"]
    assert get_target("inf2") is TARGETS["inf2"]  # an explicit name wins over the variable
    for alias, name in (("gen2", "trn1"), ("gen3", "trn2"), ("gen4", "trn3"), ("TRN3", "trn3")):
        assert get_target(alias) is TARGETS[name]
    no_env.setenv(TARGET_ENV, "gen4")
    assert get_target() is TARGETS["trn3"]


def test_a_target_passes_through_and_is_checked(no_env):
    assert get_target(TARGETS["h100"]) is TARGETS["h100"]
    with pytest.raises(ValueError, match="target: 'h100' is a gpu target; .* inf2, trn1, trn2, trn3"):
        get_target(TARGETS["h100"], neuron=True)


def test_errors_name_the_argument_or_the_variable(no_env):
    with pytest.raises(ValueError, match=r"^target: 'tpu' is not a target; use one of inf2, .*, cpu \(aliases gen2"):
        get_target("tpu")
    with pytest.raises(ValueError, match="^target: 'cpu' is a cpu target"):
        get_target("cpu", neuron=True)
    with pytest.raises(TypeError, match="^target: expected a target name"):
        get_target(3)
    no_env.setenv(TARGET_ENV, "trn9")
    with pytest.raises(ValueError, match=f"^{TARGET_ENV}: 'trn9' is not a target"):
        get_target()
    no_env.setenv(TARGET_ENV, "h200")
    assert get_target() is TARGETS["h200"]  # a roofline target is a valid answer where no kernel runs
    with pytest.raises(ValueError, match=f"^{TARGET_ENV}: 'h200' is a gpu target"):
        get_target(neuron=True)


def test_the_emulator_reads_the_same_rows():
    assert tuple(EMULATOR_TARGETS) == NEURON_TARGETS == tuple(n for n in ALL_TARGETS if TARGETS[n].kind == "neuron")
    assert all(EMULATOR_TARGETS[n] is TARGETS[n] and isinstance(TARGETS[n], NeuronTarget) for n in NEURON_TARGETS)
    assert not any(isinstance(TARGETS[n], NeuronTarget) for n in ALL_TARGETS if n not in NEURON_TARGETS)


@pytest.mark.parametrize("name, gen, sbuf_mib", [("inf2", 2, 24), ("trn1", 2, 24), ("trn2", 3, 28), ("trn3", 4, 32)])
def test_on_chip_memories_match_the_architecture_guides(name, gen, sbuf_mib):
    tgt = TARGETS[name]
    assert tgt.gen == gen
    assert tgt.pmax * tgt.sbuf_bytes == sbuf_mib * MiB  # [A2]/[A3]/[A4]: 24 / 28 / 32 MiB per core
    assert tgt.pmax * tgt.psum_bytes == 2 * MiB and tgt.psum_banks * tgt.psum_bank_bytes == tgt.psum_bytes


def test_one_generation_one_core():
    """inf2 and trn1 are two chips around the same NeuronCore-v2: every per-core fact is shared."""
    chip_fields = {"name", "description", "power_w", "power_source"}
    inf2, trn1 = TARGETS["inf2"], TARGETS["trn1"]
    for field in NeuronTarget.__dataclass_fields__:
        if field not in chip_fields:
            assert getattr(inf2, field) == getattr(trn1, field), field
    assert inf2.power_w != trn1.power_w


def test_descriptions_and_features_follow_the_generation():
    assert TARGETS["trn1"].description == "AWS Trainium (NeuronCore-v2, 2 cores/chip)"
    assert TARGETS["trn2"].description == "AWS Trainium2 (NeuronCore-v3, 8 cores/chip, LNC=2)"
    assert [TARGETS[n].lnc_default for n in NEURON_TARGETS] == [1, 1, 2, 2]
    assert [TARGETS[n].lnc2 for n in NEURON_TARGETS] == [False, False, True, True]
    assert [TARGETS[n].fp8_e4m3_max for n in NEURON_TARGETS] == [240.0, 240.0, 240.0, 448.0]
    assert TARGETS["trn3"].matmul_dst_dtypes == ("float32", "bfloat16")
    # the DMA bandwidth guide's achievable rate per engine (17 / 23 / 33 B/ns), and the hardware DGE from v3
    assert [TARGETS[n].dma_engine_bw for n in NEURON_TARGETS] == [17e9, 17e9, 23e9, 33e9]
    assert [TARGETS[n].hwdge_instances for n in NEURON_TARGETS] == [0, 0, 2, 2]


@pytest.mark.parametrize("name", ALL_TARGETS)
def test_tables_are_consistent(name):
    tgt = get_target(name)
    assert tgt.peak("bfloat16") > 0 and tgt.bandwidth() > 0 and tgt.power() > 0
    assert tgt.power_source.startswith(("published", "assumed", "derived"))
    assert tgt.peak("bfloat16") == tgt.family_peak("bf16") and tgt.peak("float32") == tgt.family_peak("fp32")
    if name in NEURON_TARGETS:
        chip_bf16 = tgt.tensor_peak_flops("bfloat16") * tgt.cores
        # the published chip and per-core tables disagree by up to 6% (trn2: 667 TF vs 8 x 79 TF per core)
        assert chip_bf16 == pytest.approx(tgt.peak_flops["bf16"], rel=0.07)
        assert tgt.core_hbm_bw * tgt.cores == pytest.approx(tgt.hbm_bw)
        assert tgt.peak("bfloat16", lnc=2) == 2 * tgt.peak("bfloat16") and tgt.power(lnc=tgt.cores) == tgt.power_w


def test_rows_do_not_share_mutable_state():
    assert TARGETS["inf2"].peak_flops == TARGETS["trn1"].peak_flops
    assert TARGETS["inf2"].peak_flops is not TARGETS["trn1"].peak_flops
    assert TARGETS["h100"].peak_flops is not TARGETS["h200"].peak_flops


def test_with_power_validates_and_labels_the_assumption():
    tgt = TARGETS["trn2"].with_power(400.0, 0.2)
    assert isinstance(tgt, NeuronTarget) and tgt.power_w == 400.0 and tgt.idle_share == 0.2
    assert tgt.power_source == "assumed: 400 W per chip (user override)" and tgt.gen == 3
    with pytest.raises(ValueError, match="power_w"):
        TARGETS["trn2"].with_power(0.0)
    with pytest.raises(ValueError, match="idle_share"):
        TARGETS["h100"].with_power(700.0, 1.5)
    assert chips.TARGETS["trn2"].power_w == 500.0  # the table row itself is unchanged
