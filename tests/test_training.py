"""Training: hand-checked goldens (Adam bytes, Korthikanti et al.'s activations, the 1F1B bubble, the backward
pass's FLOPs, the data's FLOPs conventions), invariants, the validation targets, the CLI and claim C5."""

import json
import math
import re

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infercast.cli import cli
from infercast.errors import InfercastError
from infercast.model import load_model
from infercast.ops import Precision
from infercast.train import min_chips_to_train, train
from infercast.training import (
    attention_backward_kernels,
    gemm_backward,
    load_training_calibration,
    model_flops_per_token,
    resolve_training,
    step_time,
    train_memory,
)
from infercast.training_memory import StateBytes, bubble_fraction, in_flight, layer_activation_bytes, shard_states
from infercast.validate import summarize
from infercast.validate_training import read_training_rows, row_run, validate

GPT3 = load_model("gpt-3-175b")


# --- goldens --------------------------------------------------------------------------------------------


def test_adam_mixed_precision_is_16_bytes_per_parameter():
    # ZeRO (Rajbhandari et al. 2020, sec. 3.1): bf16 weights 2 + FP32 master 4 + two FP32 moments 4 + 4
    # + bf16 gradients 2 = 16 bytes per parameter, all on every chip without ZeRO
    b = StateBytes(weights=2, master=4, moments=8, gradients=2)
    assert b.total == 2 + 4 + 4 + 4 + 2 == 16
    P = 1e9
    assert shard_states(P, b, 0, 8).total_bytes == 16 * P
    # ZeRO-1 shards master weights and moments over N = 8: 2 + 2 + 12 / 8 = 5.5 bytes per parameter
    assert shard_states(P, b, 1, 8).total_bytes == pytest.approx(5.5 * P)
    # ZeRO-2 also the gradients: 2 + 14 / 8 = 3.75
    assert shard_states(P, b, 2, 8).total_bytes == pytest.approx(3.75 * P)
    # ZeRO-3 everything (16 / 8 = 2), plus the two gathered layers of 1e7 parameters with their bf16 gradients
    z3 = shard_states(P, b, 3, 8, layer_params=1e7, gathered_layers=2)
    assert z3.total_bytes == pytest.approx(2 * P + 2 * 1e7 * 4)
    # Megatron's FP32 main grads: 2 + 4 (grads) + 12 / N with the distributed optimizer (its docs: 6 + 12/d)
    assert shard_states(P, StateBytes(gradients=4), 1, 8).total_bytes == pytest.approx((6 + 12 / 8) * P)


S, B, H, A = 2048, 1, 12288, 96  # GPT-3 175B: s, b, h, a


def korthikanti(**kw):
    return layer_activation_bytes(GPT3, S * B, S, attention="materialized", dropout=True, **kw)


def test_activations_per_layer_korthikanti_formulas():
    # Korthikanti et al. 2022 (arXiv:2205.05198), sec. 4.1 and Table 2, 16-bit activations with dropout:
    # no parallelism, no recomputation: s b h (34 + 5 a s / h)
    assert korthikanti() == S * B * H * (34 + 5 * A * S / H)
    # tensor parallel t = 8 without sequence parallelism: s b h (10 + 24 / t + 5 a s / (h t))
    t = 8
    assert korthikanti(tp=t) == pytest.approx(S * B * H * (10 + 24 / t + 5 * A * S / (H * t)))
    # with sequence parallelism: s b h / t (34 + 5 a s / h)
    assert korthikanti(tp=t, sequence_parallel=True) == pytest.approx(S * B * H / t * (34 + 5 * A * S / H))
    # selective recomputation with sequence parallelism: s b h / t x 34
    assert korthikanti(tp=t, sequence_parallel=True, recompute="selective") == pytest.approx(S * B * H / t * 34)
    # full recomputation keeps each layer's input: 2 s b h (and / t with sequence parallelism)
    assert korthikanti(recompute="full") == 2 * S * B * H
    assert korthikanti(tp=t, sequence_parallel=True, recompute="full") == 2 * S * B * H / t
    # 5as/h = 5 x 96 x 2048 / 12288 = 80: the score matrices are 70% of the 114 sbh a layer keeps
    assert 5 * A * S / H == 80


