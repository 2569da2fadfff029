"""The chip catalog: every DESIGN.md id loads, figures match the reference CSV, bad YAML is one clear error."""

import copy
from importlib import resources

import pytest
import yaml

from infercast import InfercastError, chip_ids, estimate, load_chip
from infercast.system import load_system

# DESIGN.md, Contracts, "Catalog ids" (hardware): the first round, the second round (specifications in
# shared/data/hardware-reference.csv), and the older or smaller cards the measured data uses.
DESIGN_CHIPS = (
    "a100-sxm-40gb a100-sxm-80gb a100-pcie-80gb h100-sxm h100-pcie h100-nvl h200-sxm gh200 b200 gb200 l40s "
    "rtx-4090 rtx-3090 rtx-pro-6000 mi250x mi300x mi325x gaudi2 gaudi3 tpu-v4 tpu-v5e tpu-v5p inferentia2 "
    "trainium1 moffett-s30 m2-ultra arc-pro-b60"
).split()
SECOND_ROUND_CHIPS = "b300 gb300 mi355x mi350x tpu-v6e trainium2 rtx-5090 h20".split()
OLDER_CHIPS = "v100-sxm-16gb v100-sxm-32gb t4 a10 a30 a40 a2 l4 l40 l20 jetson-agx-orin".split()
OFFLOAD_CHIPS = ["rtx-a6000"]  # the GPU of measured-offload.csv's ZeRO-Inference and FlexGen workstation rows
ALL_CHIPS = DESIGN_CHIPS + SECOND_ROUND_CHIPS + OLDER_CHIPS + OFFLOAD_CHIPS


def test_catalog_ids_are_exactly_the_design_list():
    assert (len(DESIGN_CHIPS), len(SECOND_ROUND_CHIPS), len(OLDER_CHIPS)) == (27, 8, 11)
    assert len(set(ALL_CHIPS)) == 47
    assert set(chip_ids()) == set(ALL_CHIPS)
    assert chip_ids() == sorted(chip_ids())


@pytest.mark.parametrize("cid", ALL_CHIPS)
def test_every_design_chip_loads_under_its_own_id(cid):
    chip = load_chip(cid)
    # the file name is the id: chip_ids() lists file names, load_chip(id) reads <id>.yaml
    assert chip.id == cid
    assert chip.name and chip.vendor
    assert chip.memory.capacity_bytes.value > 0


def test_aliases_resolve_to_their_chip_and_never_collide():
    owners: dict[str, str] = {}
    for cid in chip_ids():
        chip = load_chip(cid)
        for key in (chip.id, *chip.aliases):
            assert key not in owners, f"'{key}' names both {owners[key]} and {cid}"
            owners[key] = cid
    assert len(owners) > len(chip_ids())  # there are aliases at all
    for key, cid in owners.items():
        assert load_chip(key) == load_chip(cid)
    # the common short names people type
    assert load_chip("h100").id == "h100-sxm"
    assert load_chip("a100").id == "a100-sxm-80gb"
    assert load_chip("4090").id == "rtx-4090"
    assert load_chip("h200").id == "h200-sxm"


# Golden figures, each written literally from its row of shared/data/hardware-reference.csv
# (columns in parentheses); the catalog stores SI units, the CSV TFLOPS / GB / GB/s.
def test_h100_sxm_golden_figures():
    h100 = load_chip("h100-sxm")
    # row h100-sxm: fp16_bf16_tensor_tflops_dense 989.4 (the datasheet's 1979 is with 2:4 sparsity)
    assert h100.peak_flops.bf16.value == pytest.approx(989.4e12, rel=1e-9)
    assert h100.peak_flops.fp16.value == pytest.approx(989.4e12, rel=1e-9)
    # row h100-sxm: fp8_tensor_tflops_dense 1978.9
    assert h100.peak_flops.fp8.value == pytest.approx(1978.9e12, rel=1e-9)
    # row h100-sxm: memory_gb 80, memory_bandwidth_gb_per_s 3350. The vendor's 80 GB of HBM3 is 80 GiB (DRAM is
    # binary: nvidia-smi reports 81,559 MiB total on an H100 80GB, 80 GiB less a driver reserve): 85.90e9 bytes
    assert h100.memory.capacity_bytes.value == 80 * 2**30
    assert h100.memory.bandwidth_bytes_per_s.value == pytest.approx(3350e9, rel=1e-9)
    # row h100-sxm: interconnect_bw_gb_per_s 900, "bidirectional total (450 per direction)"
    assert h100.interconnect.bandwidth_bytes_per_s_per_direction.value == pytest.approx(450e9, rel=1e-9)
    assert h100.tdp_w.value == 700  # row h100-sxm: tdp_w 700


