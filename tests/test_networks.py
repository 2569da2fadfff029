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
from infercast.passes import best_batch, evaluate_network, execution_of
from infercast.scenario import resolve
from infercast.tiers import parse_offload


def test_presets_listed():
    assert network_ids() == ["bert-large", "flux.1-dev", "resnet-50", "sd-1.5", "sd-2.1", "sd3-medium", "sdxl-base-1.0"]


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


def test_sd3_medium_transformer_parameters():
    """SD3-medium's SD3Transformer2DModel (d = 24 heads x 64 = 1536, 24 joint blocks), counted by hand from
    diffusers' modules; the total is the 2,028,328,000 diffusers reports for the model card's transformer.

    patch embed conv 16 -> d, 2x2: 16 x 4 x d + d = 99,840; timestep MLP 256 -> d -> d: 2,755,584; pooled text
    MLP 2048 -> d -> d: 5,508,096; context embedder 4096 -> d: 6,292,992. A joint block, per stream: adaLN-zero
    d -> 6d (14,164,992), Q K V (3 x 2,360,832), output (2,360,832), GELU MLP d -> 4d -> d (18,882,048) =
    42,490,368, both streams 84,980,736; the last block's text stream has adaLN d -> 2d (4,721,664), its Q K V
    and no output or MLP: 54,294,528. 23 x 84,980,736 + 54,294,528 = 2,008,851,456. norm_out d -> 2d
    4,721,664; proj_out d -> 2 x 2 x 16: 98,368. Sum: 2,028,328,000."""
    blocks = 23 * 84_980_736 + 54_294_528
    total = 99_840 + 2_755_584 + 5_508_096 + 6_292_992 + blocks + 4_721_664 + 98_368
    assert total == 2_028_328_000
    params = load_network("sd3-medium").params()
    assert params["denoiser"] == total
    # CLIP-L with its 768 x 768 projection, OpenCLIP bigG (SDXL's), T5-XXL's encoder (Flux's)
    assert (params["text_encoder"], params["text_encoder_2"], params["text_encoder_3"]) == \
        (123_060_480 + 768 * 768, 694_659_840, 4_762_310_656)


def test_sd3_medium_flops_per_step():
    # one transformer pass at 1024x1024, batch 1: 4096 image tokens (64 x 64 patches of the 128 x 128 latent) and
    # 77 + 256 = 333 text tokens. Per block and stream Q K V, output and MLP are 12 d^2 weights (d = 1536), at
    # 2 FLOPs per weight and token; joint attention 4 d L^2 + 5 per pair and head over L = 4429, 24 blocks
    d, L, n = 1536, 4096 + 333, 24
    linear = 2 * 12 * d**2 * (n * 4096 + (n - 1) * 333 + 333 / 4)  # the last text stream: Q K V only
    attention = n * L**2 * 24 * (4 * 64 + 5)
    net = load_network("sd3-medium")
    den = dict((name, ops) for name, ops, _ in net.passes(1, net.workload(steps=1, cfg=False), Precision()))["denoiser"]
    big = sum(op.count * float(op.flops) for op in den if op.kind in ("gemm", "attention") and op.name.startswith("joint_")
              and "_mod" not in op.name)
    assert big == pytest.approx(linear + attention, rel=1e-9)


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
    # each step pulls 0.6 of 138 GB over PCIe 5 (64 GB/s per direction, of which a copy reaches 12.89 / 15.75
    # as FlexGen measured on PCIe 3): about 1.6 s, far above the HBM-bound step
    assert spilled.tpot_s == pytest.approx(0.6 * alone.memory.weights_bytes / (64e9 * 12.89 / 15.75), rel=0.05)


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