def test_flash_attention_and_no_dropout_drop_the_quadratic_and_mask_terms():
    # FlashAttention keeps no s x s matrix (only 4-byte row statistics per head), no dropout no masks: 32 h + 4 a
    assert layer_activation_bytes(GPT3, S, S) == S * (32 * H + 4 * A)


def test_one_f_one_b_bubble_and_in_flight_micro_batches():
    # Narayanan et al. 2021, sec. 2.2: bubble (p - 1) / (m + p - 1); the 1,024-GPU GPT-3 run, p = 8, m = 96
    assert bubble_fraction(8, 96) == pytest.approx(7 / 103)
    # interleaved with v chunks: the bubble shrinks by v, (p - 1) / v over m + (p - 1) / v
    assert bubble_fraction(8, 96, 3) == pytest.approx((7 / 3) / (96 + 7 / 3))
    assert bubble_fraction(1, 10) == 0
    # 1F1B: stage i holds min(p - i, m) micro-batches in flight, so the first stage p, the last one
    assert [in_flight(i, 4, 16) for i in range(4)] == [4, 3, 2, 1]
    assert in_flight(0, 8, 3) == 3
    # interleaved: the first stage holds L (1 + (p - 1) / (p v)) layers' worth (Korthikanti et al., sec. 4.2.3)
    p, v, L = 8, 4, 96
    assert in_flight(0, p, 64, v) * L / p == pytest.approx(L * (1 + (p - 1) / (p * v)))


def test_backward_is_twice_the_forward_for_gemms_and_2_5x_for_flash_attention():
    p = Precision("bf16", "bf16", "bf16")
    from infercast.ops import gemm_op

    fwd = gemm_op("up", 1, 4096, 49152, 12288, p)  # [M, K] x [K, N]
    dgrad, wgrad = gemm_backward(fwd)
    assert dgrad.flops == wgrad.flops == fwd.flops == 2 * 4096 * 49152 * 12288
    # dX = dY W^T reads dY (M N) and W, writes dX (M K); dW = X^T dY reads X and dY, writes dW (K N)
    assert (dgrad.act_bytes, dgrad.write_bytes) == (fwd.write_bytes, fwd.act_bytes)
    assert (wgrad.act_bytes, wgrad.write_bytes) == (fwd.act_bytes + fwd.write_bytes, fwd.weight_bytes)
    # FlashAttention-2's backward: 6 d_qk + 4 d_v (+ softmax) per pair and head against the forward's 2 + 2
    spec = load_model("llama-3-8b")
    from infercast.ops import attention_kernels

    (f,) = attention_kernels(spec, p, "flash")
    (b,) = attention_backward_kernels(spec, p, "flash")
    d = spec.head_dim
    assert b.flops[0] - f.flops[0] == spec.num_heads * 6 * d  # (10 d + 5) - (4 d + 5) per head
    assert b.flops[0] / f.flops[0] == pytest.approx(2.5, rel=0.01)


def test_model_flops_conventions_match_the_data():
    # PaLM (appendix B): 6 N + 12 L H Q S with N the matmul parameters; GPT-3 175B at S 2048:
    # 6 x (174.6e9 - 2048 x 12288 position table) + 12 x 96 x 12288 x 2048 (tied embedding counted as the head)
    n = 174_604_259_328 - 2048 * 12288
    assert model_flops_per_token(GPT3, 2048) == 6 * n + 12 * 96 * 96 * 128 * 2048
    for row in read_training_rows("src/infercast/catalog/measured/training.csv"):
        notes = row["notes"]
        if row["metric"] == "mfu" and row["id"].startswith("llmfoundry"):
            # llm-foundry: MFU = (6 N + 12 L h S) x tokens/s/GPU / peak (989 or 312 TFLOP/s; FP8 1979)
            tps = float(re.search(r"tokens/s/GPU=(\d+)", notes).group(1))
            run = row_run(row)
            spec = run.kwargs["model"] if not isinstance(run.kwargs["model"], str) else load_model(row["model"])
            mfu = model_flops_per_token(spec, int(row["seq_len"]), "llm-foundry") * tps / run.peak_flops
            assert mfu == pytest.approx(float(row["value"]), rel=5e-3), row["id"]  # the table rounds its columns
        if row["metric"] == "tflops_per_chip" and "WORKLOAD" not in notes:
            # NeMo's model TFLOP/s over its tokens/s/GPU is Megatron-LM's FLOPs formula
            tps = float(re.search(r"Tokens/sec/GPU=(\d+)", notes).group(1))
            flops = model_flops_per_token(load_model(row["model"]), int(row["seq_len"]), "megatron")
            assert flops * tps / 1e12 == pytest.approx(float(row["value"]), rel=0.01), row["id"]