def test_a100_sxm_80gb_golden_figures():
    a100 = load_chip("a100-sxm-80gb")
    # row a100-sxm-80gb: fp16_bf16_tensor_tflops_dense 312, memory_gb 80, memory_bandwidth_gb_per_s 2039
    assert a100.peak_flops.fp16.value == pytest.approx(312e12, rel=1e-9)
    assert a100.peak_flops.bf16.value == pytest.approx(312e12, rel=1e-9)
    assert a100.memory.bandwidth_bytes_per_s.value == pytest.approx(2039e9, rel=1e-9)
    assert a100.memory.capacity_bytes.value == 80 * 2**30  # HBM2e: GiB, as every HBM part
    # row a100-sxm-80gb: interconnect_bw_gb_per_s 600, "bidirectional total (300 per direction)"
    assert a100.interconnect.bandwidth_bytes_per_s_per_direction.value == pytest.approx(300e9, rel=1e-9)
    # row a100-sxm-40gb differs only in memory: 40 GB at 1555 GB/s
    a100_40 = load_chip("a100-sxm-40gb")
    assert a100_40.memory.capacity_bytes.value == 40 * 2**30
    assert a100_40.memory.bandwidth_bytes_per_s.value == pytest.approx(1555e9, rel=1e-9)
    assert a100_40.peak_flops.fp16.value == pytest.approx(312e12, rel=1e-9)


def test_rtx_4090_and_b200_golden_figures():
    # row rtx-4090: fp16_bf16_tensor_tflops_dense 165.2, "LLM kernels generally accumulate in FP32 -> use 165"
    # (330.3 is the GeForce FP16-accumulate rate); memory_gb 24, memory_bandwidth_gb_per_s 1008
    rtx = load_chip("rtx-4090")
    assert rtx.peak_flops.fp16.value == pytest.approx(165.2e12, rel=1e-9)
    assert rtx.memory.capacity_bytes.value == 24 * 2**30  # GeForce GDDR6X, no ECC: all 24 GiB
    assert rtx.memory.bandwidth_bytes_per_s.value == pytest.approx(1008e9, rel=1e-9)
    # row b200: fp4_tensor_tflops_dense 9000, fp8 4500, fp16/bf16 2250, memory_gb 180, bandwidth 8000
    b200 = load_chip("b200")
    assert b200.peak_flops.fp4.value == pytest.approx(9000e12, rel=1e-9)
    assert b200.peak_flops.fp8.value == pytest.approx(4500e12, rel=1e-9)
    assert b200.peak_flops.bf16.value == pytest.approx(2250e12, rel=1e-9)
    assert b200.memory.capacity_bytes.value == 180 * 2**30
    assert b200.memory.bandwidth_bytes_per_s.value == pytest.approx(8000e9, rel=1e-9)


def test_peak_falls_back_to_a_wider_format_the_chip_has():
    # DESIGN.md: "a chip without FP8 units computes FP8 at its FP16 rate": A100 (Ampere) has no FP8 units
    a100 = load_chip("a100-sxm-80gb")
    assert a100.peak_flops.fp8 is None
    assert a100.peak("fp8") == pytest.approx(312e12, rel=1e-9)
    assert a100.peak("fp4") == pytest.approx(312e12, rel=1e-9)
    # H100 has FP8 tensor cores: row h100-sxm fp8_tensor_tflops_dense 1978.9
    assert load_chip("h100-sxm").peak("fp8") == pytest.approx(1978.9e12, rel=1e-9)
    # TPU v4 lists bf16 only ("275 teraflops (bf16 or int8)"): fp16 math runs at the bf16 rate
    assert load_chip("tpu-v4").peak("fp16") == pytest.approx(275e12, rel=1e-9)
    # B200 has native FP4: no fallback
    assert load_chip("b200").peak("fp4") == pytest.approx(9000e12, rel=1e-9)


def _without_peaks(cid: str, *fmts: str):
    """A catalog chip with the peaks ``fmts`` removed (as a user YAML that never set them)."""
    chip = load_chip(cid)
    return chip.model_copy(update={"id": f"{cid}-test", "peak_flops": chip.peak_flops.model_copy(
        update=dict.fromkeys(fmts))})


def test_a_rate_nobody_published_is_a_clear_error():
    with pytest.raises(InfercastError, match=r"h100-sxm-test.*add peak_flops\.fp16"):
        _without_peaks("h100-sxm", "fp32", "tf32", "bf16", "fp16").peak("fp16")
    with pytest.raises(InfercastError, match=r"moffett-s30.*on_chip_sram_bytes"):
        load_chip("moffett-s30").figure("on_chip_sram_bytes")