def _validate_json(tmp_path, header: str, *lines: str) -> tuple[dict, dict]:
    """``infercast validate --output json`` of a CSV of ``header`` and ``lines``: its rows by id, its summary."""
    path = tmp_path / "data.csv"
    path.write_text("\n".join((header, *lines)) + "\n")
    r = _cli("validate", "--data", str(path), "--output", "json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    return {x["id"]: x for x in d["rows"]}, d["summary"]


def test_validate_vision_subset(tmp_path):
    got, _ = _validate_json(
        tmp_path, "id,source,model,hardware,num_chips,precision,resolution,seq_len,steps,batch,framework,scenario,"
                  "metric,value,notes",
        "mlperf-v3.0-closed-x-resnet50-offline,s,resnet-50,a100-sxm-80gb,1,int8,224x224,,,,TRT,offline,samples_per_s,"
        "40576,",
        "fal-sdxl-x,fal,sdxl-base-1.0,a100-sxm-80gb,1,fp16,1024x1024,,50,1,d,single_stream,s_per_image,5.0,",
        "x-unknown,s,resnet-50,biren-br104,1,int8,224x224,,,,,offline,samples_per_s,1000,")
    assert got["x-unknown"]["skipped_reason"] == "hardware biren-br104 is not in the catalog"
    assert abs(got["fal-sdxl-x"]["error"]) < 0.3 and abs(got["mlperf-v3.0-closed-x-resnet50-offline"]["error"]) < 0.3


@pytest.mark.parametrize("model,default_on", [("sd-1.5", True), ("sdxl-base-1.0", True), ("sd3-medium", True),
                                              ("flux.1-dev", False)])
def test_cli_cfg_both_ways(model, default_on):
    """--cfg and --no-cfg each win over the model's default: guidance doubles the denoiser's batch, so its FLOPs
    (and the text encoders', which encode the negative prompt too); the VAE decodes the same images."""
    def run(*flag):
        r = _cli("estimate", "--model", model, "--hardware", "h100-sxm", "--resolution", "512x512", "--steps", "2",
                 *flag, "--output", "json")
        assert r.returncode == 0, r.stderr
        d = json.loads(r.stdout)
        return d["workload"]["cfg"], {p["name"]: p["flops"] for p in d["passes"]}
    on_cfg, on = run("--cfg")
    off_cfg, off = run("--no-cfg")
    default_cfg, default = run()
    assert (on_cfg, off_cfg, default_cfg) == (True, False, default_on)
    assert on["denoiser"] == pytest.approx(2 * off["denoiser"]) and on["vae_decoder"] == off["vae_decoder"]
    assert default == (on if default_on else off)


@pytest.mark.parametrize("flag", ["--cfg", "--no-cfg"])
def test_cli_cfg_is_for_diffusion_only(flag):
    for model in ("bert-large", "llama-2-7b"):
        r = _cli("estimate", "--model", model, "--hardware", "h100-sxm", flag)
        assert r.returncode == 2 and r.stdout == "" and flag in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_cli_models_list_and_show_every_kind():
    r = _cli("models", "list", "--output", "json")
    assert r.returncode == 0, r.stderr
    rows = {x["id"]: x for x in json.loads(r.stdout)}
    assert {rows[m]["kind"] for m in network_ids()} == {"encoder", "cnn", "diffusion"}
    assert rows["llama-2-7b"]["kind"] == "decoder"
    # the parameter counts pinned above: SD3-medium 0.124 + 0.695 + 4.762 + 2.028 + the 16-channel VAE decoder's
    # 0.050 = 7.658 B; BERT-Large 0.334 B; ResNet-50 0.026 B
    assert (rows["sd3-medium"]["params_b"], rows["bert-large"]["params_b"], rows["resnet-50"]["params_b"]) == \
        (7.658, 0.334, 0.026)
    r = _cli("models", "show", "sd3-medium", "--output", "json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["kind"] == "diffusion" and d["architecture"] == "StableDiffusion3Pipeline"
    assert d["params_by_component"]["denoiser"] == 2_028_328_000 and d["defaults"]["steps"] == 28
    assert "sd3-medium" in _cli("models", "list").stdout


def test_min_chips_splits_a_batch_over_replicas():
    # SDXL at 1024x1024 on one L4 (24 GB): the batch that fits beside the 2.6 + 0.8 + 0.1 B fp16 weights is
    # max_batch; a batch above it takes ceil(batch / max_batch) replicas of one chip each
    sc = resolve("sdxl-base-1.0", "l4")
    one = evaluate_network(sc, batch=1)
    m = float(one["memory.max_batch"])
    assert m >= 1 and float(one["memory.min_chips"]) == 1
    many = evaluate_network(sc, batch=np.array([m, m + 1, 5 * m]))
    assert list(many["memory.min_chips"]) == [1, 2, 5]
    # FLUX.1-dev's 12 B transformer and 4.8 B T5 in 16 bits exceed a 16 GB T4: no number of replicas holds it
    assert float(evaluate_network(resolve("flux.1-dev", "t4"), batch=1)["memory.min_chips"]) == 0


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 4096))
def test_min_chips_hold_the_batch(batch):
    c = evaluate_network(resolve("resnet-50", "t4", dtype="int8"), batch=batch)
    chips, m = float(c["memory.min_chips"]), float(c["memory.max_batch"])
    assert chips * m >= batch and (chips - 1) * m < batch


