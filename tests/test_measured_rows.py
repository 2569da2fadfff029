"""How a row of the measured CSV is read: its deployment (expert parallelism and data-parallel attention from
the notes, the framework column, an MoE model's FP4 experts), its run (closed loop, lengths, requests, dataset
defaults, beams), its statistic and its constraint."""

from __future__ import annotations

import csv
from importlib import resources

import numpy as np
import pytest

from infercast import InfercastError
from infercast.serving.scenarios import (DATASET_LENGTHS, parse_constraint, predict_serving_row, row_deployment,
                                         row_run, statistic)


def _rows() -> dict[str, dict[str, str]]:
    text = (resources.files("infercast") / "catalog" / "measured" / "public.csv").read_text()
    return {r["id"]: r for r in csv.DictReader(text.splitlines())}


ROWS = _rows()


def test_inferencex_notes_give_expert_parallelism_and_dp_attention():
    options, said = row_deployment(ROWS["ix-b200-sglang-dsr1-fp4-tp4ep4-1k8k-c128-tpot"])
    assert (options["tp"], options["ep"], options["dp"]) == (4, 4, 1)
    # FP4 checkpoints of an MoE model: NVFP4 experts on NVIDIA, the rest FP8 (block-scaled)
    assert (options["expert_dtype"], options["weight_dtype"]) == ("nvfp4", "fp8")
    dp_attention = next(r for r in ROWS.values() if "dp-attention=true" in r["notes"] and r["num_chips"] == "8")
    options, said = row_deployment(dp_attention)
    assert (options["tp"], options["dp"], options["ep"]) == (1, 8, 8)
    assert any("attention data-parallel over 8 GPUs" in s for s in said)
    options, _ = row_deployment(ROWS["trtllm-1x-03e27c7-b200-dsr1-dep4-1000-1000-tput"])  # DEP4
    assert (options["tp"], options["dp"], options["ep"]) == (1, 4, 4)
    options, _ = row_deployment(ROWS["trtllm-1x-03e27c7-b200-gptoss120b-dep2-1000-1000-tput"])
    assert (options["expert_dtype"], options["weight_dtype"]) == ("mxfp4", "bf16")  # gpt-oss's own checkpoint
    # its MXFP4 is weight-only: the row's assumed fp4 activations are read as bf16 (W4A16 experts)
    assert options["act_dtype"] == "bf16" and ROWS["trtllm-1x-03e27c7-b200-gptoss120b-dep2-1000-1000-tput"][
        "act_dtype"] == "fp4"
    # a checkpoint quantized with its activations (DeepSeek's NVFP4 experts) keeps the row's fp4 activations
    assert row_deployment(ROWS["trtllm-1x-03e27c7-b200-dsr1-dep4-1000-1000-tput"])[0]["act_dtype"] == "fp4"
    mi355 = next(r for r in ROWS.values() if r["hardware"] == "mi355x" and r["weight_dtype"] == "fp4")
    assert row_deployment(mi355)[0]["expert_dtype"] == "mxfp4"


def test_a_modelopt_checkpoint_of_unstated_kv_dtype_runs_an_fp8_kv_cache():
    # the 03e27c7 overview's Llama-3.3-70B rows write bf16 for a KV dtype the doc does not state; the v1.0
    # overview's rows, on the same nvidia/Llama-3.3-70B-Instruct-FP4 checkpoint, write fp8
    row = ROWS["trtllm-1x-03e27c7-b200-llama33-70b-tp1-1000-1000-tput"]
    assert row["kv_dtype"] == "bf16"
    options, said = row_deployment(row)
    assert options["kv_cache_dtype"] == "fp8" and any("ModelOpt" in s for s in said)
    assert row_deployment(ROWS["trtllm-v1.0-b200-llama3.3-70b-tp1-1000-1000-tput"])[0]["kv_cache_dtype"] == "fp8"
    # a row that states its KV dtype keeps it, whatever checkpoint it names
    stated = dict(row, notes=row["notes"].replace("KV dtype not stated", "KV dtype bf16 per the doc"))
    assert row_deployment(stated)[0]["kv_cache_dtype"] == "bf16"
    # a Gaudi row of Intel Neural Compressor's FP8 flow: the flow quantizes the KV cache too. LLaMA-2-7B's batch of
    # 163 x (128 + 2048) tokens holds 163 x 2176 x 524,288 B = 186 GB of bf16 K/V, which no 96 GiB Gaudi 2 holds
    gaudi = ROWS["intel-gaudi2-syn1.18-llama-2-7b-hpu1-b163-128-2048-tput"]
    assert gaudi["kv_dtype"] == "bf16" and 163 * 2176 * 524_288 > 96 * 2**30
    options, said = row_deployment(gaudi)
    assert options["kv_cache_dtype"] == "fp8" and any("Neural Compressor" in s for s in said)
    oci = next(r for r in ROWS.values() if r["id"].startswith("oci-mi300x") and r["kv_dtype"] == "bf16")
    assert row_deployment(oci)[0]["kv_cache_dtype"] == "bf16"  # KV not stated, but neither flow is named