def test_the_missing_peak_message_names_the_asked_format():
    chip = _without_peaks("h100-sxm", "fp32", "tf32", "bf16", "fp16", "fp8", "int8")
    with pytest.raises(InfercastError) as info:
        chip.native_format("fp32")
    msg = str(info.value)
    assert "no peak FLOPS known for fp32 math" in msg and "add peak_flops.fp32 to the chip YAML" in msg
    assert "bf16" not in msg and len(msg.splitlines()) == 1
    # narrower formats name the asked one first, then every wider key that would also serve
    with pytest.raises(InfercastError, match=r"for fp8 math \(peak_flops\.fp8, peak_flops\.fp16, peak_flops\.bf16, "
                                             r"peak_flops\.fp32 all unknown\); add peak_flops\.fp8"):
        chip.native_format("fp8")
    # an fp32 estimate reaches the vector rate first, which falls back to the bf16 rate when fp32 is unknown
    # (roofline.vector_peak): the one-line message still names the fp32 key the user's format needs
    with pytest.raises(InfercastError) as info:
        estimate("llama-2-7b", chip, dtype="fp32")
    assert "peak_flops.fp32" in str(info.value) and len(str(info.value).splitlines()) == 1


def test_assumed_figures_are_marked_with_their_basis():
    # the sparse accelerator: only its 60 GB of LPDDR4X is verified (hardware-reference.csv)
    s30 = load_chip("moffett-s30")
    assert s30.memory.capacity_bytes.value == 60e9 and not s30.memory.capacity_bytes.assumed
    for fig in (s30.peak_flops.bf16, s30.peak_flops.int8, s30.memory.bandwidth_bytes_per_s, s30.tdp_w,
                s30.host_link.bandwidth_bytes_per_s_per_direction):
        assert fig.assumed and "ASSUMED" in fig.note
    with pytest.raises(InfercastError, match="assumed figure needs a 'note'"):
        _parse_with(s30, {"tdp_w": {"value": 250, "source": "x", "assumed": True}})


def _parse_with(chip, changes):
    from infercast.hardware import _parse
    data = {**chip.model_dump(), **changes}
    import yaml
    return _parse(yaml.safe_dump(data), "test.yaml")


def test_sparsity_support_is_declared_per_chip():
    h100, s30 = load_chip("h100-sxm").sparsity, load_chip("moffett-s30").sparsity
    assert h100.structured == ("2:4",) and h100.max_speedup == 2 and not h100.unstructured
    assert s30.unstructured and s30.activation and s30.max_speedup == 32
    assert load_chip("tpu-v5e").sparsity is None  # TPUs accelerate no sparsity
    with pytest.raises(InfercastError, match="sparsity pattern '4:2'"):
        _parse_with(load_chip("h100-sxm"), {"sparsity": {"structured": ["4:2"], "max_speedup": 2, "source": "x"}})


def _sourced_figures(data, path=""):
    """Every Sourced mapping ({value, source, note}) in a chip's model_dump, with its dotted path."""
    if isinstance(data, dict):
        if set(data) == {"value", "source", "note", "assumed"}:
            yield path, data
            return
        for key, value in data.items():
            yield from _sourced_figures(value, f"{path}.{key}" if path else key)


def test_every_figure_has_a_source_and_every_null_a_note():
    seen = 0
    for cid in chip_ids():
        for path, fig in _sourced_figures(load_chip(cid).model_dump()):
            seen += 1
            if fig["value"] is None:
                assert fig["note"] and fig["note"].strip(), f"{cid} {path}: null without a note"
            else:
                assert fig["source"] and fig["source"].strip(), f"{cid} {path}: figure without a source"
    # 47 chips x at least the 8 always-present figures (process, capacity, bandwidth, sram, units, tdp, idle, price)
    assert seen >= 47 * 8


# Dense bf16 (row value, TFLOPS, column fp16_bf16_tensor_tflops_dense) beside the datasheet's
# headline figure "with sparsity" (NVIDIA datasheets / whitepapers). The catalog must hold the dense one.
NVIDIA_DENSE_VS_SPARSE_TFLOPS = {
    "a100-sxm-40gb": (312, 624),
    "a100-sxm-80gb": (312, 624),
    "a100-pcie-80gb": (312, 624),
    "h100-sxm": (989.4, 1979),
    "h100-pcie": (756, 1513),
    "h100-nvl": (835.5, 1671),
    "h200-sxm": (989.4, 1979),
    "gh200": (989.4, 1979),
    "b200": (2250, 4500),  # HGX B200: 36 PF FP16 sparse / 8 GPUs
    "gb200": (2500, 5000),  # GB200 NVL72: 360 PF FP16 sparse / 72 GPUs
    "l40s": (362.05, 733),
    "rtx-4090": (165.2, 330.4),  # Ada whitepaper, FP32 accumulate
    "rtx-3090": (71, 142),  # GA102 whitepaper, FP32 accumulate
    "rtx-pro-6000": (500, 1000),  # derived: 4,000 sparse FP4 AI TOPS / 2 dense / 4 (Blackwell FP4 : FP16)
    "b300": (2250, 4500),  # HGX B300: 36 PF FP16 sparse / 8 GPUs
    "gb300": (2500, 5000),  # GB300 NVL72: 360 PF FP16 sparse / 72 GPUs
    "rtx-5090": (209.5, 419),  # FP32 accumulate: half the FP16-accumulate 838 sparse / 419 dense
    "h20": (148, 296),  # no NVIDIA datasheet; 148 read as dense (CSV), 2:4 sparsity would double it
    "v100-sxm-16gb": (15.7, None),  # no BF16 units: the FP32 rate (assumed); Volta has no sparsity
    "v100-sxm-32gb": (15.7, None),
    "t4": (8.1, None),  # no BF16 units: the FP32 rate (assumed); Turing has no sparsity
    "a10": (125, 250),  # A10 datasheet "125 | 250*"
    "a30": (165, 330),  # A30 datasheet "165 | 330*"
    "a40": (149.7, 299.4),  # A40 datasheet "149.7 | 299.4*"
    "a2": (18, 36),  # A2 datasheet "18 | 36*"
    "l4": (121, 242),  # L4 datasheet "242*" (with sparsity only)
    "l40": (181.05, 362.1),  # L40 datasheet "181.05 | 362.1*"
    "l20": (119.5, 239),  # NVIDIA China L20 page, as reproduced: "119.5 | 239*"
    "jetson-agx-orin": (42.5, 85),  # derived: GPU 170 sparse INT8 TOPS / 2 dense / 2 (FP16 = INT8 / 2)
    "rtx-a6000": (154.8, 309.7),  # RTX A6000 datasheet: tensor performance 309.7 TFLOPS with sparsity
}


