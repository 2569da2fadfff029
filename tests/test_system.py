"""Systems: the named catalog, golden interconnect tiers, scaling out, tier choice and default systems."""

from importlib import resources

import pytest
import yaml

from infercast import InfercastError, load_chip
from infercast.system import System, Tier, default_system, load_system, system_ids

NAMED = {
    "dgx-a100", "hgx-h100", "hgx-h200", "hgx-b200", "gb200-nvl72", "mi300x-8", "gaudi2-8", "gaudi3-8",
    "server-8x-rtx-4090", "server-8x-l40s", "tpu-v5e-256",
    "hgx-b300", "gb300-nvl72", "mi355x-8", "tpu-v6e-256", "trn2-16",
}


def test_system_ids_are_exactly_the_named_systems():
    assert set(system_ids()) == NAMED
    assert len(system_ids()) == len(NAMED)


@pytest.mark.parametrize("sid", sorted(NAMED))
def test_every_named_system_loads_and_is_sourced(sid):
    s = load_system(sid)
    assert isinstance(s, System) and s.id == sid
    assert load_chip(s.chip).id == s.chip  # the chip exists in the chip catalog
    assert s.num_chips == s.chips_per_node * s.nodes >= 1
    figures = []
    for tier in (s.intra_node, s.inter_node):
        if tier is not None:
            assert isinstance(tier, Tier) and tier.name
            figures += [tier.bandwidth_bytes_per_s_per_direction, tier.latency_s]
    if s.price_usd is not None:
        figures.append(s.price_usd)
    assert figures, sid
    for fig in figures:
        if fig.value is None:
            assert fig.note, (sid, fig)
        else:
            assert fig.value > 0 and fig.source, (sid, fig)
    # a multi-chip node needs its intra-node tier with known figures for collectives
    assert s.intra_node is not None
    assert s.intra_node.bandwidth_bytes_per_s_per_direction.value is not None
    assert s.intra_node.latency_s.value is not None


def test_golden_tiers():
    h100 = load_system("hgx-h100")
    assert h100.chip == "h100-sxm" and h100.chips_per_node == 8 and h100.nodes == 1
    # NVLink 4: 900 GB/s bidirectional per GPU = 450 GB/s per direction
    assert h100.intra_node.bandwidth_bytes_per_s_per_direction.value == 450e9
    assert "NVLink" in h100.intra_node.name and h100.intra_node.topology == "switch"
    # one ConnectX-7 NDR NIC per GPU: 400 Gb/s = 50 GB/s per direction
    assert h100.inter_node.bandwidth_bytes_per_s_per_direction.value == 50e9
    assert "NDR" in h100.inter_node.name and "400" in h100.inter_node.name
    # NCCL hwLat (LL, ring): NVLink 0.47 us, network 2.7 us per hop
    assert h100.intra_node.latency_s.value == 0.47e-6
    assert h100.inter_node.latency_s.value == 2.7e-6

    # NVLink 3: 600 GB/s bidirectional = 300 GB/s per direction
    assert load_system("dgx-a100").intra_node.bandwidth_bytes_per_s_per_direction.value == 300e9

    # GeForce: no NVLink, no peer-to-peer, so transfers are staged through host memory
    rtx = load_system("server-8x-rtx-4090")
    assert rtx.intra_node.topology == "host"
    assert rtx.intra_node.bandwidth_bytes_per_s_per_direction.value == 32e9
    # the data-centre L40S does peer-to-peer through PCIe switches
    assert load_system("server-8x-l40s").intra_node.topology == "switch"

    nvl72 = load_system("gb200-nvl72")
    assert nvl72.chips_per_node == 72 and nvl72.nodes == 1 and nvl72.num_chips == 72
    assert nvl72.tier_for(72) is nvl72.intra_node and "NVLink" in nvl72.intra_node.name
    assert nvl72.intra_node.bandwidth_bytes_per_s_per_direction.value == 900e9

    tpu = load_system("tpu-v5e-256")
    assert tpu.chips_per_node == 256 and tpu.inter_node is None and tpu.intra_node.topology == "torus"