def test_every_llm_foundry_row_has_the_parameters_its_notes_state():
    for row in read_training_rows("src/infercast/catalog/measured/training.csv"):
        stated = re.search(r"\(([\d,]+) parameters", row["notes"])
        if stated:
            spec = row_run(row).kwargs["model"]
            spec = load_model(spec) if isinstance(spec, str) else spec
            assert spec.params()[0] == int(stated.group(1).replace(",", "")), row["id"]


# --- invariants -------------------------------------------------------------------------------------------


def mem(**kw):
    base = dict(seq_len=4096, global_batch=512, micro_batch=1, framework="fsdp", zero_stage=3, recompute="full")
    return train_memory(resolve_training("llama-2-7b", "h100-sxm", **{**base, **kw}))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 5), st.integers(0, 2), st.sampled_from(["none", "selective", "full"]))
def test_more_chips_never_more_memory_per_chip_under_zero3(k, t, rec):
    tp = 2 ** t
    a = mem(tp=tp, dp=2 ** k, num_chips=tp * 2 ** k, recompute=rec).total_bytes
    b = mem(tp=tp, dp=2 ** (k + 1), num_chips=tp * 2 ** (k + 1), recompute=rec).total_bytes
    assert b <= a


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["megatron", "torchtitan", "fsdp"]), st.integers(1, 4), st.sampled_from([1, 2, 4]),
       st.sampled_from([1, 2]))
def test_recomputation_never_increases_memory(fw, mb, tp, pp):
    kw = dict(framework=fw, micro_batch=mb, tp=tp, pp=pp, dp=1, num_chips=tp * pp, zero_stage=1, global_batch=8 * mb)
    none, sel, full = (mem(recompute=r, **kw).total_bytes for r in ("none", "selective", "full"))
    assert full <= sel <= none


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["llama-2-7b", "mpt-1b", "gpt-3-5b"]), st.sampled_from([1, 2, 4]), st.sampled_from([1, 2]),
       st.sampled_from(["none", "selective", "full"]), st.sampled_from(["bf16", "fp8"]))
def test_step_time_is_at_least_the_compute_bound(model, tp, pp, rec, dtype):
    ts = resolve_training(model, "h100-sxm", seq_len=2048, global_batch=16, micro_batch=2, tp=tp, pp=pp, dp=2,
                          num_chips=2 * tp * pp, recompute=rec, dtype=dtype)
    s = step_time(ts)
    peak = ts.sc.rates.peak("fp8" if dtype == "fp8" else "bf16")
    busiest = max(c.flops for _, c in s.stages)  # FLOPs one chip of the busiest stage runs per micro-batch
    assert s.step_s >= s.micro_batches * busiest / peak


# --- validation targets -------------------------------------------------------------------------------------


def test_validation_on_the_training_rows_meets_the_targets():
    results = validate("training")
    summary = summarize(results)
    assert summary["rows"] == 505 and summary["predicted"] == 499
    assert all(r.skipped_reason for r in results if r.predicted is None)  # every row predicted or given its reason
    by = summary["by_metric"]
    for metric in ("step_time_s", "tokens_per_s", "mfu", "tflops_per_chip"):
        assert by[metric]["median_ape"] <= 0.12 and by[metric]["p90_ape"] <= 0.30, metric
    assert by["peak_memory_bytes_per_chip"]["median_ape"] <= 0.10
    # the fit's record: leave-one-source-out errors meet the same targets
    loso = load_training_calibration().fit["leave_one_source_out"]
    assert loso["all"]["median_ape"] <= 0.12 and loso["all"]["p90_ape"] <= 0.30
    assert loso["by_metric"]["peak_memory_bytes_per_chip"]["median_ape"] <= 0.10