def test_nvidia_peaks_are_dense_not_the_sparse_headline():
    nvidia = {cid for cid in chip_ids() if load_chip(cid).vendor == "NVIDIA"}
    assert nvidia == set(NVIDIA_DENSE_VS_SPARSE_TFLOPS)
    for cid, (dense, sparse) in NVIDIA_DENSE_VS_SPARSE_TFLOPS.items():
        bf16 = load_chip(cid).peak_flops.bf16
        assert bf16.value == pytest.approx(dense * 1e12, rel=1e-9), cid
        if sparse is not None:
            assert bf16.value < 0.51 * sparse * 1e12, f"{cid}: {bf16.value:.4g} looks like the sparse figure"
    assert load_chip("h100-sxm").peak("bf16") < 1.5e15


def test_unknown_id_suggests_the_close_one():
    with pytest.raises(InfercastError, match=r"unknown hardware 'h100-sxn'.*did you mean.*h100-sxm"):
        load_chip("h100-sxn")
    with pytest.raises(InfercastError, match=r"unknown hardware 'zz-nothing-like-it'; see"):
        load_chip("zz-nothing-like-it")


# Golden figures of the second round and the older cards. Second-round values are written literally
# from their row of shared/data/hardware-reference.csv; older cards from the NVIDIA datasheet named.
def test_b300_and_gb300_golden_figures():
    b300 = load_chip("b300")
    # row b300: fp16_bf16_tensor_tflops_dense 2250 (HGX B300 36 PF sparse / 8), fp8 4500
    assert b300.peak_flops.bf16.value == pytest.approx(2250e12, rel=1e-9)
    assert b300.peak_flops.fp8.value == pytest.approx(4500e12, rel=1e-9)
    # row b300: fp4 13500 = HGX page 108 PF DENSE / 8 (NVIDIA prints dense: sparse/dense is 1.33, not 2)
    assert b300.peak_flops.fp4.value == pytest.approx(13500e12, rel=1e-9)
    # row b300: int8_tensor_tops_dense 153.5 (Ultra datasheet 307 TOPS sparse / 2): INT8 cut ~29x vs B200
    assert b300.peak("int8") == pytest.approx(153.5e12, rel=1e-9)
    # row b300: memory_gb 270, memory_bandwidth_gb_per_s 7700, tdp_w 1100; microarch.csv: 148 SMs
    assert b300.memory.capacity_bytes.value == 270 * 2**30
    assert b300.memory.bandwidth_bytes_per_s.value == pytest.approx(7700e9, rel=1e-9)
    assert b300.tdp_w.value == 1100
    assert b300.num_compute_units.value == 148
    # row b300: interconnect_bw 1800, "bidirectional total (900 per direction)"
    assert b300.interconnect.bandwidth_bytes_per_s_per_direction.value == pytest.approx(900e9, rel=1e-9)
    # row gb300: bf16 2500, fp4 15000 (1,080 PF dense / 72), 279 GB, 8000 GB/s, 1400 W; microarch.csv 152 SMs
    gb300 = load_chip("gb300")
    assert (gb300.peak("bf16"), gb300.peak("fp4")) == pytest.approx((2500e12, 15000e12), rel=1e-9)
    assert (gb300.memory.capacity_bytes.value, gb300.tdp_w.value, gb300.num_compute_units.value) == (279 * 2**30, 1400,
                                                                                                      152)
    assert gb300.family == b300.family == "nvidia-blackwell-ultra"


