"""Framework profiles: loading, versions, the measured data's alias table, and what a profile changes in a
deployment (decode kernels under CUDA graphs, the pre-XQA attention, the custom all-reduce's floor, the
engine's defaults)."""

from __future__ import annotations

import csv
import subprocess
import sys
from importlib import resources

import pytest

from infercast import InfercastError, estimate, resolve
from infercast.framework import GENERIC, framework_names, framework_of_text, load_framework, resolve_framework
from infercast.parallel import allreduce_s
from infercast.system import default_system

PROFILES = ("generic", "vllm", "sglang", "trtllm", "llamacpp", "pytorch-eager", "atom", "optimum-habana", "jetstream",
            "neuron", "mlc")


def test_every_profile_the_issue_names_ships_and_loads():
    assert set(framework_names()) == set(PROFILES) and framework_names()[0] == GENERIC
    for name in PROFILES:
        fw = load_framework(name)
        p = fw.at(None)
        for figure in (p.engine.max_num_seqs, p.engine.max_num_batched_tokens, p.engine.gpu_memory_utilization):
            assert figure.source and (figure.note or not figure.assumed)
        if p.allreduce.implementation != "nccl":
            assert all(f.source for f in p.allreduce.latency_s_by_tp.values())


def test_versions_apply_their_changes_in_order():
    # TensorRT-LLM: masked MHA before XQA (0.7), CUDA graphs with the PyTorch backend (1.0)
    assert resolve_framework("trtllm@0.6.1").profile.attention.value == "flash-per-head"
    assert resolve_framework("trtllm@0.7").profile.attention.value == "flash"
    assert not resolve_framework("trtllm@0.7.1").profile.cuda_graphs.value
    assert resolve_framework("trtllm@1.3.0rc14").profile.cuda_graphs.value
    assert resolve_framework("trtllm").profile.cuda_graphs.value  # no version: the latest
    # SGLang 0.5.6 replays prefill from piecewise CUDA graphs
    assert not resolve_framework("sglang@0.5.5").profile.prefill_graphs.value
    assert resolve_framework("sglang@0.5.12").profile.prefill_graphs.value
    assert resolve_framework("vllm@0.6").profile.engine.chunked_prefill.value is False
    assert resolve_framework("vllm@0.10").profile.engine.chunked_prefill.value is True