def test_flexgen_decode_step_is_the_weight_transfer_plus_compute():
    """OPT-30B on the FlexGen paper's T4 machine, weights and cache in host DRAM, one GPU batch of 8: a decode
    step of a layer waits for the layer's weights over PCIe (ctog_g, nothing overlaps it in FlexGen's cost
    model), then for the larger of the disk, store and compute terms, here the CPU's attention over the cache.

    W = 8 h1^2 + 4 h1 h2 = 8 x 7168^2 + 4 x 7168 x 28672 = 1,233,125,376 B at 12.89 GB/s: 95.7 ms. CPU attention:
    4 h1 x 8 sequences x (512 + 32/2) tokens = 121,110,528 at 0.0123e12 x (1 - 0.0328 log2(64/8)) = 11.09e9: 10.9 ms;
    the GPU's linear layers for 8 rows read the layer's 1.23 GB from GDDR6 at 320 GB/s x the fitted bandwidth."""
    from infercast.flexgen import load_host, schedule

    host = load_host("gcp-t4")
    r = schedule("opt-30b", "t4", host, s=512, n=32, gpu_batch=8, block=1, weights="cpu", cache="cpu")
    W = 8 * 7168**2 + 4 * 7168 * 28672
    assert W == 1_233_125_376
    ctog, cpu = W / 12.89e9, 4 * 7168 * 8 * 528 / (0.0123e12 * (1 - 0.0328 * 3))
    gpu_floor = W / 320e9
    step = r.decode_s / 31 / 48
    assert ctog + cpu + gpu_floor <= step <= ctog + cpu + 3 * gpu_floor
    assert r.decode_tokens_per_s == pytest.approx(8 / (48 * step))


@settings(max_examples=10, deadline=None)
@given(st.floats(1.0, 4.0), st.sampled_from(["opt-6.7b", "opt-30b"]))
def test_flexgen_faster_links_and_more_dram_never_hurt(scale, model):
    from dataclasses import replace

    from infercast.flexgen import load_host, schedule

    base = load_host("gcp-t4")
    r = schedule(model, "t4", base, s=512, n=8)
    faster = replace(base, ctog_bytes_per_s=base.ctog_bytes_per_s * scale, dram_bytes=base.dram_bytes * scale)
    assert schedule(model, "t4", faster, s=512, n=8).throughput_tokens_per_s >= r.throughput_tokens_per_s * (1 - 1e-9)


def test_validate_offload_cli(tmp_path):
    got, summary = _validate_json(
        tmp_path, "id,source,workload,model,hardware,host_memory,storage,offload_policy,precision,prompt_len,gen_len,"
                  "batch,metric,value,notes",
        'flexgen-x-opt-30b,s,w,opt-30b,t4,208 GB DRAM,"1.5 TB NVMe SSD (~2 GB/s read, ~1 GB/s write)",FlexGen: best '
        "policy found,fp16,512,32,max feasible,generation_tokens_per_s,7.32,",
        "zeroinf-flexgen-x-opt-30b,s,w,opt-30b,rtx-a6000,252 GB,PNY CS3040 2TB NVMe (5600 MB/s seq read),FlexGen; "
        "weights -> cpu_offload; 4-bit weight quant=Yes; KV cache offload to CPU=Yes,4-bit weights,512,32,280,"
        "generation_tokens_per_s,10.90,",
        "flexgen-oom,s,w,opt-175b,t4,208 GB,,DeepSpeed ZeRO-Inference: best policy found,fp16,1024,32,max feasible,"
        "generation_tokens_per_s,OOM,")
    assert got["flexgen-oom"]["skipped_reason"].startswith("the source reports out-of-memory")
    # the FlexGen paper's T4 row within 25%; the A6000 workstation row (rates carried from the T4 machine) within 40%
    assert abs(got["flexgen-x-opt-30b"]["error"]) < 0.25 and abs(got["zeroinf-flexgen-x-opt-30b"]["error"]) < 0.4
    assert "FlexGen policy" in got["flexgen-x-opt-30b"]["note"]
    assert summary["by_framework"]["flexgen"]["count"] == 2