def test_mi355x_and_mi350x_golden_figures():
    mi355x = load_chip("mi355x")
    # row mi355x: fp16_bf16_tensor_tflops_dense 2500, fp8 5000, int8 5000, fp4 10100; fp32_vector 157.3
    assert mi355x.peak_flops.bf16.value == pytest.approx(2500e12, rel=1e-9)
    assert mi355x.peak_flops.fp8.value == pytest.approx(5000e12, rel=1e-9)
    assert mi355x.peak_flops.fp4.value == pytest.approx(10100e12, rel=1e-9)
    assert mi355x.peak_flops.fp32.value == pytest.approx(157.3e12, rel=1e-9)
    # row mi355x notes: "FP6 runs at the FP4 rate (10.1 PF)" on CDNA4; no TF32 hardware (tf32 empty)
    assert mi355x.peak("fp6") == pytest.approx(10100e12, rel=1e-9)
    assert mi355x.peak_flops.tf32 is None
    # row mi355x: memory_gb 288, bandwidth 8000, onchip 256 MB, tdp 1400; microarch.csv 256 CUs
    assert mi355x.memory.capacity_bytes.value == 288 * 2**30
    assert mi355x.memory.bandwidth_bytes_per_s.value == pytest.approx(8000e9, rel=1e-9)
    assert mi355x.on_chip_sram_bytes.value == 256e6
    assert (mi355x.tdp_w.value, mi355x.num_compute_units.value) == (1400, 256)
    # row mi355x: interconnect_bw 1075.2 aggregate bidirectional (7 x 153.6): 537.6 per direction
    assert mi355x.interconnect.bandwidth_bytes_per_s_per_direction.value == pytest.approx(537.6e9, rel=1e-9)
    # row mi350x: bf16 2306.9 (= 256 CU x 4 x 512 FMA x 2 x 2.2 GHz), 1000 W; its FP8 4613.8 is clock-scaled
    mi350x = load_chip("mi350x")
    assert mi350x.peak("bf16") == pytest.approx(2306.9e12, rel=1e-9)
    assert mi350x.tdp_w.value == 1000
    assert mi350x.peak_flops.fp8.value == pytest.approx(4613.8e12, rel=1e-9) and mi350x.peak_flops.fp8.assumed


def test_h20_golden_figures():
    h20 = load_chip("h20")
    # row h20: fp16_bf16 148, fp8 296, int8 296 (dense per LMSYS/Ant Group; no NVIDIA datasheet)
    assert h20.peak_flops.bf16.value == pytest.approx(148e12, rel=1e-9)
    assert h20.peak_flops.fp8.value == pytest.approx(296e12, rel=1e-9)
    # row h20: memory_gb 96, memory_bandwidth_gb_per_s 4000, onchip 60 MB, tdp_w 400; 78 SMs (CSV notes)
    assert h20.memory.capacity_bytes.value == 96 * 2**30
    assert h20.memory.bandwidth_bytes_per_s.value == pytest.approx(4000e9, rel=1e-9)
    assert (h20.on_chip_sram_bytes.value, h20.tdp_w.value, h20.num_compute_units.value) == (60e6, 400, 78)
    # row h20: NVLink 900 bidirectional, "not cut, unlike H800"
    assert h20.interconnect.bandwidth_bytes_per_s_per_direction.value == pytest.approx(450e9, rel=1e-9)


def test_t4_golden_figures():
    t4 = load_chip("t4")
    # NVIDIA T4 datasheet: 65 TFLOPS mixed precision FP16/FP32, 130 INT8 TOPS, 260 INT4, 8.1 FP32
    assert t4.peak_flops.fp16.value == pytest.approx(65e12, rel=1e-9)
    assert t4.peak_flops.int8.value == pytest.approx(130e12, rel=1e-9)
    assert t4.peak_flops.int4.value == pytest.approx(260e12, rel=1e-9)
    assert t4.peak_flops.fp32.value == pytest.approx(8.1e12, rel=1e-9)
    # T4 datasheet: 16 GB GDDR6 at "320+ GB/s", 70 W, PCIe Gen3 x16 (15.75 GB/s, rounded to 16, each way)
    assert t4.memory.capacity_bytes.value == 16e9
    assert t4.memory.bandwidth_bytes_per_s.value == pytest.approx(320e9, rel=1e-9)
    assert t4.tdp_w.value == 70
    assert t4.host_link.bandwidth_bytes_per_s_per_direction.value == 16e9
    # Turing: no BF16 tensor path, so bf16 runs at the FP32 rate (an assumption, marked), and no sparsity
    assert t4.peak("bf16") == pytest.approx(8.1e12, rel=1e-9) and t4.peak_flops.bf16.assumed
    assert t4.sparsity is None and t4.family == "nvidia-turing"
    # Turing has no FP8 units: fp8 math runs at the FP16 rate
    assert t4.native_format("fp8") == "fp16"