def test_shipped_fit_is_what_the_data_gives():
    from infercast.validate_training import calibrate

    fresh, _ = calibrate()
    shipped = load_training_calibration()
    assert fresh.frameworks == shipped.frameworks
    assert fresh.allocator_reserve == shipped.allocator_reserve


# --- the command and the document ---------------------------------------------------------------------------

GPT3_RUN = ["train", "--model", "gpt-3-175b", "--hardware", "a100-sxm-80gb", "--num-chips", "1024", "--tp", "8",
            "--pp", "8", "--dp", "16", "--seq-len", "2048", "--global-batch", "1536", "--recompute", "full",
            "--dtype", "fp16", "--framework", "megatron", "--attention", "materialized", "--no-sequence-parallel",
            "--dropout", "--zero-stage", "0", "--tokens", "300e9"]


def test_gpt3_175b_on_1024_a100s_beside_narayanan_et_al():
    out = CliRunner().invoke(cli, GPT3_RUN + ["--output", "json"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.output)
    for key in ("weights_bytes", "gradients_bytes", "optimizer_bytes", "activation_bytes", "total_per_chip_bytes"):
        assert key in d["memory"]
    assert d["memory"]["fits"]
    # Narayanan et al. 2021, Table 1: 1,024 GPUs, TP 8 x PP 8, batch 1536: 140 TFLOP/s per GPU, counted with their
    # 96 B s l h^2 (1 + s / 6h + V / 16 l h) (recomputation included)
    B_, s, l, h, V = 1536, 2048, 96, 12288, 51200
    flops = 96 * B_ * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h))
    tflops = flops / d["step_time_s"] / 1024 / 1e12
    assert tflops == pytest.approx(140, rel=0.15)
    assert 0.3 < d["mfu"] < 0.45 and d["hfu"] > d["mfu"]
    run = d["run"]
    assert run["days"] == pytest.approx(run["steps"] * d["step_time_s"] / 86400)
    assert run["gpu_hours"] == pytest.approx(1024 * run["days"] * 24)
    assert run["facility_energy_mwh"] > 0 and run["cost_usd"] > 0
    table = CliRunner().invoke(cli, GPT3_RUN + ["--breakdown"])
    assert table.exit_code == 0 and "MFU" in table.output and "run" in table.output and "lm_head" in table.output