def test_activations_stay_on_chip_where_they_fit():
    """An operator whose input and output fit half the L2 moves neither through DRAM; a larger one moves both.
    ResNet-50's stem convolution writes 112 x 112 x 64 INT8 (802,816 B an image) from a 150,528 B image: at
    batch 8 (7.6 MB) it fits half the L4's 48 MB; at batch 64 (61 MB) it does not."""
    from infercast.ops_vision import conv2d
    from infercast.roofline import ChipRates, OpTable
    from infercast.tiling import activations_on_chip

    rates = ChipRates.of(resolve("resnet-50", "l4").chip)
    p = Precision("int8", "int8", "int8")
    for batch, on_chip in ((8.0, True), (64.0, False)):
        op = conv2d("stem", 1, batch, 224, 224, 3, 64, 7, p, stride=2)
        assert float(op.act_bytes + op.write_bytes) == batch * (150_528 + 802_816)
        table = OpTable.of([op])
        moved = float(activations_on_chip(table, rates).bytes[0])
        assert moved == pytest.approx(float(op.weight_bytes) if on_chip else float(table.bytes[0]))


@settings(max_examples=25, deadline=None)
@given(st.floats(1e6, 1e9), st.floats(1.0, 10.0), st.integers(1, 512))
def test_more_sram_never_moves_more_activation_bytes(sram, more, batch):
    from infercast.roofline import OpTable
    from infercast.tiling import activations_on_chip

    sc = resolve("sd-1.5", "a100-sxm-80gb")
    (_, ops, _), *_ = [x for x in sc.network.passes(float(batch), sc.network.workload(), sc.precision)
                       if x[0] == "denoiser"]
    table = OpTable.of(ops)
    small = activations_on_chip(table, sc.rates.with_values(sram_bytes=sram)).bytes
    large = activations_on_chip(table, sc.rates.with_values(sram_bytes=sram * more)).bytes
    assert np.all(large <= small + 1e-6) and np.all(small <= table.bytes + 1e-6)


def test_materialised_attention_moves_the_scores_four_times():
    """SD-1.5's VAE mid-block attention at 512x512: 64 x 64 = 4096 tokens, one head of 512. Materialised, the
    scores (4096^2 pairs x 2 B = 33.5 MB) are written by the score GEMM, read and written by the softmax and read
    by the weighted sum: 4 x 33.5 MB beside the fused kernel's Q, K, V and O."""
    from infercast.ops_vision import Execution, attention

    p = Precision()
    fused = attention("a", 1, 1.0, 1, 4096, 4096, 512, p)
    mat = attention("a", 1, 1.0, 1, 4096, 4096, 512, p, x=Execution(materialized=True))
    assert [op.name for op in mat] == ["a_score", "a_softmax", "a_value"]
    scores = 4096**2 * 2
    assert sum(float(op.bytes) for op in mat) - float(fused[0].bytes) == 4 * scores
    assert sum(float(op.flops) for op in mat) == pytest.approx(float(fused[0].flops))


def test_eager_waits_for_the_host_and_is_never_faster():
    sc = resolve("sd-1.5", "a100-sxm-80gb")
    wl = dict(resolution="512x512", steps=1, cfg=True)
    fused = evaluate_network(sc, batch=np.array([1.0, 4.0, 16.0]), **wl)
    eager = evaluate_network(sc, batch=np.array([1.0, 4.0, 16.0]), eager=True, **wl)
    assert np.all(np.asarray(eager["latency_s"]) >= np.asarray(fused["latency_s"]))
    # one UNet step dispatched at 1 ms a kernel: at least its kernels x 1 ms, whatever the GPU
    slow = evaluate_network(sc, batch=1, eager=True, eager_launch_s=1e-3, **wl)
    x = sc.network.passes(1.0, sc.network.workload(**wl), sc.precision, execution_of(sc, True))
    kernels = sum(op.count for name, ops, _ in x if name == "denoiser" for op in ops)
    den = next(p for p in slow["passes"] if p["name"] == "denoiser")
    assert den["latency_s"] >= kernels * 1e-3 and kernels > 300