def test_l4_golden_figures():
    l4 = load_chip("l4")
    # NVIDIA L4 datasheet quotes only "with sparsity": FP16/BF16 242*, FP8 485*, TF32 120*; dense = half
    assert l4.peak_flops.fp16.value == pytest.approx(121e12, rel=1e-9)
    assert l4.peak_flops.bf16.value == pytest.approx(121e12, rel=1e-9)
    assert l4.peak_flops.fp8.value == pytest.approx(242.5e12, rel=1e-9)
    assert l4.peak_flops.tf32.value == pytest.approx(60e12, rel=1e-9)
    assert l4.peak_flops.fp32.value == pytest.approx(30.3e12, rel=1e-9)  # datasheet FP32 30.3
    # L4 datasheet: 24 GB GDDR6, 300 GB/s, 72 W
    assert l4.memory.capacity_bytes.value == 24e9
    assert l4.memory.bandwidth_bytes_per_s.value == pytest.approx(300e9, rel=1e-9)
    assert l4.tdp_w.value == 72
    assert l4.sparsity.structured == ("2:4",) and l4.sparsity.max_speedup == 2


def test_older_nvidia_golden_figures():
    # NVIDIA V100 datasheet (SXM2): 125 TFLOPS tensor, 15.7 FP32, 900 GB/s HBM2, NVLink 300 GB/s, 300 W
    for cid, gb in (("v100-sxm-16gb", 16), ("v100-sxm-32gb", 32)):
        v100 = load_chip(cid)
        assert v100.peak("fp16") == pytest.approx(125e12, rel=1e-9)
        assert v100.peak_flops.fp32.value == pytest.approx(15.7e12, rel=1e-9)
        assert v100.memory.capacity_bytes.value == gb * 2**30  # HBM2: GiB
        assert v100.memory.bandwidth_bytes_per_s.value == pytest.approx(900e9, rel=1e-9)
        assert v100.interconnect.bandwidth_bytes_per_s_per_direction.value == 150e9  # 300 bidirectional / 2
        assert (v100.tdp_w.value, v100.num_compute_units.value, v100.family) == (300, 80, "nvidia-volta")
    # datasheets (dense | sparse*): A10 FP16 125 | 250*, 600 GB/s, 150 W; A30 165 | 330*, 933 GB/s, 165 W;
    # A40 149.7 | 299.4*, 696 GB/s, 300 W; A2 18 | 36*, 200 GB/s, 60 W; L40 181.05 | 362.1*, 864 GB/s, 300 W
    for cid, fp16, gbps, tdp in (("a10", 125, 600, 150), ("a30", 165, 933, 165), ("a40", 149.7, 696, 300),
                                 ("a2", 18, 200, 60), ("l40", 181.05, 864, 300), ("l20", 119.5, 864, 275)):
        chip = load_chip(cid)
        assert chip.peak("fp16") == pytest.approx(fp16 * 1e12, rel=1e-9), cid
        assert chip.memory.bandwidth_bytes_per_s.value == pytest.approx(gbps * 1e9, rel=1e-9), cid
        assert chip.tdp_w.value == tdp, cid
    # Jetson AGX Orin 64GB: GPU 170 sparse INT8 TOPS -> 85 dense (the 275 headline adds the two DLAs);
    # FP16 = 85 / 2 (derived, assumed); 64 GB LPDDR5 at 204.8 GB/s; 15-60 W
    orin = load_chip("jetson-agx-orin")
    assert orin.peak_flops.int8.value == pytest.approx(85e12, rel=1e-9)
    assert orin.peak("fp16") == pytest.approx(42.5e12, rel=1e-9) and orin.peak_flops.fp16.assumed
    assert orin.memory.bandwidth_bytes_per_s.value == pytest.approx(204.8e9, rel=1e-9)
    assert (orin.memory.capacity_bytes.value, orin.tdp_w.value) == (64 * 2**30, 60)  # LPDDR5: 64 GiB


def test_tpu_v6e_and_trainium2_golden_figures():
    v6e = load_chip("tpu-v6e")
    # row tpu-v6e: bf16 918 dense, int8 1836, 32 GB, 1638 GB/s, ICI 800 GB/s bidirectional per chip
    assert (v6e.peak("bf16"), v6e.peak("int8")) == pytest.approx((918e12, 1836e12), rel=1e-9)
    assert v6e.memory.bandwidth_bytes_per_s.value == pytest.approx(1638e9, rel=1e-9)
    assert v6e.interconnect.bandwidth_bytes_per_s_per_direction.value == pytest.approx(400e9, rel=1e-9)
    assert v6e.peak("fp8") == v6e.peak("bf16")  # no FP8 figure from Google: fp8 runs at the bf16 rate
    trn2 = load_chip("trainium2")
    # row trainium2: 667 BF16/FP16/TF32, 1299 FP8, 181 FP32, 96 GiB (103.08 GB), 2.9 TB/s, 8 NeuronCores
    assert (trn2.peak("bf16"), trn2.peak("fp8"), trn2.peak("fp32")) == pytest.approx((667e12, 1299e12, 181e12))
    assert trn2.memory.capacity_bytes.value == pytest.approx(96 * 2**30, rel=1e-3)
    assert trn2.memory.bandwidth_bytes_per_s.value == pytest.approx(2900e9, rel=1e-9)
    assert trn2.num_compute_units.value == 8