def test_inferencex_runs_are_closed_loops_of_ten_times_the_concurrency():
    row = ROWS["ix-b200-sglang-dsr1-fp4-tp4ep4-1k8k-c128-tpot"]
    run, said = row_run(row)
    assert (run.kind, run.concurrency, run.requests, run.uniform) == ("concurrency", 128, 1280, True)
    reqs = run.draw()
    # lengths uniform in [0.8 L, L]: 819 to 1024 prompt tokens, 6553 to 8192 output tokens
    assert reqs.isl.min() >= 819 and reqs.isl.max() <= 1024 and reqs.osl.min() >= 6553 and reqs.osl.max() <= 8192
    assert abs(reqs.isl.mean() - 0.9 * 1024) < 15 and np.all(reqs.arrival_s == 0)
    assert statistic(row) == "median"  # InferenceX's notes: 'MEDIAN TPOT over requests'
    assert statistic(ROWS["ix-b200-sglang-dsr1-fp4-tp4ep4-1k8k-c128-outtput"]) == "mean"  # a throughput row
    assert statistic({"notes": "statistic=p99"}) == "p99" and statistic({"notes": ""}) == "mean"
    with pytest.raises(InfercastError, match="column notes: statistic=p95"):
        statistic({"notes": "statistic=p95"})


def test_the_perf_overview_states_its_requests_by_length_class():
    assert row_run(ROWS["trtllm-1x-03e27c7-b200-dsr1-dep4-1000-1000-tput"])[0].requests == 3000
    assert row_run(ROWS["trtllm-1x-03e27c7-b200-dsr1-dep4-1024-8192-tput"])[0].requests == 1500
    assert row_run(ROWS["trtllm-1x-03e27c7-b200-dsr1-dep4-1024-32768-tput"])[0].requests == 1000


def test_mlperf_gptj_takes_its_dataset_means_and_four_beams():
    # CNN/DailyMail: 781 words an article and 56 a summary (See et al. 2017) at 0.75 words a token
    assert DATASET_LENGTHS["gpt-j-6b"][:2] == (1041, 75)
    run, said = row_run(ROWS["mlperf-v3.1-intel-gaudi2x8-gptj-99-offline"])
    assert (run.isl, run.osl, run.beams, run.kind) == (1041, 75, 4, "offline")
    assert any("lengths not stated" in s for s in said) and any("4 beams" in s for s in said)
    run, _ = row_run(ROWS["mlperf-v3.1-google-tpu-v5e-4-gptj-99-server"])
    assert run.kind == "server" and dict(run.slo) == {"e2el_p99": 20000.0}


def test_constraints_parse_in_si_units_or_name_the_column():
    assert parse_constraint("p99_ttft_s<=2;p99_tpot_s<=0.2") == {"ttft_p99": 2000.0, "tpot_p99": 200.0}
    assert parse_constraint(" mean_e2e_latency_s <= 20 ") == {"e2el_mean": 20000.0}
    assert parse_constraint("p50_itl_s<=0.05") == {"itl_p50": 50.0}
    for bad in ("ttft_p99:2000", "p99_ttft_s<2", "p95_ttft_s<=2", "p99_ttft_s<=-1", "p99_ttft_s<=2;", "p99_ttft<=2"):
        with pytest.raises(InfercastError, match=r"column constraint: .* expected STAT_METRIC<=VALUE"):
            parse_constraint(bad)


def test_a_row_whose_memory_the_chip_lacks_says_why():
    # DeepSeek-R1 FP8 on 4 B200s under TensorRT-LLM: 168.5 GB of weights a GPU in the catalog's 180 GB; the KV
    # cache takes 90% of what the weights, the runtime and one step's reservation leave (free_gpu_memory_fraction)
    row = ROWS["ix-b200-trt-dsr1-fp8-tp4ep1-1k1k-c16-tpot"]
    value, reason, _ = predict_serving_row(row)
    assert reason is None and value > 0
    # on 2 B200s the weights alone (336 GB a GPU) exceed the chip: no share of anything is left
    value, reason, _ = predict_serving_row({**row, "num_chips": "2", "tp": "2",
                                            "notes": row["notes"].replace("TP4 EP1", "TP2 EP1")})
    assert value is None and reason.startswith("no memory left for the KV cache: a chip holds 336.0 GB of weights")