def test_cli_eager_and_materialized_for_networks():
    def run(*flags):
        r = _cli("estimate", "--model", "sd-1.5", "--hardware", "a100-sxm-80gb", "--steps", "2", *flags,
                 "--output", "json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)["latency_s"]
    fused, eager, mat = run(), run("--eager"), run("--attention", "materialized")
    assert eager > fused and mat > fused
    r = _cli("estimate", "--model", "llama-2-7b", "--hardware", "h100-sxm", "--eager")
    assert r.returncode == 2 and "--eager" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_an_sdxl_offload_row_says_whether_its_weights_were_offloaded():
    """The HF blog's SDXL baseline keeps its weights on the A100; its sequential-offload row copies them in for
    every pass, so it cannot be faster than the baseline (same batch of 4, 50 steps)."""
    from infercast.validate_offload import predict

    row = {"id": "hfblog-sdxl-x", "model": "sdxl-base-1.0", "hardware": "a100-sxm-40gb", "host_memory": "not stated",
           "storage": "", "precision": "fp16", "prompt_len": "", "gen_len": "", "batch": "4",
           "metric": "latency_ms_per_batch", "value": "1"}
    base, _, base_note = predict({**row, "offload_policy": "fp16+SDPA, no offload (baseline)"})
    seq, _, seq_note = predict({**row, "offload_policy": "sequential CPU offload"})
    assert base_note == "no offload: the weights stay on the GPU"
    assert seq_note.startswith("sequential offload") and seq > base


def test_a_pageable_copy_runs_at_its_share_of_the_pinned_rate():
    """1 GB host -> T4 over PCIe 3.0 x16 (the catalog's 16e9 B/s per direction). Pinned: 16e9 x 12.89 / 15.75 =
    13.0946e9 B/s, 1e9 / 13.0946e9 = 0.076367 s. Pageable: x 0.56 = 7.33299e9 B/s, 1e9 / 7.33299e9 = 0.136371 s.
    A drive read at 2 GB/s lands in a pinned bounce buffer either way: 1e9 / 2e9 = 0.5 s."""
    from infercast.hardware import load_chip

    t4 = load_chip("t4")
    assert parse_offload("weights=cpu").transfer_s(t4, "weights", 1e9) == pytest.approx(0.076367, rel=1e-4)
    pageable = parse_offload("weights=cpu,pinned=0")
    assert not pageable.pinned and pageable.describe().endswith("pinned=0")
    assert pageable.transfer_s(t4, "weights", 1e9) == pytest.approx(0.136371, rel=1e-4)
    assert parse_offload("weights=nvme,nvme_gbps=2,pinned=0").transfer_s(t4, "weights", 1e9) == pytest.approx(0.5)
    with pytest.raises(InfercastError, match="pinned=2"):
        parse_offload("weights=cpu,pinned=2")


def _flexgen_baseline(system: str, model: str, prompt: int) -> dict[str, str]:
    return {"id": f"flexgen-t2-{prompt}-{system.split()[0].lower()}-{model}", "source": "s", "workload": "w",
            "model": model, "hardware": "t4", "host_memory": "208 GB DRAM",
            "storage": "1.5 TB NVMe SSD (~2 GB/s read, ~1 GB/s write)",
            "offload_policy": f"{system}: best policy found", "precision": "fp16", "prompt_len": str(prompt),
            "gen_len": "32", "batch": "max feasible", "metric": "generation_tokens_per_s", "value": "1", "notes": ""}


def test_flexgen_baselines_run_the_batch_and_placement_their_authors_state():
    """FlexGen's README: DeepSpeed ran OPT-30B at 4 sequences with weights in DRAM at prompt 512 (+32 generated);
    at prompt 1024 the GPU memory that held 4 x 544 tokens per sequence holds floor(4 x 544 / 1056) = 2 sequences,
    and OPT-175B's 1 at prompt 512 becomes floor(544 / 1056) = 0 (the paper reports OOM there). Accelerate's OPT-6.7B
    ran with every weight on the GPU; its OPT-30B ran 8 sequences with weights copied from pageable DRAM."""
    from infercast.validate_offload import predict

    _, _, note = predict(_flexgen_baseline("DeepSpeed ZeRO-Inference", "opt-30b", 512))
    assert note.startswith("batch 4 (the source states it), weights 100% off the GPU (pageable)")
    _, _, note = predict(_flexgen_baseline("DeepSpeed ZeRO-Inference", "opt-30b", 1024))
    assert note.startswith("batch 2 ")
    value, why, _ = predict(_flexgen_baseline("DeepSpeed ZeRO-Inference", "opt-175b", 1024))
    assert value is None and why.startswith("not one sequence fits")
    _, _, note = predict(_flexgen_baseline("Accelerate", "opt-6.7b", 512))
    assert note.startswith("batch 2 (the source states it), weights 0% off the GPU,")
    _, _, note = predict(_flexgen_baseline("Accelerate", "opt-30b", 512))
    assert note.startswith("batch 8 (the source states it)") and "(pageable)" in note


def test_pageable_copies_slow_only_the_frameworks_that_make_them():
    """ZeRO-Inference's OPT-30B with 4-bit weights in DRAM (KV on the GPU, batch 24, A6000 workstation) copies
    pageable weights: at the pinned rate it would be faster; a FlexGen row of the same machine pins its weights."""
    import infercast.tiers as tiers
    from infercast.validate_offload import predict

    row = {"id": "zeroinf-x", "source": "s", "workload": "w", "model": "opt-30b", "hardware": "rtx-a6000",
           "host_memory": "252 GB", "storage": "PNY CS3040 2TB NVMe (5600 MB/s seq read)",
           "offload_policy": "ZeRO-Inference; weights -> cpu_offload; 4-bit weight quant=Yes; KV cache offload to "
                             "CPU=No", "precision": "4-bit weights", "prompt_len": "512", "gen_len": "32",
           "batch": "24", "metric": "generation_tokens_per_s", "value": "21.84", "notes": ""}
    pageable, _, _ = predict(row)
    share = tiers.PAGEABLE_COPY_SHARE
    try:
        tiers.PAGEABLE_COPY_SHARE = 1.0
        pinned, _, _ = predict(row)
    finally:
        tiers.PAGEABLE_COPY_SHARE = share
    assert pinned > pageable * 1.2


@pytest.mark.parametrize(("line", "within"), [
    # rows of shared/data/measured-offload.csv, verbatim less source and notes; the pageable share was fitted on
    # 31 rows including the first two (scripts/offload_fit.py), the third copies nothing from host memory
    ("flexgen-t2-512-deepspeed-opt-6.7b,opt-6.7b,t4,208 GB DRAM (Intel Xeon 2.00GHz),\"1.5 TB NVMe SSD (~2 GB/s "
     "read, ~1 GB/s write)\",DeepSpeed ZeRO-Inference: best policy found (see paper Tables 15/16 for placement %),"
     "fp16,512,32,max feasible,generation_tokens_per_s,9.28", 0.15),
    ("zeroinf-zero-inference-yesno-opt-175b,opt-175b,rtx-a6000,252 GB,PNY CS3040 2TB NVMe (5600 MB/s seq read),"
     "ZeRO-Inference; weights -> cpu_offload; 4-bit weight quant=Yes; KV cache offload to CPU=No,4-bit weights,512,"
     "32,8,generation_tokens_per_s,1.12", 0.15),
    ("flexgen-t2-1024-accelerate-opt-6.7b,opt-6.7b,t4,208 GB DRAM (Intel Xeon 2.00GHz),\"1.5 TB NVMe SSD (~2 GB/s "
     "read, ~1 GB/s write)\",Accelerate: best policy found (see paper Tables 15/16 for placement %),fp16,1024,32,"
     "max feasible,generation_tokens_per_s,13.01", 0.05),
])
def test_measured_offload_rows_within_their_error(line, within):
    import csv

    from infercast.validate_offload import predict

    keys = ["id", "model", "hardware", "host_memory", "storage", "offload_policy", "precision", "prompt_len",
            "gen_len", "batch", "metric", "value"]
    row = {**dict(zip(keys, next(csv.reader([line])))), "source": "s", "workload": "w", "notes": ""}
    value, why, _ = predict(row)
    assert why is None and value == pytest.approx(float(row["value"]), rel=within)