def test_rtx_pro_6000_and_arc_pro_b60_have_rates():
    pro = load_chip("rtx-pro-6000")
    # NVIDIA: 4,000 AI TOPS = FP4 with sparsity -> 2,000 dense; Blackwell ratios FP8 = FP4 / 2, FP16 = FP4 / 4
    assert (pro.peak("fp4"), pro.peak("fp8"), pro.peak("fp16")) == pytest.approx((2000e12, 1000e12, 500e12))
    assert pro.peak_flops.fp16.assumed and pro.peak_flops.fp8.assumed and not pro.peak_flops.fp4.assumed
    assert pro.peak_flops.fp32.value == pytest.approx(125e12, rel=1e-9)  # NVIDIA ~125 TFLOPS single precision
    arc = load_chip("arc-pro-b60")
    # row arc-pro-b60: fp16_bf16_tensor_tflops_dense 98.3, int8 197, fp32_vector 12.29, 456 GB/s
    assert (arc.peak("fp16"), arc.peak("int8"), arc.peak("fp32")) == pytest.approx((98.3e12, 197e12, 12.29e12))
    assert arc.native_format("fp8") == "fp16"  # no FP8 on XMX


def _own_format(chip) -> str:
    """The first 16-bit (else wider, else narrower) format the chip lists a rate for."""
    return next(f for f in ("fp16", "bf16", "fp32", "fp8", "int8")
                if getattr(chip.peak_flops, f) is not None and getattr(chip.peak_flops, f).value is not None)


@pytest.mark.parametrize("cid", ALL_CHIPS)
def test_every_chip_runs_an_estimate_in_a_format_it_has(cid):
    chip = load_chip(cid)
    dtype = _own_format(chip)
    r = estimate("llama-3-8b", cid, dtype=dtype, batch=1, isl=128, osl=16)  # must not raise, fitting or not
    if not r.memory.fits:  # 16 GB cards cannot hold LLaMA-3-8B in 16-bit: GPT-2 XL (1.6B) fits every chip
        r = estimate("gpt-2-xl", cid, dtype=dtype, batch=1, isl=128, osl=16)
        assert r.memory.fits, cid
    assert 0 < r.ttft_s < 60 and 0 < r.tpot_s < 1, (cid, r.ttft_s, r.tpot_s)
    assert r.prefill.flops > 0 and r.decode.bytes > 0


@pytest.mark.parametrize("cid", ["rtx-pro-6000", "arc-pro-b60"])
def test_the_formerly_rateless_cards_run_fp16(cid):
    r = estimate("llama-3-8b", cid, dtype="fp16", batch=1, isl=1024, osl=128)
    assert r.memory.fits
    # LLaMA-3-8B fp16 decode reads ~16 GB of weights a token: TPOT is at least weights / peak bandwidth
    assert r.tpot_s > 16.06e9 / load_chip(cid).memory.bandwidth_bytes_per_s.value


NEW_SYSTEMS = {"hgx-b300": ("b300", 8), "gb300-nvl72": ("gb300", 72), "mi355x-8": ("mi355x", 8),
               "tpu-v6e-256": ("tpu-v6e", 256), "trn2-16": ("trainium2", 16)}


@pytest.mark.parametrize("sid", sorted(NEW_SYSTEMS))
def test_every_new_system_loads_and_its_chip_exists(sid):
    s = load_system(sid)
    chip, n = NEW_SYSTEMS[sid]
    assert (s.chip, s.num_chips) == (chip, n)
    assert load_chip(s.chip).id == chip
    # the scale-up tier is the chip's own link (per direction), e.g. row b300: 1800 bidirectional -> 900
    assert s.intra_node.bandwidth_bytes_per_s_per_direction.value == \
        load_chip(chip).interconnect.bandwidth_bytes_per_s_per_direction.value
    assert estimate("llama-3-70b", system=sid, tp=8, batch=4, isl=512, osl=32).memory.fits


def test_new_system_scale_out_figures():
    # ConnectX-8 SuperNIC: 800 Gb/s per GPU = 100 GB/s each way (HGX B300, GB300 NVL72)
    assert load_system("hgx-b300").inter_node.bandwidth_bytes_per_s_per_direction.value == 100e9
    assert load_system("gb300-nvl72").inter_node.bandwidth_bytes_per_s_per_direction.value == 100e9
    # trn2.48xlarge: 3.2 Tb/s EFAv3 over 16 chips = 200 Gb/s = 25 GB/s per chip each way
    assert load_system("trn2-16").inter_node.bandwidth_bytes_per_s_per_direction.value == 25e9
    # one v6e pod: ICI only, no published data-centre network figure to scale out over
    assert load_system("tpu-v6e-256").inter_node is None


