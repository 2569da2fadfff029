"""Parallel plans and collectives: hand-derived alpha-beta costs, TP/PP/EP/DP/SP on real models, properties."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infercast import InfercastError, estimate, load_chip, load_model
from infercast.hardware import Sourced
from infercast.ops import Precision
from infercast.parallel import (
    CommOptions,
    Plan,
    all_to_all_s,
    allgather_s,
    allreduce_s,
    candidate_plans,
    comm_ops,
    group_allreduce_s,
    make_plan,
    p2p_s,
    stages_of,
    tp_shard,
)
from infercast.system import Tier, load_system

GiB = 2**30
OPTS = CommOptions(bandwidth=0.77, launch_s=6.6e-6)  # NCCL's figures (the calibration prior); host staging x2
LAUNCH = 6.6e-6
NV_B = 0.77 * 450e9  # achievable NVLink 4 bytes/s per direction = 346.5e9
NV_A = 0.47e-6  # NCCL's NVLink hop
IB_B = 0.77 * 50e9  # achievable NDR 400 Gb/s = 38.5e9
IB_A = 2.7e-6  # NCCL's network hop
# Hand derivations below use NCCL's constants (CommOptions' defaults); the shipped calibration fits its
# own (infercast.calibration.comm_for()), so estimates here pass comm=OPTS to compare like with like.
LLAMA70_WORKLOAD = {"batch": 1, "isl": 1024, "osl": 128, "comm": OPTS}


def tier(bw: float, lat: float, topology: str = "switch") -> Tier:
    return Tier(name=f"test {topology}", topology=topology,
                bandwidth_bytes_per_s_per_direction=Sourced(value=bw, source="test"),
                latency_s=Sourced(value=lat, source="test"))


def comm_rows(r, phase=None):
    return [x for x in r.breakdown if x.bound == "communication" and (phase is None or x.phase == phase)]


def rows_named(r, op, phase):
    return [x for x in r.breakdown if x.op == op and x.phase == phase]


# --- collectives by hand ------------------------------------------------------------------


def test_allreduce_large_message_takes_ring():
    nv = tier(450e9, 0.47e-6)
    S = GiB
    # ring: launch + 2 (n-1) alpha + 2 (n-1)/n S / B  = 6.6e-6 + 14 x 0.47e-6 + 1.75 x 2^30 / 346.5e9
    #     = 6.6e-6 + 6.58e-6 + 5.422939e-3 = 5.436119e-3 s
    ring = LAUNCH + 2 * 7 * NV_A + 2 * 7 / 8 * S / NV_B
    # tree: launch + 2 ceil(log2 8) alpha + 2 S / B = 6.6e-6 + 6 x 0.47e-6 + 2 x 2^30 / 346.5e9 = 6.207064e-3 s
    tree = LAUNCH + 2 * 3 * NV_A + 2 * S / NV_B
    assert ring == pytest.approx(5.436118505e-3, rel=1e-9)
    assert tree == pytest.approx(6.207064006e-3, rel=1e-9)
    assert float(allreduce_s(S, 8, nv, OPTS)) == pytest.approx(ring, rel=1e-12)


def test_allreduce_small_message_takes_tree():
    nv = tier(450e9, 0.47e-6)
    S = 16384  # one decode token of a 8192-wide model in fp16
    # ring: 6.6e-6 + 14 x 0.47e-6 + 1.75 x 16384 / 346.5e9 = 6.6e-6 + 6.58e-6 + 8.27e-8 = 13.263e-6 s
    ring = LAUNCH + 2 * 7 * NV_A + 2 * 7 / 8 * S / NV_B
    # tree: 6.6e-6 + 6 x 0.47e-6 + 2 x 16384 / 346.5e9 = 6.6e-6 + 2.82e-6 + 9.46e-8 = 9.5146e-6 s: fewer hops win
    tree = LAUNCH + 2 * 3 * NV_A + 2 * S / NV_B
    assert ring == pytest.approx(13.26275e-6, rel=1e-6)
    assert tree == pytest.approx(9.514569e-6, rel=1e-6)
    assert float(allreduce_s(S, 8, nv, OPTS)) == pytest.approx(tree, rel=1e-12)


def test_other_collectives_by_hand():
    nv = tier(450e9, 0.47e-6)
    S = 64e6
    # all-gather / reduce-scatter / all-to-all: launch + (n-1) alpha + (n-1)/n S / B
    ag = LAUNCH + 7 * NV_A + 7 / 8 * S / NV_B
    assert float(allgather_s(S, 8, nv, OPTS)) == pytest.approx(ag, rel=1e-12)
    assert float(all_to_all_s(S, 8, nv, OPTS)) == pytest.approx(ag, rel=1e-12)
    # point-to-point: launch + alpha + S / B
    assert float(p2p_s(S, nv, OPTS)) == pytest.approx(LAUNCH + NV_A + S / NV_B, rel=1e-12)
    # one rank: nothing to exchange
    assert float(allreduce_s(S, 1, nv, OPTS)) == 0.0
    assert float(allgather_s(S, 1, nv, OPTS)) == 0.0
    # the options are honoured: no launch cost and the full link
    ideal = CommOptions(bandwidth=1.0, launch_s=0.0)
    assert float(allgather_s(S, 4, nv, ideal)) == pytest.approx(3 * NV_A + 0.75 * S / 450e9, rel=1e-12)


def test_host_staging_doubles_alpha_and_halves_bandwidth():
    host = tier(32e9, 1.0e-6, "host")
    S = GiB
    a, B = 2 * 1.0e-6, 0.77 * 32e9 / 2  # 2 us per hop, 12.32e9 B/s
    # 1 GiB over 8: ring = 6.6e-6 + 14 x 2e-6 + 1.75 x 2^30 / 12.32e9 = 0.152554745 s
    ring = LAUNCH + 14 * a + 1.75 * S / B
    assert ring == pytest.approx(0.152554745, rel=1e-8)
    assert float(allreduce_s(S, 8, host, OPTS)) == pytest.approx(ring, rel=1e-12)
    # the same as a peer-to-peer link with twice the latency and half the bandwidth
    same = tier(16e9, 2.0e-6)
    for size in (1e3, 1e6, 1e9):
        assert float(allreduce_s(size, 8, host, OPTS)) == pytest.approx(float(allreduce_s(size, 8, same, OPTS)),
                                                                        rel=1e-12)
    # 16 KiB over 8: ring 6.6e-6 + 28e-6 + 2.33e-6 = 36.93 us, tree 6.6e-6 + 12e-6 + 2.66e-6 = 21.26 us
    assert float(allreduce_s(16384, 8, host, OPTS)) == pytest.approx(LAUNCH + 6 * a + 2 * 16384 / B, rel=1e-12)
    assert float(allreduce_s(16384, 8, host, OPTS)) == pytest.approx(21.25974e-6, rel=1e-6)
    assert float(p2p_s(S, host, OPTS)) == pytest.approx(LAUNCH + a + S / B, rel=1e-12)


def test_hierarchical_allreduce_across_two_hgx_h100():
    sys2 = load_system("hgx-h100").with_nodes(2)
    S = GiB
    # reduce-scatter then all-gather inside each node (each an all-gather's cost over 8 on NVLink):
    #   6.6e-6 + 7 x 0.47e-6 + 7/8 x 2^30 / 346.5e9 = 9.89e-6 + 2.711469e-3
    intra = LAUNCH + 7 * NV_A + 7 / 8 * S / NV_B
    # all-reduce of S/8 across the 2 nodes on InfiniBand; for n = 2 ring and tree have the same
    # latency (2 x 1 hop) and ring sends half the bytes: 6.6e-6 + 2 x 2.7e-6 + 2^30 / 8 / 38.5e9
    inter = LAUNCH + 2 * IB_A + (S / 8) / IB_B
    expected = 2 * intra + inter
    assert expected == pytest.approx(8.940893258e-3, rel=1e-9)
    assert float(group_allreduce_s(S, 16, sys2, OPTS)) == pytest.approx(expected, rel=1e-12)
    # a group inside one node is a plain NVLink all-reduce
    assert float(group_allreduce_s(S, 8, sys2, OPTS)) == pytest.approx(float(allreduce_s(S, 8, sys2.intra_node, OPTS)))
    with pytest.raises(InfercastError, match="multiple of 8"):
        group_allreduce_s(S, 12, sys2, OPTS)


@settings(deadline=None, max_examples=60)
@given(size=st.floats(0, 1e11), n=st.integers(2, 256), bw=st.floats(1e8, 2e12), lat=st.floats(0, 1e-4),
       factor=st.floats(1, 1000), topology=st.sampled_from(["switch", "host", "torus"]))
def test_more_link_bandwidth_is_never_slower(size, n, bw, lat, factor, topology):
    slow, fast = tier(bw, lat, topology), tier(bw * factor, lat, topology)
    assert float(allreduce_s(size, n, fast, OPTS)) <= float(allreduce_s(size, n, slow, OPTS))
    assert float(allgather_s(size, n, fast, OPTS)) <= float(allgather_s(size, n, slow, OPTS))
    assert float(p2p_s(size, fast, OPTS)) <= float(p2p_s(size, slow, OPTS))
    # all-reduce is the faster of its two algorithms: never above either formula
    a, B = _stage(lat, bw, topology)
    ring = LAUNCH + 2 * (n - 1) * a + 2 * (n - 1) / n * size / B
    tree = LAUNCH + 2 * math.ceil(math.log2(n)) * a + 2 * size / B
    assert float(allreduce_s(size, n, slow, OPTS)) == pytest.approx(min(ring, tree), rel=1e-9, abs=1e-15)


def _stage(lat, bw, topology):
    return (2 * lat, 0.77 * bw / 2) if topology == "host" else (lat, 0.77 * bw)


@settings(deadline=None, max_examples=15)
@given(factor=st.floats(1, 100))
def test_faster_nvlink_never_slows_an_estimate(factor):
    base = load_system("hgx-h100")
    bw = base.intra_node.bandwidth_bytes_per_s_per_direction.value
    faster = base.model_copy(update={"intra_node": base.intra_node.model_copy(update={
        "bandwidth_bytes_per_s_per_direction": Sourced(value=bw * factor, source="test: scaled")})})
    slow = estimate("llama-2-70b", system=base, tp=4, batch=4, isl=512, osl=32)
    fast = estimate("llama-2-70b", system=faster, tp=4, batch=4, isl=512, osl=32)
    assert fast.ttft_s <= slow.ttft_s
    assert fast.tpot_s <= slow.tpot_s
    assert fast.e2e_latency_s <= slow.e2e_latency_s


@settings(deadline=None, max_examples=20)
@given(model=st.sampled_from(["llama-2-70b", "mixtral-8x7b"]),
       tps=st.lists(st.sampled_from([1, 2, 4, 8, 16]), min_size=2, max_size=2, unique=True))
def test_per_chip_weights_never_rise_with_tp(model, tps):
    lo, hi = sorted(tps)
    w = [estimate(model, system="hgx-h100", nodes=2, tp=t).memory.weights_bytes for t in (lo, hi)]
    assert w[1] <= w[0]


@settings(deadline=None, max_examples=25)
@given(model=st.sampled_from(["llama-2-70b", "llama-2-7b"]),
       pps=st.lists(st.integers(1, 32), min_size=2, max_size=2, unique=True))
def test_per_chip_weights_never_rise_with_pp(model, pps):
    lo, hi = sorted(pps)
    w = [estimate(model, system="hgx-h100", nodes=4, pp=p).memory.weights_bytes for p in (lo, hi)]
    assert w[1] <= w[0]


# --- tensor parallelism on LLaMA-2-70B ----------------------------------------------------


def test_llama2_70b_tensor_parallel_on_hgx_h100():
    runs = {tp: estimate("llama-2-70b", system="hgx-h100", tp=tp, **LLAMA70_WORKLOAD) for tp in (1, 2, 4, 8)}
    # 137.95 GB of FP16 weights do not fit 80 GB x 0.9; halves and smaller do
    assert not runs[1].memory.fits
    assert all(runs[tp].memory.fits for tp in (2, 4, 8))
    tpot = {tp: r.tpot_s for tp, r in runs.items()}
    assert tpot[1] > tpot[2] > tpot[4] > tpot[8]
    assert tpot[1] / tpot[8] < 8  # collectives and unsharded work keep the speed-up below linear
    share = {tp: r.communication_share["decode"] for tp, r in runs.items()}
    assert share[1] == 0 and not comm_rows(runs[1])
    assert share[2] < share[4] < share[8] < 1
    for tp in (2, 4, 8):
        assert runs[tp].plan.num_chips == tp and runs[tp].system == "hgx-h100"


def test_llama2_70b_tp8_allreduce_rows_by_hand():
    r = estimate("llama-2-70b", system="hgx-h100", tp=8, **LLAMA70_WORKLOAD)
    nvlink = load_system("hgx-h100").intra_node.name
    # all-reduces per pass: one after attention and one after the MLP in each of 80 layers, one after the
    # vocabulary-parallel embedding: 2 x 80 + 1 = 161
    count = 2 * 80 + 1
    (pre,) = rows_named(r, "allreduce", "prefill")
    (dec,) = rows_named(r, "allreduce", "decode")
    for row in (pre, dec):
        assert row.bound == "communication" and row.tier == nvlink and "NVLink" in row.tier and row.flops == 0
    # prefill message: 1024 tokens x 8192 hidden x 2 B = 16,777,216 B; ring wins:
    #   6.6e-6 + 14 x 0.47e-6 + 1.75 x 16,777,216 / 346.5e9 = 97.913e-6 s per all-reduce
    msg = 1024 * 8192 * 2
    assert pre.bytes == count * msg == 2_701_131_776
    assert pre.time_s == pytest.approx(count * (LAUNCH + 14 * NV_A + 1.75 * msg / NV_B), rel=1e-9)
    # decode: 127 steps x 161 all-reduces of 1 token x 8192 x 2 B = 16,384 B; tree wins at 9.5146 us each
    assert dec.bytes == 127 * count * 16384 == 335_003_648
    assert dec.time_s == pytest.approx(127 * count * (LAUNCH + 6 * NV_A + 2 * 16384 / NV_B), rel=1e-9)
    # the logits of the last position are gathered once per pass: 32,000 x fp32 = 128,000 B
    (logits,) = rows_named(r, "all_gather_logits", "decode")
    assert logits.bytes == 127 * 32000 * 4


def test_kv_heads_are_replicated_past_their_count():
    spec = load_model("llama-2-70b")  # 64 heads, 8 KV heads
    assert tp_shard(spec, Plan(tp=8)).num_kv_heads == 1
    assert tp_shard(spec, Plan(tp=16)).num_kv_heads == 1  # 8 KV heads over 16 chips: each holds one copy
    assert tp_shard(spec, Plan(tp=16)).num_heads == 4
    r8 = estimate("llama-2-70b", system="hgx-h100", tp=8, **LLAMA70_WORKLOAD)
    r16 = estimate("llama-2-70b", system="hgx-h100", nodes=2, tp=16, **LLAMA70_WORKLOAD)
    # (1024 + 128) tokens x 80 layers x 2 (K, V) x 1 KV head x 128 x 2 B = 47,185,920 B per chip either way
    assert r8.memory.kv_cache_bytes == r16.memory.kv_cache_bytes == 47_185_920
    assert r16.memory.weights_bytes < r8.memory.weights_bytes
    # the 16-way all-reduce is hierarchical over NVLink and InfiniBand
    (dec,) = rows_named(r16, "allreduce", "decode")
    assert "NVLink" in dec.tier and "InfiniBand" in dec.tier
    sys2 = load_system("hgx-h100").with_nodes(2)
    assert dec.time_s == pytest.approx(127 * 161 * float(group_allreduce_s(16384, 16, sys2, OPTS)), rel=1e-9)


# --- pipeline parallelism -----------------------------------------------------------------


def test_pipeline_stages_and_weights():
    spec = load_model("llama-2-70b")
    assert make_plan(spec, pp=2).stages == (40, 40)
    assert make_plan(spec, pp=3).stages == (27, 27, 26)
    assert make_plan(spec, pp=2, stages=(41, 39)).stages == (41, 39)
    # one layer: q, o 8192^2 each, k, v 8192 x 1024 each, gate/up/down 3 x 8192 x 28672, 2 norms
    layer = 2 * 8192**2 + 2 * 8192 * 1024 + 3 * 8192 * 28672 + 2 * 8192
    assert layer == 855_654_400
    embed = head = 32000 * 8192  # 262,144,000 each (untied)
    one = estimate("llama-2-70b", system="hgx-h100", **LLAMA70_WORKLOAD).memory.weights_bytes
    two = estimate("llama-2-70b", system="hgx-h100", pp=2, **LLAMA70_WORKLOAD)
    assert one == 2 * (80 * layer + embed + head + 8192)
    # the binding chip is the last stage's: 40 layers + final norm + head
    assert two.memory.weights_bytes == 2 * (40 * layer + head + 8192) == 68_976_656_384
    assert two.memory.weights_bytes == pytest.approx(one / 2, rel=0.001)
    s = stages_of(spec, make_plan(spec, pp=2))
    assert [x.weight_params for x in s] == [40 * layer + embed, 40 * layer + head + 8192]
    assert [(x.first, x.last, x.layers) for x in s] == [(True, False, 40), (False, True, 40)]
    uneven = estimate("llama-2-70b", system="hgx-h100", pp=2, pp_stages=(41, 39), **LLAMA70_WORKLOAD)
    assert uneven.plan.stages == (41, 39)
    assert uneven.memory.weights_bytes == 2 * (41 * layer + embed) == 70_687_948_800


def test_pipeline_adds_a_transfer_to_one_sequence():
    # MI300X (192 GB x 0.9 usable) holds LLaMA-2-70B FP16 on one chip, so pp=1 and pp=2 both fit
    one = estimate("llama-2-70b", system="mi300x-8", **LLAMA70_WORKLOAD)
    two = estimate("llama-2-70b", system="mi300x-8", pp=2, **LLAMA70_WORKLOAD)
    assert one.memory.fits and two.memory.fits and two.micro_batches == 1
    # one micro-batch visits the stages in turn: the same work plus the activations sent between them,
    # p2p of 1024 x 8192 x 2 B = 16,777,216 B over Infinity Fabric (448e9 x 0.77 B/s, 0.47 us hop)
    msg = 1024 * 8192 * 2
    p2p = LAUNCH + 0.47e-6 + msg / (0.77 * 448e9)
    assert p2p == pytest.approx(55.705e-6, rel=1e-4)
    assert two.ttft_s >= one.ttft_s
    assert two.ttft_s == pytest.approx(one.ttft_s + p2p, rel=1e-9)
    # the breakdown is the busiest chip's; with the longer first stage that chip sends the activations
    first_heavy = estimate("llama-2-70b", system="mi300x-8", pp=2, pp_stages=(41, 39), **LLAMA70_WORKLOAD)
    (row,) = rows_named(first_heavy, "p2p", "prefill")
    assert row.bytes == msg and row.time_s == pytest.approx(p2p, rel=1e-12) and "Infinity Fabric" in row.tier
    (row,) = rows_named(first_heavy, "p2p", "decode")
    assert row.bytes == 127 * 8192 * 2


def test_pipeline_send_between_nodes_uses_the_network():
    spec, sys2 = load_model("llama-2-70b"), load_system("hgx-h100").with_nodes(2)
    p = Precision()
    plan = make_plan(spec, tp=8, pp=2)  # stage 0 on node 0, stage 1 on node 1
    first, last = stages_of(spec, plan)
    (send,) = [op for op in comm_ops(spec, plan, first, sys2, 1, 1024, p, OPTS) if op.name == "p2p"]
    assert send.tier == sys2.inter_node.name
    assert float(send.comm_s) == pytest.approx(LAUNCH + IB_A + 1024 * 8192 * 2 / IB_B, rel=1e-12)
    assert not [op for op in comm_ops(spec, plan, last, sys2, 1, 1024, p, OPTS) if op.name == "p2p"]
    plan4 = make_plan(spec, tp=4, pp=2)  # both stages inside node 0
    (send,) = [op for op in comm_ops(spec, plan4, stages_of(spec, plan4)[0], sys2, 1, 1024, p, OPTS)
               if op.name == "p2p"]
    assert send.tier == sys2.intra_node.name


def test_micro_batches_keep_both_stages_busy():
    # HGX H200: 141 GB x 0.9 holds half of LLaMA-2-70B FP16 plus a batch of 8
    kw = {"system": "hgx-h200", "pp": 2, "batch": 8, "isl": 1024, "osl": 128}
    two = estimate("llama-2-70b", micro_batches=2, **kw)
    one = estimate("llama-2-70b", micro_batches=1, **kw)
    assert two.memory.fits and one.memory.fits
    assert two.micro_batches == 2 and one.micro_batches == 1
    assert two.decode_tokens_per_s > one.decode_tokens_per_s
    assert estimate("llama-2-70b", **kw).micro_batches == 2  # default: min(pp, batch)


# --- data, expert and sequence parallelism; overlap ---------------------------------------


def test_data_parallel_replicas_add_throughput_not_latency():
    one = estimate("llama-2-70b", system="hgx-h100", tp=4, batch=8, isl=1024, osl=128)
    two = estimate("llama-2-70b", system="hgx-h100", tp=4, dp=2, batch=16, isl=1024, osl=128)
    assert two.plan.num_chips == 8
    assert two.tpot_s == pytest.approx(one.tpot_s, rel=1e-12)
    assert two.ttft_s == pytest.approx(one.ttft_s, rel=1e-12)
    assert two.throughput_tokens_per_s == pytest.approx(2 * one.throughput_tokens_per_s, rel=1e-12)
    assert two.memory.kv_cache_bytes == one.memory.kv_cache_bytes  # each replica holds its own 8 sequences
    assert two.memory.max_batch == 2 * one.memory.max_batch


def test_expert_parallel_mixtral():
    kw = {"system": "hgx-h100", "batch": 8, "isl": 512, "osl": 64, "comm": OPTS}
    across = estimate("mixtral-8x7b", tp=1, dp=8, ep=8, **kw)
    inside = estimate("mixtral-8x7b", tp=8, ep=8, **kw)
    replicas = estimate("mixtral-8x7b", tp=1, dp=8, **kw)
    assert {r.op for r in comm_rows(across)} == {"all_to_all"}
    (a2a,) = rows_named(across, "all_to_all", "prefill")
    # per pass: dispatch and combine in each of 32 MoE layers; this chip holds 1 sequence x 512 tokens
    # x top-2 experts x 4096 x 2 B = 8,388,608 B of token-expert rows
    held = 512 * 2 * 4096 * 2
    assert a2a.bytes == 2 * 32 * held
    assert a2a.time_s == pytest.approx(2 * 32 * (LAUNCH + 7 * NV_A + 7 / 8 * held / NV_B), rel=1e-9)
    assert "NVLink" in a2a.tier
    # experts split inside the tensor-parallel group need no all-to-all
    assert not rows_named(inside, "all_to_all", "prefill") and not rows_named(inside, "all_to_all", "decode")
    assert rows_named(inside, "allreduce", "decode")
    # 8 experts over 8 chips: each holds one expert per layer instead of all eight
    assert across.memory.weights_bytes < replicas.memory.weights_bytes / 4
    assert across.memory.fits and not replicas.memory.fits


def test_sequence_parallel_splits_each_allreduce():
    kw = {"system": "hgx-h100", "tp": 4, "batch": 8, "isl": 1024, "osl": 128, "comm": OPTS}
    plain = estimate("llama-2-70b", **kw)
    sp = estimate("llama-2-70b", sequence_parallel=True, **kw)
    assert sp.plan.sequence_parallel
    assert not rows_named(sp, "allreduce", "prefill") and not rows_named(sp, "allreduce", "decode")
    (ar,) = rows_named(plain, "allreduce", "prefill")
    (rs,) = rows_named(sp, "reduce_scatter", "prefill")
    (ag,) = rows_named(sp, "all_gather", "prefill")
    assert rs.bytes == ag.bytes == ar.bytes == 161 * 8 * 1024 * 8192 * 2
    # prefill messages (128 MiB) are bandwidth-bound: the ring all-reduce is exactly a reduce-scatter plus an
    # all-gather, 6 alpha + 1.5 S / B, in one launch; split, it pays one more launch per all-reduce
    assert rs.time_s + ag.time_s == pytest.approx(ar.time_s + 161 * LAUNCH, rel=1e-9)
    assert rs.time_s + ag.time_s == pytest.approx(ar.time_s, rel=0.02)
    # decode: each is an all-gather of one token per sequence, 8 x 8192 x 2 = 131,072 B over 4 chips
    (rs,) = rows_named(sp, "reduce_scatter", "decode")
    (ag,) = rows_named(sp, "all_gather", "decode")
    each = LAUNCH + 3 * NV_A + 0.75 * 131072 / NV_B
    assert rs.time_s == ag.time_s == pytest.approx(127 * 161 * each, rel=1e-9)


def test_full_overlap_hides_every_collective():
    for kw in ({"tp": 4}, {"tp": 4, "sequence_parallel": True}, {"pp": 2, "pp_stages": (41, 39)}, {"tp": 2, "pp": 2}):
        r = estimate("llama-2-70b", system="hgx-h100", comm={"overlap": 1.0}, batch=8, isl=1024, osl=128, **kw)
        rows = [x for x in comm_rows(r) if x.op != "pipeline_wait"]
        assert rows and all(x.time_s == 0 for x in rows)
    a2a = estimate("mixtral-8x7b", system="hgx-h100", tp=1, dp=8, ep=8, batch=8, comm={"overlap": 1.0})
    assert rows_named(a2a, "all_to_all", "decode")[0].time_s == 0
    with pytest.raises(InfercastError, match="overlap"):
        estimate("llama-2-70b", system="hgx-h100", tp=4, comm={"overlap": 1.5})


# --- plan search and chip counts ----------------------------------------------------------


def test_candidate_plans():
    spec = load_model("llama-2-70b")
    assert [(p.tp, p.pp) for p in candidate_plans(spec, 8, 8)] == [(1, 8), (2, 4), (4, 2), (8, 1)]
    assert [(p.tp, p.pp) for p in candidate_plans(spec, 8, 4)] == [(1, 8), (2, 4), (4, 2)]
    # 7 chips: tp = 7 does not divide 64 heads, so only pp = 7
    assert [(p.tp, p.pp) for p in candidate_plans(spec, 7, 8)] == [(1, 7)]


def test_auto_picks_the_fastest_fitting_plan():
    kw = {"system": "hgx-h100", "batch": 8, "isl": 1024, "osl": 128}
    best = estimate("llama-2-70b", auto=True, **kw)
    assert best.memory.fits and best.plan.num_chips == 8
    for tp, pp in ((8, 1), (4, 2), (2, 4), (1, 8)):
        other = estimate("llama-2-70b", tp=tp, pp=pp, **kw)
        assert best.e2e_latency_s <= other.e2e_latency_s
    with pytest.raises(InfercastError, match="--auto: no tensor/pipeline plan"):
        # 4 x 24 GB cannot hold 138 GB of FP16 weights in any tp x pp split
        estimate("llama-2-70b", system="server-8x-rtx-4090", num_chips=4, auto=True, batch=8, isl=1024, osl=128)


def test_min_chips_rtx_4090_and_405b():
    # LLaMA-2-70B FP16 on 24 GB cards: 8 (derivation in tests/test_memory.py)
    m = estimate("llama-2-70b", system="server-8x-rtx-4090", batch=1, isl=128, osl=128).memory
    assert not m.fits and m.min_chips == 8 and m.min_plan in ({"tp": 1, "pp": 8, "dp": 1}, {"tp": 8, "pp": 1, "dp": 1})
    for kw in ({"tp": 8}, {"pp": 8}):
        assert estimate("llama-2-70b", system="server-8x-rtx-4090", batch=1, isl=128, osl=128, **kw).memory.fits
    # LLaMA-3.1-405B FP16: 405,853,388,800 params x 2 B = 811.7 GB of weights; a chip holds at most
    # 80 GB x 0.9 - 1 GiB = 70.93 GB of them, so at least ceil(11.44) = 12 chips
    total, _ = load_model("llama-3.1-405b").params()
    bound = math.ceil(2 * total / (0.9 * 80e9 - GiB))
    assert bound == 12
    m = estimate("llama-3.1-405b", "h100-sxm", batch=1, isl=128, osl=128).memory
    assert m.min_chips >= bound
    n, plan = m.min_chips, m.min_plan
    assert plan["tp"] * plan["pp"] == n
    r = estimate("llama-3.1-405b", "h100-sxm", num_chips=n, batch=1, isl=128, osl=128, **plan)
    assert r.memory.fits and r.plan.num_chips == n


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "kwargs", "message"), [
    ("llama-2-7b", {"tp": 3}, r"--tp 3 does not divide llama-2-7b's 32 attention heads"),
    # 48 heads, 8 KV heads: 6 divides 48, but neither divides 8 nor is a multiple of it
    ("mixtral-8x22b", {"tp": 6}, r"--tp 6: mixtral-8x22b's 8 KV heads can be neither split nor replicated"),
    ("llama-2-7b", {"pp": 33}, r"--pp 33 exceeds llama-2-7b's 32 layers"),
    ("llama-2-7b", {"ep": 2}, r"--ep 2: llama-2-7b is a dense model"),
    ("mixtral-8x7b", {"ep": 3, "dp": 3}, r"--ep 3 does not divide mixtral-8x7b's 8 experts"),
    ("mixtral-8x7b", {"ep": 4, "dp": 2}, r"--ep 4: .*ep must divide tp"),
    ("llama-2-70b", {"tp": 8, "pp": 2}, r"tp x pp x dp = 16 chips but system hgx-h100 has 8; use --nodes"),
    ("llama-2-70b", {"tp": 16}, r"tp x pp x dp = 16 chips .*--nodes"),
    ("llama-2-70b", {"pp": 2, "pp_stages": (40, 39)}, r"--pp-stages 40,39: need 2 positive layer counts summing to 80"),
    ("llama-2-70b", {"pp": 2, "pp_stages": (80, 0)}, r"--pp-stages 80,0"),
    ("llama-2-70b", {"pp": 3, "pp_stages": (40, 40)}, r"--pp-stages 40,40: need 3"),
    ("llama-2-70b", {"sequence_parallel": True}, r"--sequence-parallel needs --tp greater than 1"),
    ("llama-2-70b", {"pp": 2, "batch": 2, "micro_batches": 3}, r"--micro-batches 3 exceeds the 2 sequences"),
    ("llama-2-70b", {"hardware": "a100-sxm-80gb"}, r"--hardware a100-sxm-80gb conflicts with --system hgx-h100"),
    ("llama-2-70b", {"num_chips": 16}, r"--num-chips 16: system hgx-h100 has 8; add --nodes"),
    ("llama-2-70b", {"tp": 0}, r"--tp must be a whole number"),
    ("llama-2-70b", {"nodes": 0}, r"--nodes must be a whole number"),
])
def test_bad_plans_are_one_clear_error(model, kwargs, message):
    kwargs = {"system": "hgx-h100", **kwargs}
    with pytest.raises(InfercastError, match=message):
        estimate(model, **kwargs)


def test_no_scale_out_where_there_is_no_network():
    with pytest.raises(InfercastError, match="--nodes 2: system tpu-v5e-256 has no inter-node link"):
        estimate("llama-2-7b", system="tpu-v5e-256", nodes=2)


def test_default_system_for_a_chip():
    r = estimate("llama-2-70b", "h100-sxm", num_chips=8, tp=8)
    assert r.system == "h100-sxm-x8" and r.hardware == "h100-sxm"
    assert "NVLink" in rows_named(r, "allreduce", "decode")[0].tier
    r = estimate("llama-2-7b", "rtx-4090", tp=2)  # num_chips defaults to the plan's 2
    assert r.system == "rtx-4090-x2"
    assert "through host memory" in rows_named(r, "allreduce", "decode")[0].tier
    assert load_chip("rtx-4090").interconnect is None


# Sequence parallelism across nodes runs its reduce-scatter and all-gather hierarchically, like the
# all-reduce (a flat 16-way ring on InfiniBand cost ~6x before this was fixed).
def test_sequence_parallel_across_nodes_is_hierarchical_too():
    kw = {"system": "hgx-h100", "nodes": 2, "tp": 16, "batch": 8, "isl": 1024, "osl": 128}
    plain = estimate("llama-2-70b", **kw)
    sp = estimate("llama-2-70b", sequence_parallel=True, **kw)
    (ar,) = rows_named(plain, "allreduce", "prefill")
    (rs,) = rows_named(sp, "reduce_scatter", "prefill")
    (ag,) = rows_named(sp, "all_gather", "prefill")
    # bandwidth-bound 128 MiB messages: RS + AG should cost the all-reduce plus one launch per collective
    assert rs.time_s + ag.time_s == pytest.approx(ar.time_s, rel=0.1)
