"""Networks beyond the decoder: parameter and FLOP goldens, passes, estimate, validation and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infercast.errors import InfercastError
from infercast.networks import flops_per_sample, load_network, network_ids, parse_resolution
from infercast.ops import Precision
from infercast.passes import best_batch, evaluate_network
from infercast.scenario import resolve
from infercast.tiers import parse_offload


def test_presets_listed():
    assert network_ids() == ["bert-large", "flux.1-dev", "resnet-50", "sd-1.5", "sd-2.1", "sdxl-base-1.0"]


# Published parameter counts (the operators' weights plus the embedding tables must give them exactly):
# diffusers' UNet2DConditionModel of SD-1.5 has 859,520,964 parameters and SDXL's 2,567,463,684 (the counts
# diffusers prints for stable-diffusion-v1-5 and stable-diffusion-xl-base-1.0); CLIP ViT-L/14's text model
# 123,060,480; SDXL's OpenCLIP bigG text model with projection 694,659,840; T5 v1.1 XXL's encoder 4,762,310,656;
# FLUX.1-dev's transformer 11,901,408,320; BertForQuestionAnswering (large) 334,094,338; torchvision's
# ResNet-50 25,557,032, less the 26,560 batch-norm scales folded into the convs at inference = 25,530,472.
@pytest.mark.parametrize("model,component,count", [
    ("sd-1.5", "denoiser", 859_520_964), ("sdxl-base-1.0", "denoiser", 2_567_463_684),
    ("sd-1.5", "text_encoder", 123_060_480), ("sdxl-base-1.0", "text_encoder_2", 694_659_840),
    ("flux.1-dev", "text_encoder_2", 4_762_310_656), ("flux.1-dev", "denoiser", 11_901_408_320),
    ("bert-large", "encoder", 334_094_338), ("resnet-50", "forward", 25_557_032 - 26_560),
])
def test_parameter_counts(model, component, count):
    assert load_network(model).params()[component] == count


def _matmul_flops(ops) -> float:
    return sum(op.count * float(op.flops) for op in ops if op.kind in ("gemm", "attention"))


def test_resnet50_macs():
    # torchvision's ResNet50_Weights card: 4.09 GFLOPS at 224x224, counted as multiply-adds (convs and fc).
    # The exact count: stem 118.0M MACs, the four stages 3,969.7M, fc 2.05M = 4,089.2M (He et al. 2016
    # quote 3.8e9 for v1; v1.5's stride on the 3x3 conv adds the rest).
    net = load_network("resnet-50")
    ((_, ops, _),) = net.passes(1, net.workload(), Precision())
    convs = sum(op.count * float(op.flops) for op in ops if op.kind == "gemm")
    assert convs / 2 == pytest.approx(4.089e9, rel=2e-3)


def test_bert_large_flops_at_384():
    # per layer: Q, K, V, output (4 h^2) and the MLP (8 h^2) at 2 FLOPs per weight per token = 24 h^2 S,
    # plus scores and weighted sum over S^2 pairs = 4 S^2 h (Devlin et al.'s shapes); the span head 2 x 2h S
    h, S, L = 1024, 384, 24
    net = load_network("bert-large")
    ((_, ops, _),) = net.passes(1, net.workload(seq_len=S), Precision())
    attention = sum(op.count * float(op.flops) for op in ops if op.kind == "attention")
    gemms = sum(op.count * float(op.flops) for op in ops if op.kind == "gemm")
    assert gemms == L * 24 * h**2 * S + 2 * 2 * h * S
    assert attention == pytest.approx(L * S**2 * 16 * (4 * 64 + 5))  # 16 heads of 64, 5 softmax FLOPs a pair
    assert attention == pytest.approx(L * 4 * S**2 * h, rel=0.02)


def test_sdxl_unet_flops_at_1024_derivation():
    """SDXL's UNet at 1024x1024 (a 128x128x4 latent), batch 1, counted by hand from its config.json.

    Convolutions (2 x Ho Wo Cout Cin k^2): at 128x128 (320 ch) conv_in 4->320, 2 down resnets and 3 up resnets
    (up: 960/640/640 -> 320 with 1x1 shortcuts); at 64x64 (640) ...; the transformer blocks carry most: per block
    at S tokens and C channels, self-attention's Q K V O (4 C^2 S), cross-attention's Q and O (2 C^2 S) and the
    GEGLU MLP (C x 8C and 4C x C: 12 C^2 S) = 18 C^2 S multiply-adds, cross-attention K/V over 77 text tokens
    of 2048 (2 x 77 x 2048 C), self-attention scores and sum 2 S^2 C, cross 2 x 77 S C. Levels: 64x64 (S=4096, C=640): 2 down + 3 up transformers of 2 blocks = 10 blocks;
    32x32 (S=1024, C=1280): 2 down + 3 up of 10 blocks + the mid block's 10 = 60 blocks.
    """
    def block(S, C):  # multiply-adds of one BasicTransformerBlock, batch 1
        return 18 * C**2 * S + 2 * 77 * 2048 * C + 2 * S**2 * C + 2 * 77 * S * C
    transformer = 10 * block(4096, 640) + 60 * block(1024, 1280)
    transformer += 5 * 2 * 4096 * 640**2 + 7 * 2 * 1024 * 1280**2  # proj_in and proj_out of each Transformer2D
    net = load_network("sdxl-base-1.0")
    wl = net.workload(steps=1, cfg=False)
    den = dict((n, o) for n, o, _ in net.passes(1, wl, Precision()))["denoiser"]
    attn_ops = [op for op in den if "_attn" in op.name and op.kind in ("gemm", "attention")]
    counted = sum(op.count * float(op.flops) for op in attn_ops) / 2
    assert counted == pytest.approx(transformer, rel=0.01)
    total = _matmul_flops(den)
    assert total == pytest.approx(6.78e12, rel=0.01)  # 6.78 TFLOPs a UNet evaluation: 5.15 in the transformers
    assert transformer * 2 / total == pytest.approx(0.76, abs=0.01)  # the rest: convolutions


def test_diffusion_passes_follow_steps_and_guidance():
    net = load_network("sdxl-base-1.0")
    base = flops_per_sample(net, net.workload(steps=10, cfg=False))
    guided = flops_per_sample(net, net.workload(steps=20, cfg=True))
    assert guided["denoiser"] == pytest.approx(4 * base["denoiser"])
    assert guided["vae_decoder"] == base["vae_decoder"]


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(["resnet-50", "bert-large", "sd-1.5"]), st.integers(1, 64), st.floats(1.1, 4.0))
def test_more_bandwidth_or_compute_is_never_slower(model, batch, scale):
    sc = resolve(model, "a100-sxm-80gb")
    wl = {"steps": 2} if model == "sd-1.5" else {}
    base = evaluate_network(sc, batch=batch, **wl)["latency_s"]
    faster = resolve(model, "h100-sxm")  # more of everything than the A100
    assert evaluate_network(faster, batch=batch, **wl)["latency_s"] <= base
    # time is at least the FLOPs at peak
    assert base >= evaluate_network(sc, batch=batch, **wl)["flops"] / sc.rates.peak("fp16")


def test_best_batch_fits_and_beats_batch_one():
    sc = resolve("resnet-50", "a100-sxm-80gb", dtype="int8")
    b, c = best_batch(sc)
    assert c["memory.fits"] and b > 1
    assert c["samples_per_s"] > evaluate_network(sc, batch=1)["samples_per_s"]


def test_resolution_parse():
    assert parse_resolution("1024x768") == (1024, 768)
    assert parse_resolution("512") == (512, 512)
    for bad in ("1024x", "x", "0x0", "ax1"):
        with pytest.raises(InfercastError, match="--resolution"):
            parse_resolution(bad)


def test_offload_parse():
    off = parse_offload("weights=cpu:0.5+nvme:0.25,kv=cpu,overlap=0,cpu_gb=208")
    assert off.fraction("weights") == 0.75 and off.fraction("kv") == 1.0 and off.overlap == 0.0
    assert off.capacity_bytes == {"cpu": 208e9}
    for bad in ("weights=cpu:1.5", "weights=disk", "overlap=2", "foo=1", "weights=cpu:0.6+nvme:0.6"):
        with pytest.raises(InfercastError, match="--offload"):
            parse_offload(bad)


def test_offloaded_decoder_fits_and_slows():
    from infercast.estimate import estimate

    kw = dict(batch=4, isl=512, osl=32)
    alone = estimate("llama-2-70b", "h100-sxm", **kw)
    spilled = estimate("llama-2-70b", "h100-sxm", offload="weights=cpu:0.6", **kw)
    assert not alone.memory.fits and spilled.memory.fits
    # each step pulls 0.6 of 138 GB over 64 GB/s PCIe 5: about 1.3 s, far above the HBM-bound step
    assert spilled.tpot_s == pytest.approx(0.6 * alone.memory.weights_bytes / 64e9, rel=0.05)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infercast", *args], capture_output=True, text=True, timeout=120)


def test_cli_estimate_sdxl_json():
    r = _cli("estimate", "--model", "sdxl-base-1.0", "--hardware", "h100-sxm", "--resolution", "1024x1024",
             "--steps", "20", "--batch", "2", "--cfg", "--output", "json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["kind"] == "diffusion" and d["workload"]["steps"] == 20 and d["memory"]["fits"]
    assert d["images_per_s"] == pytest.approx(2 / d["latency_s"])
    assert d["flops_per_image"] == pytest.approx(sum(p["flops"] for p in d["passes"]) / 2)
    assert d["energy"]["joules_per_image"] > 0 and d["cost"]["usd_per_image"] > 0


@pytest.mark.parametrize("args,needle", [
    (["--model", "sdxl-base-1.0", "--resolution", "1024x"], "--resolution"),
    (["--model", "sdxl-base-1.0", "--steps", "0"], "--steps"),
    (["--model", "llama-2-7b", "--resolution", "512x512"], "--resolution"),
    (["--model", "llama-2-7b", "--offload", "weights=cpu:1.5"], "--offload"),
    (["--model", "resnet-50", "--seq-len", "128"], "--seq-len"),
    (["--model", "bert-large", "--isl", "64"], "--isl"),
    (["--model", "sdxl-base-1.0", "--tp", "2"], "--tp"),
])
def test_cli_bad_input_is_one_line(args, needle):
    r = _cli("estimate", "--hardware", "h100-sxm", *args)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr


def test_validate_vision_subset(tmp_path):
    rows = ("id,source,model,hardware,num_chips,precision,resolution,seq_len,steps,batch,framework,scenario,metric,"
            "value,notes\n"
            "mlperf-v3.0-closed-x-resnet50-offline,s,resnet-50,a100-sxm-80gb,1,int8,224x224,,,,TRT,offline,"
            "samples_per_s,40576,\n"
            "fal-sdxl-x,fal,sdxl-base-1.0,a100-sxm-80gb,1,fp16,1024x1024,,50,1,d,single_stream,s_per_image,5.0,\n"
            "x-unknown,s,resnet-50,biren-br104,1,int8,224x224,,,,,offline,samples_per_s,1000,\n")
    path = tmp_path / "v.csv"
    path.write_text(rows)
    r = _cli("validate", "--data", str(path), "--output", "json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    got = {x["id"]: x for x in d["rows"]}
    assert got["x-unknown"]["skipped_reason"] == "hardware biren-br104 is not in the catalog"
    assert abs(got["fal-sdxl-x"]["error"]) < 0.3 and abs(got["mlperf-v3.0-closed-x-resnet50-offline"]["error"]) < 0.3