# --- chip YAML files written by users ------------------------------------------------------


def _h100() -> dict:
    text = (resources.files("infercast") / "catalog" / "hardware" / "h100-sxm.yaml").read_text()
    return yaml.safe_load(text)


def _write(tmp_path, data, name="chip.yaml") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return str(path)


def test_a_valid_user_yaml_loads(tmp_path):
    data = _h100()
    data["id"] = "my-h100"
    data["aliases"] = []
    data["memory"]["bandwidth_bytes_per_s"]["value"] = 4.0e12
    chip = load_chip(_write(tmp_path, data))
    assert chip.id == "my-h100"
    assert chip.figure("memory.bandwidth_bytes_per_s") == 4.0e12


def test_an_extra_misspelt_key_is_named(tmp_path):
    data = _h100()
    data["tdp_watts"] = 700
    with pytest.raises(InfercastError, match=r"chip\.yaml: tdp_watts: unknown key"):
        load_chip(_write(tmp_path, data))


def test_a_misspelt_required_key_names_the_missing_field(tmp_path):
    data = _h100()
    data["tdp_watts"] = data.pop("tdp_w")
    with pytest.raises(InfercastError, match=r"chip\.yaml: tdp_watts: unknown key.*also: tdp_w missing") as info:
        load_chip(_write(tmp_path, data))
    assert len(str(info.value).splitlines()) == 1


def test_a_misspelt_required_key_also_names_the_misspelling(tmp_path):
    data = _h100()
    data["tdp_watts"] = data.pop("tdp_w")
    with pytest.raises(InfercastError, match=r"tdp_watts"):
        load_chip(_write(tmp_path, data))


def test_a_null_without_a_note_is_named(tmp_path):
    data = _h100()
    data["memory"]["bandwidth_bytes_per_s"] = {"value": None}
    with pytest.raises(InfercastError, match=r"memory\.bandwidth_bytes_per_s: .*null value needs a 'note'"):
        load_chip(_write(tmp_path, data))


def test_a_figure_without_a_source_is_named(tmp_path):
    data = _h100()
    del data["peak_flops"]["fp8"]["source"]
    with pytest.raises(InfercastError, match=r"peak_flops\.fp8: .*needs a 'source'"):
        load_chip(_write(tmp_path, data))


def test_a_negative_figure_is_named(tmp_path):
    data = _h100()
    data["memory"]["capacity_bytes"]["value"] = -80e9
    with pytest.raises(InfercastError, match=r"memory\.capacity_bytes\.value: .*greater than or equal to 0"):
        load_chip(_write(tmp_path, data))


def test_an_unknown_family_is_named(tmp_path):
    data = _h100()
    data["family"] = "nvidia-fermi"
    with pytest.raises(InfercastError, match=r"family: "):
        load_chip(_write(tmp_path, data))


def test_invalid_yaml_is_one_clear_error(tmp_path):
    path = _write(tmp_path, "id: x\n  name: [unclosed\n", "broken.yaml")
    with pytest.raises(InfercastError, match=r"broken\.yaml: not valid YAML") as info:
        load_chip(path)
    assert len(str(info.value).splitlines()) == 1


def test_yaml_that_is_not_a_mapping(tmp_path):
    with pytest.raises(InfercastError, match=r"list\.yaml: expected a mapping"):
        load_chip(_write(tmp_path, "- a\n- b\n", "list.yaml"))
    with pytest.raises(InfercastError, match=r"empty\.yaml: expected a mapping"):
        load_chip(_write(tmp_path, "", "empty.yaml"))


def test_a_missing_yaml_path(tmp_path):
    with pytest.raises(InfercastError, match=r"--hardware: no such file .*nope\.yaml"):
        load_chip(str(tmp_path / "nope.yaml"))


def test_loaded_specs_are_frozen():
    chip = load_chip("h100-sxm")
    with pytest.raises(Exception, match="frozen"):
        chip.tdp_w = copy.deepcopy(chip.tdp_w)


def test_hbm_and_unified_memory_capacities_are_whole_gibibytes():
    # DRAM is built in binary sizes: the "80 GB" of an H100 is 80 GiB (nvidia-smi: 81,559 MiB total, 80 GiB
    # less a driver reserve), so every HBM and unified-memory capacity in the catalog is a whole number of GiB;
    # data-centre GDDR cards (A10, L4, T4, ...) run ECC in band, which sets aside 1/16, and keep the decimal figure
    from infercast.hardware import chip_ids

    checked = 0
    for cid in chip_ids():
        mem = load_chip(cid).memory
        if mem.type.startswith(("HBM", "LPDDR5")):
            gib = mem.capacity_bytes.value / 2**30
            assert gib == round(gib), (cid, gib)
            checked += 1
    assert checked >= 30
    assert load_chip("h100-sxm").memory.capacity_bytes.value == 85_899_345_920  # 80 x 1,073,741,824