def test_with_nodes():
    h100 = load_system("hgx-h100")
    four = h100.with_nodes(4)
    assert four.nodes == 4 and four.num_chips == 32 and four.chips_per_node == 8
    assert h100.num_chips == 8  # the cached catalog object is not changed
    with pytest.raises(InfercastError, match="--nodes 2: system tpu-v5e-256 has no inter-node link"):
        load_system("tpu-v5e-256").with_nodes(2)
    assert load_system("tpu-v5e-256").with_nodes(1).num_chips == 256


def test_tier_for():
    h100 = load_system("hgx-h100").with_nodes(2)
    for n in (2, 4, 8):
        assert h100.tier_for(n) is h100.intra_node
    assert h100.tier_for(9) is h100.inter_node
    assert h100.tier_for(16) is h100.inter_node
    with pytest.raises(InfercastError, match="no inter-node link"):
        load_system("tpu-v5e-256").tier_for(512)


def test_default_system_uses_the_chips_own_link():
    nv = default_system(load_chip("h100-sxm"), 8)
    assert nv.chips_per_node == 8 and nv.nodes == 1 and nv.num_chips == 8 and nv.chip == "h100-sxm"
    assert nv.intra_node.topology == "switch" and "NVLink" in nv.intra_node.name
    assert nv.intra_node.bandwidth_bytes_per_s_per_direction.value == 450e9
    assert nv.intra_node.latency_s.value == 0.47e-6  # NCCL's NVLink hop

    pcie = default_system(load_chip("rtx-4090"), 2)
    assert pcie.chips_per_node == 2 and pcie.nodes == 1
    assert pcie.intra_node.topology == "host" and "PCIe" in pcie.intra_node.name
    assert pcie.intra_node.bandwidth_bytes_per_s_per_direction.value == 32e9  # PCIe 4.0 x16 per direction
    assert pcie.intra_node.latency_s.value == 1.0e-6  # NCCL's PCIe hop

    big = default_system(load_chip("h100-sxm"), 16)
    assert big.chips_per_node == 8 and big.nodes == 2 and big.num_chips == 16
    assert big.inter_node.bandwidth_bytes_per_s_per_direction.value == 50e9  # 400 Gb/s NDR per chip
    assert big.inter_node.latency_s.value == 2.7e-6
    assert big.tier_for(16) is big.inter_node

    one = default_system(load_chip("h100-sxm"), 1)
    assert one.num_chips == 1 and one.intra_node is None


def _hgx_h100_yaml() -> dict:
    return yaml.safe_load((resources.files("infercast") / "catalog" / "systems" / "hgx-h100.yaml").read_text())


def test_a_system_file_loads(tmp_path):
    data = _hgx_h100_yaml()
    data["id"] = "my-h100-box"
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data))
    s = load_system(str(path))
    assert s.id == "my-h100-box" and s.intra_node == load_system("hgx-h100").intra_node


def test_bad_system_files_say_what_is_wrong(tmp_path):
    unknown_key = _hgx_h100_yaml()
    unknown_key["chips_per_nodes"] = 8
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(unknown_key))
    with pytest.raises(InfercastError, match=r"typo\.yaml: chips_per_nodes: unknown key"):
        load_system(str(path))

    unknown_chip = _hgx_h100_yaml()
    unknown_chip["chip"] = "h100-sxn"
    path = tmp_path / "chip.yaml"
    path.write_text(yaml.safe_dump(unknown_chip))
    with pytest.raises(InfercastError, match="unknown hardware 'h100-sxn'.*did you mean h100-sxm"):
        load_system(str(path))

    unsourced = _hgx_h100_yaml()
    unsourced["intra_node"]["latency_s"] = {"value": None}
    path = tmp_path / "null.yaml"
    path.write_text(yaml.safe_dump(unsourced))
    with pytest.raises(InfercastError, match="intra_node.latency_s.*note"):
        load_system(str(path))

    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(InfercastError, match="expected a mapping"):
        load_system(str(path))

    with pytest.raises(InfercastError, match="no such file"):
        load_system(str(tmp_path / "missing.yaml"))


def test_unknown_system_suggests_close_names():
    with pytest.raises(InfercastError, match=r"unknown system 'hgx-h10' \(did you mean hgx-h100"):
        load_system("hgx-h10")