@pytest.mark.parametrize("value, message", [
    ("sglng", "unknown framework 'sglng' (did you mean sglang?)"),
    ("trtllm@latest", "--framework trtllm@latest: a version is dotted numbers"),
    ("aliases", "unknown framework 'aliases'"),
])
def test_a_bad_framework_is_one_line(value, message):
    with pytest.raises(InfercastError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        resolve_framework(value)


def _bundled_rows():
    text = (resources.files("infercast") / "catalog" / "measured" / "public.csv").read_text()
    return list(csv.DictReader(text.splitlines()))


def test_every_framework_text_of_the_data_maps_onto_a_profile():
    # every text but ExLlama's and SAX's names a profile; those two run as generic and say so
    for row in _bundled_rows():
        date = next((w[5:] for w in row["notes"].split() if w.startswith("date=")), None)
        ref, note = framework_of_text(row["framework"], date)
        if row["framework"].startswith(("ExLlama", "SAX")):
            assert ref.name == GENERIC and "not in the alias table" in note
        else:
            assert ref.name != GENERIC, row["framework"]
    # image tags give the version; a row without one takes it from its date
    assert framework_of_text("SGLang (lmsysorg/sglang:v0.5.9-cu130)")[0].label == "sglang@0.5.9"
    assert framework_of_text("TensorRT-LLM (trtllm-serve) (nvcr.io/nvidia/tensorrt-llm/release:1.3.0rc14)")[0].label \
        == "trtllm@1.3.0"
    assert framework_of_text("SGLang (InferenceX, image not recorded)", "2025-11-10")[0].label == "sglang@0.5.5"
    assert framework_of_text("SGLang (InferenceX, image not recorded)", "2026-03-02")[0].label == "sglang@0.5.9"
    assert framework_of_text("TensorRT-LLM v0.6.1 gptSessionBenchmark")[0].label == "trtllm@0.6.1"


def test_the_custom_all_reduce_floor_replaces_nccls_latency_terms():
    # SGLang's custom all-reduce measures 5.9 us at TP8 on H100 (SGLang PR #2904): a decode all-reduce of
    # 8 tokens x 8192 x 2 B = 131,072 B costs 5.9 us + 2 x 7/8 x 131,072 B / (450 GB/s x comm bandwidth)
    sc = resolve("llama-2-70b", system="hgx-h100", tp=8, framework="sglang")
    assert sc.comm.allreduce_floor_s == 5.9e-6
    tier = default_system(sc.chip, 8).tier_for(8)
    size = 8 * 8192 * 2
    want = 5.9e-6 + 2 * 7 / 8 * size / (tier.bandwidth_bytes_per_s_per_direction.value * sc.comm.bandwidth)
    assert allreduce_s(size, 8, tier, sc.comm) == pytest.approx(want)
    generic = resolve("llama-2-70b", system="hgx-h100", tp=8)
    assert generic.comm.allreduce_floor_s is None  # NCCL: launch + ring/tree alpha-beta
    assert allreduce_s(size, 8, tier, generic.comm) > allreduce_s(size, 8, tier, sc.comm)


def test_pre_xqa_decode_reads_every_kv_head_once_per_query_head():
    # LLaMA-2-70B at TP4 holds 2 of its 8 KV heads and 16 of its 64 query heads a chip: TensorRT-LLM 0.6.1's
    # generation kernel reads each K/V head for each of its 8 query heads, 8x the K/V bytes of a GQA kernel
    old = estimate("llama-2-70b", "h100-sxm", num_chips=4, tp=4, batch=64, isl=2048, osl=128, dtype="fp8",
                   framework="trtllm@0.6.1")
    new = estimate("llama-2-70b", "h100-sxm", num_chips=4, tp=4, batch=64, isl=2048, osl=128, dtype="fp8",
                   framework="trtllm@0.7")

    def kv_read(e, phase):
        return next(r for r in e.breakdown if r.op == "attention" and r.phase == phase).bytes

    # decode bytes: per sequence and step, 8x the cached K/V (the new token's K/V and the query are the same)
    assert kv_read(old, "decode") / kv_read(new, "decode") == pytest.approx(8, rel=0.01)
    assert kv_read(old, "prefill") == kv_read(new, "prefill")  # the context phase was GQA-aware already
    assert old.tpot_s > 1.5 * new.tpot_s


def test_cuda_graphs_change_the_decode_kernels_and_prefill_graphs_the_prefill():
    # one decode step: every kernel at the graph's per-kernel time instead of a launch
    eff = {"kernel_overhead_s": 20e-6, "graph_kernel_overhead_s": 2e-6, "step_overhead_s": 0.0}
    kw = dict(model="llama-3-8b", hardware="h100-sxm", batch=1, isl=127, osl=2, efficiency=eff)
    eager = estimate(**kw, framework="pytorch-eager")
    graphed = estimate(**kw, framework="sglang@0.5.5")
    piecewise = estimate(**kw, framework="sglang@0.5.9")
    # a step's kernel executions: 32 layers x (attn_norm, qkv_proj, rope, attention, out_proj, mlp_norm,
    # mlp_gate_up, mlp_act, mlp_down, 2 residual adds) + embedding, final norm, LM head, sampling = 356
    n = 32 * 11 + 4
    assert eager.tpot_s - graphed.tpot_s == pytest.approx(n * 18e-6, rel=1e-6)
    assert graphed.ttft_s == eager.ttft_s  # 0.5.5 launches the prefill's kernels
    assert piecewise.ttft_s == pytest.approx(eager.ttft_s - n * 18e-6, rel=1e-6)
    assert piecewise.tpot_s == graphed.tpot_s


def test_the_engine_defaults_come_from_the_profile():
    from infercast.serving.server import server

    assert server("llama-3-8b", "h100-sxm").config.max_num_seqs == 256
    srv = server("llama-3-8b", "h100-sxm", framework="trtllm@1.0")
    assert srv.config.max_num_seqs == 8192 and srv.budget == 8192
    # TensorRT-LLM gives its KV cache 90% of what is free after the weights (16.06 GB), the runtime (1 GiB) and
    # the reservation of one step (8192 tokens' activations and 8192 sequences' fp32 logits, 8192 x 128,256 x 4 =
    # 4.20 GB): the engine's share of the 80 GiB is (fixed + 0.9 (80 GiB - fixed)) / 80 GiB
    from infercast.memory import need

    sc = srv.deployment
    fixed = need(sc.loads[0], 1.0, 8192.0, 0.0, sc.memory).total_bytes
    assert fixed == pytest.approx(16.06e9 + 2**30 + 4.20e9 + 8192 * sc.loads[0].act_bytes_per_token
                                  + 8192 * sc.loads[0].comm_bytes_per_token, rel=1e-3)
    cap = 80 * 2**30
    assert sc.memory.gpu_memory_utilization == pytest.approx((fixed + 0.9 * (cap - fixed)) / cap, rel=1e-12)
    assert sc.memory.gpu_memory_utilization == pytest.approx(0.9255, abs=1e-4)
    given = server("llama-3-8b", "h100-sxm", framework="trtllm@1.0", memory={"gpu_memory_utilization": 0.8})
    assert given.deployment.memory.gpu_memory_utilization == 0.8  # a share the user gives stands
    assert server("llama-3-8b", "h100-sxm", framework="trtllm", engine={"max_num_seqs": 64}).config.max_num_seqs == 64
    v0 = server("llama-3-8b", "h100-sxm", framework="vllm@0.6")
    assert not v0.config.chunked_prefill and v0.budget == 8192  # prefill-first: max(max-model-len, 2048)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from infercast.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_takes_a_framework_and_refuses_an_unknown_one():
    ok = _cli("estimate", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--framework", "sglang@0.5.9",
              "--output", "json")
    assert ok.returncode == 0, ok.stderr
    assert '"framework": "sglang@0.5.9"' in ok.stdout
    bad = _cli("estimate", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--framework", "tensorrt")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "--framework: unknown framework 'tensorrt'" in bad.stderr
    assert all(name in bad.stderr for name in PROFILES)  # the line names every known profile
    sim = _cli("simulate", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--framework", "vlm", "--offline",
               "--num-prompts", "4", "--isl", "16", "--osl", "4")
    assert sim.returncode == 2 and sim.stderr.count("\n") == 1 and "--framework: unknown framework 'vlm'" in sim.stderr
    shown = _cli("frameworks", "show", "trtllm@0.6.1", "--output", "json")
    assert shown.returncode == 0 and '"value": "flash-per-head"' in shown.stdout



def test_a_framework_runs_only_on_the_vendors_it_has_backends_for():
    from infercast.hardware import chip_ids, load_chip

    vendors = {load_chip(c).vendor for c in chip_ids()}
    for name in framework_names():  # every vendor a profile names is a catalog chip's vendor (no typo excludes one)
        fw = load_framework(name)
        assert (fw.runs_on is None) == (name == GENERIC), name
        if fw.runs_on is not None:
            assert set(fw.runs_on.vendors) <= vendors and fw.runs_on.source, name
    # TensorRT-LLM is CUDA-only, ATOM is ROCm-only: a deployment of either on the other vendor's chip is refused
    # in one line naming --framework and the frameworks that do run there
    with pytest.raises(InfercastError, match=r"--framework trtllm: TensorRT-LLM runs on NVIDIA chips .*mi300x is "
                                             r"AMD's: use one that runs on it \(atom, .*sglang, vllm\)"):
        resolve("llama-3-8b", "mi300x", framework="trtllm")
    with pytest.raises(InfercastError, match=r"--framework atom@0.1: AMD ATOM runs on AMD chips"):
        resolve("llama-3-8b", "h100-sxm", framework="atom@0.1")
    with pytest.raises(InfercastError, match=r"Optimum Habana\) runs on Intel \(Habana\) chips"):
        resolve("llama-3-8b", system="hgx-h100", framework="optimum-habana")
    assert resolve("llama-3-8b", "gaudi3", framework="optimum-habana").framework.name == "optimum-habana"
    assert resolve("llama-3-8b", "tpu-v6e", framework="vllm").framework.name == "vllm"
    bad = _cli("estimate", "--model", "llama-3-8b", "--hardware", "mi300x", "--framework", "trtllm")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: --framework trtllm")

def test_validate_runs_an_unknown_framework_text_as_generic_and_says_so(tmp_path):
    # a llama.cpp decode row whose framework column names an engine the alias table does not know
    text = (resources.files("infercast") / "catalog" / "measured" / "public.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    row = next(r for r in rows if r["id"] == "llamacpp-rtx-4090-llama1-7b-f16-tg")
    data = tmp_path / "one.csv"
    with data.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        w.writeheader()
        w.writerow({**row, "framework": "FooServe 2.1"})
    got = _cli("validate", "--data", str(data), "--output", "json")
    assert got.returncode == 0, got.stderr
    import json

    (result,) = json.loads(got.stdout)["rows"]
    assert result["predicted"] is not None
    assert "framework text 'FooServe 2.1' is not in the alias table: run as generic" in result["note"]