def test_auto_finds_a_plan_that_fits_and_is_fastest():
    out = CliRunner().invoke(cli, ["train", "--model", "llama-2-7b", "--hardware", "h100-sxm", "--num-chips", "8",
                                   "--seq-len", "4096", "--global-batch", "64", "--auto", "--output", "json"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.output)
    assert d["memory"]["fits"] and d["parallel"]["num_chips"] == 8 and d["auto"]["fitting"] > 1
    fixed = train("llama-2-7b", "h100-sxm", num_chips=8, seq_len=4096, global_batch=64, tp=8, micro_batch=1,
                  zero_stage=1, recompute="full")
    assert d["step_time_s"] <= fixed.step_time_s


@pytest.mark.parametrize(("args", "message"), [
    (["--global-batch", "100"], "not a multiple of dp x micro-batch"),
    (["--recompute", "most"], "Invalid value for '--recompute'"),
    (["--zero-stage", "4"], "--zero-stage must be"),
    (["--framework", "deepspeedy"], "unknown framework"),
    (["--num-chips", "24", "--tp", "3"], "--tp 3 does not divide"),
    (["--num-chips", "24", "--cp", "3"], "not a multiple of --cp"),
    (["--tp", "3"], "8 chips are not a multiple of tp x pp x cp = 3"),
    (["--tokens", "-1"], "--tokens must be"),
])
def test_bad_training_inputs_are_one_line(args, message):
    import subprocess
    import sys

    base = ["train", "--model", "llama-2-7b", "--hardware", "h100-sxm", "--num-chips", "8", "--seq-len", "4096",
            "--global-batch", "64"]
    proc = subprocess.run([sys.executable, "-c", "from infercast.cli import main; main()", *base, *args],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2, proc.stdout
    assert message in proc.stderr and proc.stderr.count("\n") == 1


def test_validate_recognises_the_training_header(tmp_path):
    from pathlib import Path

    src = Path("src/infercast/catalog/measured/training.csv").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "t.csv"
    path.write_text("\n".join(src[:1] + [l for l in src[1:] if l.startswith("korthikanti")]) + "\n")
    out = CliRunner().invoke(cli, ["validate", "--data", str(path), "--output", "json"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.output)
    assert d["summary"]["predicted"] == 8 and d["summary"]["by_metric"]["step_time_s"]["median_ape"] < 0.12


def test_largest_micro_batch_and_sequence_fit_and_one_more_does_not():
    d = train("llama-2-7b", "a100-sxm-80gb", num_chips=8, seq_len=4096, global_batch=64, framework="fsdp",
              zero_stage=3, recompute="selective").to_dict()
    mb, seq = d["memory"]["max_micro_batch"], d["memory"]["max_seq_len"]
    assert mb >= 1 and seq >= 4096
    at = dict(num_chips=8, framework="fsdp", zero_stage=3, recompute="selective")
    assert train_memory(resolve_training("llama-2-7b", "a100-sxm-80gb", seq_len=4096, global_batch=8 * mb,
                                         micro_batch=mb, **at)).fits
    assert not train_memory(resolve_training("llama-2-7b", "a100-sxm-80gb", seq_len=4096, global_batch=8 * (mb + 1),
                                             micro_batch=mb + 1, **at)).fits


def test_min_chips_to_train_llama2_70b_on_24gb_cards():
    r = min_chips_to_train("llama-2-70b", "rtx-4090", seq_len=4096)
    assert r.memory.fits and r.chips == r.tp * r.pp * r.dp
    assert 16 * 68_976_648_192 / r.chips < 24e9  # the states alone need at least 1.1 TB / 24 GB = 46 cards
    assert r.chips >= 46


def test_claim_c5_is_computed():
    from infercast.claims import c5_training_memory

    c = c5_training_memory()
    f = c.figures
    assert c.verdict == "reproduced"
    assert f["training_bytes_per_param"] == 16 and f["training_states_bytes"] == 16 * 68_976_648_192
    assert f["training_min_chips"] > 5 * f["inference_min_chips_fp16"]
    assert f["pipeline_first_stage_in_flight"] == 8 and f["pipeline_last_stage_in_flight"] == 1
    assert f["pipeline_first_stage_activation_bytes"] == pytest.approx(8 * f["pipeline_last_stage_activation_bytes"],
                                                                       rel=0.05)


def test_fp8_is_refused_where_the_chip_has_no_fp8_units_only_in_the_rate():
    # a chip without FP8 units runs FP8 GEMMs at its 16-bit rate (DESIGN.md): A100 FP8 is no faster
    a = train("llama-2-7b", "a100-sxm-80gb", num_chips=8, seq_len=4096, global_batch=64, dtype="fp8").step_time_s
    b = train("llama-2-7b", "a100-sxm-80gb", num_chips=8, seq_len=4096, global_batch=64).step_time_s
    assert math.isfinite(a) and a == pytest.approx(b, rel=0.05)
    with pytest.raises(InfercastError, match="--dtype"):
        resolve_training("llama-2-7b", "h100-sxm", seq_len=2048, global_batch=8, dtype="int4")


def test_the_runs_that_ran_fit():
    # every measured run of llm-foundry (which picked its micro-batches near the limit), torchtitan and Megatron
    # fits the memory model: it does not refuse what ran. NeMo's FP8 runs hold the exception the report names
    # (Nemotron-4 340B, 9% over the H100's 80 GiB: its gradient width and recomputation are not stated)
    for row in read_training_rows("src/infercast/catalog/measured/training.csv"):
        if row["id"].startswith(("llmfoundry", "torchtitan", "korthikanti")) and row["metric"] != "tokens_per_s":
            run = row_run(row)
            ts = resolve_training(**run.kwargs)
            assert train_memory(ts, run.rates.get("mem_capacity_bytes")).fits, row["id"]
    refused = []
    for row in read_training_rows("src/infercast/catalog/measured/training.csv"):
        run = row_run(row)
        if row["id"].startswith("nemo-24.07-pretrain") and not isinstance(run, str):
            if not train_memory(resolve_training(**run.kwargs), run.rates.get("mem_capacity_bytes")).fits:
                refused.append(row["id"])
    assert refused == ["nemo-24.07-pretrain-nemotron-4-340b-h100-sxm-fp8-n128-tflops-per-chip"]
