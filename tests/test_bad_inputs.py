"""Bad input is one line, 'error: ...', naming the flag, key or column and the fix, and exit 2:
never a traceback, never a silently wrong number. One table over every reader, run through the CLI's
``main()`` in-process."""

from __future__ import annotations

import copy
import json
import os
import stat
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pytest
import yaml
from cli_run import run_main


@dataclass(frozen=True)
class Dir:
    """A folder to create (with this mode)."""

    mode: int = 0o755


@dataclass(frozen=True)
class File:
    """A file to create with this content and mode."""

    content: str | bytes
    mode: int = 0o644


# --- valid starting points, each case changes one thing ---------------------------------------

LLAMA = {"model_type": "llama", "vocab_size": 1000, "hidden_size": 256, "intermediate_size": 512,
         "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 4,
         "max_position_embeddings": 2048}
MIXTRAL = {**LLAMA, "model_type": "mixtral", "num_local_experts": 8, "num_experts_per_tok": 2}
DEEPSEEK = {"model_type": "deepseek_v3", "vocab_size": 1000, "hidden_size": 256, "intermediate_size": 512,
            "moe_intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 8,
            "num_key_value_heads": 8, "n_routed_experts": 8, "num_experts_per_tok": 2, "n_shared_experts": 1,
            "first_k_dense_replace": 1, "kv_lora_rank": 64, "q_lora_rank": 96, "qk_rope_head_dim": 16,
            "qk_nope_head_dim": 32, "v_head_dim": 32, "max_position_embeddings": 4096}
FALCON = {"model_type": "falcon", "vocab_size": 1000, "hidden_size": 256, "num_attention_heads": 8,
          "num_hidden_layers": 2, "new_decoder_architecture": True, "num_kv_heads": 2}
GPT2 = {"model_type": "gpt2", "vocab_size": 1000, "n_embd": 256, "n_layer": 2, "n_head": 8, "n_positions": 1024}


def config(base: dict, **changes) -> str:
    return json.dumps({**base, **changes})


def _catalog_yaml(*parts: str) -> dict:
    return yaml.safe_load((resources.files("infercast").joinpath("catalog", *parts)).read_text(encoding="utf-8"))


CHIP = _catalog_yaml("hardware", "h100-sxm.yaml")
SYSTEM = _catalog_yaml("systems", "hgx-h100.yaml")
PROFILE = _catalog_yaml("calibration", "default.yaml")


def changed(base: dict, path: str, value) -> str:
    """``base`` as YAML with the value at the dotted ``path`` replaced (created if absent)."""
    doc = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return yaml.safe_dump(doc, sort_keys=False)


MEASURED_HEADER = ("id,source,model,hardware,num_chips,tp,pp,weight_dtype,act_dtype,kv_dtype,framework,scenario,"
                   "batch,isl,osl,op,gemm_m,gemm_n,gemm_k,metric,value,constraint,notes")
MEASURED_ROW = {"id": "x-1", "source": "test", "model": "llama-2-7b", "hardware": "h100-sxm", "num_chips": "1",
                "tp": "1", "pp": "1", "weight_dtype": "fp16", "act_dtype": "fp16", "kv_dtype": "fp16",
                "framework": "vllm", "scenario": "static", "batch": "1", "isl": "128", "osl": "128", "op": "",
                "gemm_m": "", "gemm_n": "", "gemm_k": "", "metric": "output_tokens_per_s", "value": "1000",
                "constraint": "", "notes": ""}
OP_ROW = {**MEASURED_ROW, "scenario": "op", "op": "qkv_proj", "gemm_m": "128", "gemm_n": "12288", "gemm_k": "4096",
          "metric": "op_latency_s", "value": "0.0001", "batch": "", "isl": "", "osl": ""}


def measured(**changes) -> str:
    row = {**MEASURED_ROW, **changes}
    return MEASURED_HEADER + "\n" + ",".join(row[c] for c in MEASURED_HEADER.split(",")) + "\n"


def op_row(**changes) -> str:
    return measured(**{**OP_ROW, **changes})


BINARY = bytes(range(256)) * 4  # NUL bytes and everything else
LATIN1_JSON = '{"model_type": "llama", "_comment": "caf\xe9"}'.encode("latin-1")
LATIN1_YAML = "id: caf\xe9\n".encode("latin-1")
LATIN1_CSV = "arrival_s,isl,osl\n0,10,5 # caf\xe9\n".encode("latin-1")
DEEP_JSON = "[" * 100_000 + "]" * 100_000
HUGE_INT_JSON = '{"model_type": "llama", "hidden_size": ' + "9" * 5000 + "}"
LONG_FIELD = '"' + "x" * 200_000 + '"'

# --- the commands each kind of file goes through -----------------------------------------------

MODEL = ("estimate", "--hardware", "h100-sxm", "--isl", "16", "--osl", "4", "--model")
CHIP_ARGS = ("estimate", "--model", "llama-2-7b", "--isl", "16", "--osl", "4", "--hardware")
SYSTEM_ARGS = ("estimate", "--model", "llama-2-7b", "--tp", "8", "--isl", "16", "--osl", "4", "--system")
PROFILE_ARGS = ("estimate", "--model", "llama-2-7b", "--hardware", "h100-sxm", "--calibration")
ESTIMATE = ("estimate", "--model", "llama-2-7b", "--hardware", "h100-sxm", "--isl", "16", "--osl", "4")
SIMULATE = ("simulate", "--model", "llama-2-7b", "--hardware", "h100-sxm", "--num-prompts", "3", "--isl", "16",
            "--osl", "4")
TRACE_ARGS = ("simulate", "--model", "llama-2-7b", "--hardware", "h100-sxm", "--trace")
LENGTHS_ARGS = ("simulate", "--model", "llama-2-7b", "--hardware", "h100-sxm", "--num-prompts", "5", "--lengths")
DATA_ARGS = ("validate", "--output", "json", "--data")

C, Y, S, P, T, L, D = "{d}/config.json", "{d}/chip.yaml", "{d}/system.yaml", "{d}/profile.yaml", "{d}/trace.csv", \
    "{d}/lengths.csv", "{d}/data.csv"


def _cases():
    # config.json: types and signs before use
    yield "cfg-hidden-string", (*MODEL, C), {"config.json": config(LLAMA, hidden_size="256")}, \
        "'hidden_size' must be a whole number"
    yield "cfg-heads-zero", (*MODEL, C), {"config.json": config(LLAMA, num_attention_heads=0)}, \
        "'num_attention_heads' must be at least 1"
    yield "cfg-hidden-float", (*MODEL, C), {"config.json": config(LLAMA, hidden_size=256.0)}, \
        "'hidden_size' must be a whole number"
    yield "cfg-hidden-fraction", (*MODEL, C), {"config.json": config(LLAMA, hidden_size=256.5)}, \
        "'hidden_size' must be a whole number"
    yield "cfg-layers-bool", (*MODEL, C), {"config.json": config(LLAMA, num_hidden_layers=True)}, \
        "'num_hidden_layers' must be a whole number"
    yield "cfg-vocab-negative", (*MODEL, C), {"config.json": config(LLAMA, vocab_size=-5)}, \
        "'vocab_size' must be at least 1"
    yield "cfg-intermediate-zero", (*MODEL, C), {"config.json": config(LLAMA, intermediate_size=0)}, \
        "'intermediate_size' must be at least 1"
    yield "cfg-intermediate-negative", (*MODEL, C), {"config.json": config(LLAMA, intermediate_size=-512)}, \
        "'intermediate_size' must be at least 1"
    yield "cfg-layers-zero", (*MODEL, C), {"config.json": config(LLAMA, num_hidden_layers=0)}, \
        "'num_hidden_layers' must be at least 1"
    yield "cfg-kv-not-dividing", (*MODEL, C), {"config.json": config(LLAMA, num_key_value_heads=3)}, \
        "'num_key_value_heads' is 3, which does not divide"
    yield "cfg-kv-more-than-heads", (*MODEL, C), {"config.json": config(LLAMA, num_key_value_heads=16)}, \
        "more than the 8 query heads"
    yield "cfg-kv-zero", (*MODEL, C), {"config.json": config(LLAMA, num_key_value_heads=0)}, \
        "'num_key_value_heads' is 0; give the number of K/V heads, or remove the key"
    yield "cfg-deep-nesting", (*MODEL, C), {"config.json": DEEP_JSON}, "nested too deeply"
    yield "cfg-huge-integer", (*MODEL, C), {"config.json": HUGE_INT_JSON}, "not valid JSON"
    yield "cfg-dense-layers-above", (*MODEL, C), {"config.json": config(DEEPSEEK, first_k_dense_replace=10)}, \
        "'first_k_dense_replace' is 10, not fewer than the 4 layers"
    yield "cfg-dense-layers-all", (*MODEL, C), {"config.json": config(DEEPSEEK, first_k_dense_replace=4)}, \
        "'first_k_dense_replace' is 4"
    yield "cfg-dense-layers-negative", (*MODEL, C), {"config.json": config(DEEPSEEK, first_k_dense_replace=-1)}, \
        "'first_k_dense_replace' must be at least 0"
    yield "cfg-topk-above-experts", (*MODEL, C), {"config.json": config(MIXTRAL, num_experts_per_tok=9)}, \
        "'num_experts_per_tok' is 9, more than the 8 experts"
    yield "cfg-topk-zero", (*MODEL, C), {"config.json": config(MIXTRAL, num_experts_per_tok=0)}, \
        "'num_experts_per_tok' must be at least 1"
    yield "cfg-experts-zero", (*MODEL, C), {"config.json": config(MIXTRAL, num_local_experts=0)}, \
        "'num_local_experts' must be at least 1"
    yield "cfg-deepseek-topk-above", (*MODEL, C), {"config.json": config(DEEPSEEK, num_experts_per_tok=20)}, \
        "'num_experts_per_tok' is 20, more than the 8 experts ('n_routed_experts')"
    yield "cfg-deepseek-experts-zero", (*MODEL, C), {"config.json": config(DEEPSEEK, n_routed_experts=0)}, \
        "'n_routed_experts' must be at least 1"
    yield "cfg-deepseek-lora-string", (*MODEL, C), {"config.json": config(DEEPSEEK, kv_lora_rank="64")}, \
        "'kv_lora_rank' must be a whole number"
    yield "cfg-deepseek-moe-freq", (*MODEL, C), {"config.json": config(DEEPSEEK, moe_layer_freq=2)}, \
        "'moe_layer_freq' other than 1"
    yield "cfg-deepseek-shared-negative", (*MODEL, C), {"config.json": config(DEEPSEEK, n_shared_experts=-2)}, \
        "'n_shared_experts' must be at least 0"
    yield "cfg-hidden-absurd", (*MODEL, C), {"config.json": config(LLAMA, hidden_size=10**12)}, \
        "'hidden_size' is 1,000,000,000,000, above the"
    yield "cfg-context-absurd", (*MODEL, C), {"config.json": config(LLAMA, max_position_embeddings=10**15)}, \
        "'max_position_embeddings' is 1,000,000,000,000,000, above the"
    yield "cfg-layers-absurd", (*MODEL, C), {"config.json": config(LLAMA, num_hidden_layers=10**7)}, \
        "'num_hidden_layers' is 10,000,000, above the"
    yield "cfg-vocab-infinite", (*MODEL, C), {"config.json": config(LLAMA, vocab_size=float("inf"))}, \
        "'vocab_size' must be a whole number, got inf"
    yield "cfg-hidden-nan", (*MODEL, C), {"config.json": config(LLAMA, hidden_size=float("nan"))}, \
        "'hidden_size' must be a whole number, got nan"
    yield "cfg-tie-string", (*MODEL, C), {"config.json": config(LLAMA, tie_word_embeddings="yes")}, \
        "'tie_word_embeddings' must be true or false"
    yield "cfg-act-number", (*MODEL, C), {"config.json": config(LLAMA, hidden_act=5)}, "'hidden_act' must be a short name"
    yield "cfg-model-type-list", (*MODEL, C), {"config.json": config(LLAMA, model_type=["llama"])}, \
        "model_type ['llama'] is not supported"
    yield "cfg-text-config-type", (*MODEL, C), {"config.json": json.dumps({"text_config": {"model_type": 5}})}, \
        "'text_config.model_type' must be a string"
    yield "cfg-text-config-hidden", (*MODEL, C), \
        {"config.json": json.dumps({"model_type": "llava", "text_config": {"model_type": "llama", "hidden_size": "x"}})}, \
        "'text_config.hidden_size' must be a whole number"
    yield "cfg-gpt2-heads-zero", (*MODEL, C), {"config.json": config(GPT2, n_head=0)}, "'n_head' must be at least 1"
    yield "cfg-gpt2-inner-zero", (*MODEL, C), {"config.json": config(GPT2, n_inner=0)}, "'n_inner' must be at least 1"
    yield "cfg-gpt2-not-multiple", (*MODEL, C), {"config.json": config(GPT2, n_embd=250)}, \
        "hidden size 250 is not a multiple of 8 heads"
    yield "cfg-falcon-kv-not-dividing", (*MODEL, C), {"config.json": config(FALCON, num_kv_heads=3)}, \
        "'num_kv_heads' is 3, which does not divide"
    yield "cfg-falcon-kv-zero", (*MODEL, C), {"config.json": config(FALCON, num_kv_heads=0)}, \
        "'num_kv_heads' is 0; give the number of K/V heads"
    yield "cfg-sliding-window-zero", (*MODEL, C), {"config.json": config(LLAMA, sliding_window=0)}, \
        "'sliding_window' must be at least 1"
    yield "cfg-head-dim-negative", (*MODEL, C), {"config.json": config(LLAMA, head_dim=-1)}, \
        "'head_dim' must be at least 1"
    yield "cfg-use-window-string", (*MODEL, C), {"config.json": config(LLAMA, use_sliding_window="false")}, \
        "'use_sliding_window' must be true or false"
    yield "cfg-binary", (*MODEL, C), {"config.json": BINARY}, "binary file"
    yield "cfg-latin1", (*MODEL, C), {"config.json": LATIN1_JSON}, "not UTF-8"
    yield "cfg-folder-named-config", (*MODEL, "{d}/m"), {"m": Dir(), "m/config.json": Dir()}, "is a folder"
    yield "cfg-empty-name", (*MODEL, ""), {}, "--model: the name is empty"
    # the local Hugging Face cache (HF_HUB_CACHE points at {d}/hub, empty unless a case fills it)
    yield "hf-not-cached", (*MODEL, "meta-llama/Meta-Llama-3-8B"), {}, "closest preset: llama-3-8b"
    yield "hf-not-cached-offline", (*MODEL, "mistralai/Mistral-7B-v0.1"), {}, "the hub is not consulted"
    yield "hf-cached-bad-config", (*MODEL, "acme/tiny"), \
        {"hub/models--acme--tiny/snapshots/abc123/config.json": config(LLAMA, num_key_value_heads=5)}, \
        "--model acme/tiny: config.json key 'num_key_value_heads' is 5"

    # chip YAML
    yield "chip-capacity-zero", (*CHIP_ARGS, Y), {"chip.yaml": changed(CHIP, "memory.capacity_bytes.value", 0)}, \
        "memory.capacity_bytes.value: must be above zero"
    yield "chip-capacity-infinite", (*CHIP_ARGS, Y), \
        {"chip.yaml": changed(CHIP, "memory.capacity_bytes.value", float("inf"))}, \
        "memory.capacity_bytes.value: Input should be a finite number"
    yield "chip-capacity-absurd", (*CHIP_ARGS, Y), {"chip.yaml": changed(CHIP, "memory.capacity_bytes.value", 1e30)}, \
        "memory.capacity_bytes.value: 1e+30 is above 1e+24"
    yield "chip-capacity-bool", (*CHIP_ARGS, Y), {"chip.yaml": changed(CHIP, "memory.capacity_bytes.value", True)}, \
        "memory.capacity_bytes.value: must be a number"
    yield "chip-bandwidth-zero", (*CHIP_ARGS, Y), \
        {"chip.yaml": changed(CHIP, "memory.bandwidth_bytes_per_s.value", 0)}, \
        "memory.bandwidth_bytes_per_s.value: must be above zero"
    yield "chip-bandwidth-infinite", (*CHIP_ARGS, Y), \
        {"chip.yaml": changed(CHIP, "memory.bandwidth_bytes_per_s.value", float("inf"))}, \
        "memory.bandwidth_bytes_per_s.value: Input should be a finite number"
    yield "chip-bandwidth-negative", (*CHIP_ARGS, Y), \
        {"chip.yaml": changed(CHIP, "memory.bandwidth_bytes_per_s.value", -1e12)}, \
        "memory.bandwidth_bytes_per_s.value: Input should be greater than or equal to 0"
    yield "chip-flops-zero", (*CHIP_ARGS, Y), {"chip.yaml": changed(CHIP, "peak_flops.fp16.value", 0)}, \
        "peak_flops.fp16.value: must be above zero"
    yield "chip-flops-infinite", (*CHIP_ARGS, Y), {"chip.yaml": changed(CHIP, "peak_flops.fp16.value", float("inf"))}, \
        "peak_flops.fp16.value: Input should be a finite number"
    yield "chip-flops-nan", (*CHIP_ARGS, Y), {"chip.yaml": changed(CHIP, "peak_flops.bf16.value", float("nan"))}, \
        "peak_flops.bf16.value: Input should be a finite number"
    yield "chip-idle-above-tdp", (*CHIP_ARGS, Y), \
        {"chip.yaml": changed(CHIP, "idle_w", {"value": 800, "source": "test"})}, "idle_w.value: 800 W is above tdp_w 700 W"
    yield "chip-tdp-zero", (*CHIP_ARGS, Y), {"chip.yaml": changed(CHIP, "tdp_w.value", 0)}, "tdp_w.value: must be above zero"
    yield "chip-units-zero", (*CHIP_ARGS, Y), {"chip.yaml": changed(CHIP, "num_compute_units.value", 0)}, \
        "num_compute_units.value: must be above zero"
    yield "chip-units-fraction", (*CHIP_ARGS, Y), {"chip.yaml": changed(CHIP, "num_compute_units.value", 132.5)}, \
        "num_compute_units.value: must be a whole number of units, got 132.5"
    yield "chip-process-zero", (*CHIP_ARGS, Y), {"chip.yaml": changed(CHIP, "process_nm.value", 0)}, \
        "process_nm.value: must be above zero"
    yield "chip-link-zero", ("estimate", "--model", "llama-2-7b", "--num-chips", "2", "--tp", "2", "--hardware", Y), \
        {"chip.yaml": changed(CHIP, "interconnect.bandwidth_bytes_per_s_per_direction.value", 0)}, \
        "write interconnect: null"
    yield "chip-link-latency-nan", (*CHIP_ARGS, Y), \
        {"chip.yaml": changed(CHIP, "interconnect.latency_s", {"value": float("nan"), "source": "test"})}, \
        "interconnect.latency_s.value: Input should be a finite number"
    yield "chip-host-link-zero", (*CHIP_ARGS, Y), \
        {"chip.yaml": changed(CHIP, "host_link.bandwidth_bytes_per_s_per_direction.value", 0)}, \
        "host_link.bandwidth_bytes_per_s_per_direction.value: must be above zero"
    yield "chip-efficiency-infinite", (*CHIP_ARGS, Y), \
        {"chip.yaml": changed(CHIP, "efficiency", {"step_overhead_s": float("inf")})}, \
        "efficiency.step_overhead_s: must be a finite number"
    yield "chip-sparsity-infinite", (*CHIP_ARGS, Y), \
        {"chip.yaml": changed(CHIP, "sparsity.max_speedup", float("inf"))}, "sparsity.max_speedup: Input should be a finite"
    yield "chip-impossible-date", (*CHIP_ARGS, Y), {"chip.yaml": changed(CHIP, "notes", "x") + "launch_date: 2024-13-45\n"}, \
        "not valid YAML (ValueError: month must be in 1..12)"
    yield "chip-key-with-newline", (*CHIP_ARGS, Y), {"chip.yaml": changed(CHIP, "bad\nkey", 1)}, \
        "'bad\\nkey': unknown key"
    yield "chip-binary", (*CHIP_ARGS, Y), {"chip.yaml": BINARY}, "--hardware {d}/chip.yaml: a binary file"
    yield "chip-latin1", (*CHIP_ARGS, Y), {"chip.yaml": LATIN1_YAML}, "--hardware {d}/chip.yaml: not UTF-8"
    yield "chip-folder", (*CHIP_ARGS, "{d}/chips.yaml"), {"chips.yaml": Dir()}, "--hardware {d}/chips.yaml: is a folder"

    yield "chip-empty-path", (*CHIP_ARGS, ""), {}, "--hardware: the path is empty"

    # system YAML
    yield "system-bandwidth-zero", (*SYSTEM_ARGS, S), \
        {"system.yaml": changed(SYSTEM, "intra_node.bandwidth_bytes_per_s_per_direction.value", 0)}, \
        "intra_node.bandwidth_bytes_per_s_per_direction.value: must be above zero"
    yield "system-latency-nan", (*SYSTEM_ARGS, S), \
        {"system.yaml": changed(SYSTEM, "intra_node.latency_s.value", float("nan"))}, \
        "intra_node.latency_s.value: Input should be a finite number"
    yield "system-inter-infinite", (*SYSTEM_ARGS, S), \
        {"system.yaml": changed(SYSTEM, "inter_node.bandwidth_bytes_per_s_per_direction.value", float("inf"))}, \
        "inter_node.bandwidth_bytes_per_s_per_direction.value: Input should be a finite number"
    yield "system-chips-per-node-zero", (*SYSTEM_ARGS, S), {"system.yaml": changed(SYSTEM, "chips_per_node", 0)}, \
        "chips_per_node: Input should be greater than 0"
    yield "system-unknown-chip", (*SYSTEM_ARGS, S), {"system.yaml": changed(SYSTEM, "chip", "h100-sxn")}, \
        "chip: unknown hardware 'h100-sxn'"
    yield "system-binary", (*SYSTEM_ARGS, S), {"system.yaml": BINARY}, "--system {d}/system.yaml: a binary file"
    yield "system-latin1", (*SYSTEM_ARGS, S), {"system.yaml": LATIN1_YAML}, "--system {d}/system.yaml: not UTF-8"

    # calibration profiles
    yield "profile-unknown-family", (*PROFILE_ARGS, P), \
        {"profile.yaml": changed(PROFILE, "families.nvidia-hoper", {"bandwidth": 0.5})}, \
        "families.nvidia-hoper: not a chip family (did you mean nvidia-hopper"
    yield "profile-unknown-chip", (*PROFILE_ARGS, P), \
        {"profile.yaml": changed(PROFILE, "chips", {"h100-sxn": {"bandwidth": 0.5}})}, \
        "chips.h100-sxn: not a chip id of the catalog (did you mean h100-sxm"
    yield "profile-chip-alias", (*PROFILE_ARGS, P), \
        {"profile.yaml": changed(PROFILE, "chips", {"a100": {"bandwidth": 0.5}})}, \
        "chips.a100: an alias of a100-sxm-80gb"
    yield "profile-chip-path", (*PROFILE_ARGS, P), \
        {"profile.yaml": changed(PROFILE, "chips", {"./my-chip.yaml": {"bandwidth": 0.5}})}, \
        "chips../my-chip.yaml: not a chip id"
    yield "profile-comm-infinite", (*PROFILE_ARGS, P), {"profile.yaml": changed(PROFILE, "comm.launch_s", float("inf"))}, \
        "comm.launch_s: must be a finite number"
    yield "profile-generic-infinite", (*PROFILE_ARGS, P), \
        {"profile.yaml": changed(PROFILE, "generic.step_overhead_s", float("inf"))}, \
        "generic.step_overhead_s: must be a finite number"
    yield "profile-generic-range", (*PROFILE_ARGS, P), {"profile.yaml": changed(PROFILE, "generic.bandwidth", 2)}, \
        "generic.bandwidth: Input should be less than or equal to 1"
    yield "profile-binary", (*PROFILE_ARGS, P), {"profile.yaml": BINARY}, "--calibration {d}/profile.yaml: a binary file"
    yield "profile-latin1", (*PROFILE_ARGS, P), {"profile.yaml": LATIN1_YAML}, "--calibration {d}/profile.yaml: not UTF-8"
    yield "profile-folder", (*PROFILE_ARGS, "{d}/profiles"), {"profiles": Dir()}, "is a folder"

    # formats
    yield "format-unknown", (*ESTIMATE, "--dtype", "fp9"), {}, "unknown format 'fp9'"
    yield "format-unknown-kv", (*ESTIMATE, "--kv-cache-dtype", "float8"), {}, "unknown format 'float8'"
    yield "format-unknown-upper", (*ESTIMATE, "--act-dtype", "FP5"), {}, "unknown format 'FP5'"

    yield "override-efficiency-inf", (*ESTIMATE, "--efficiency", "step_overhead_s=inf"), {}, \
        "--efficiency step_overhead_s: must be a finite number, got inf"
    yield "override-comm-nan", (*ESTIMATE, "--comm", "launch_s=nan"), {}, "--comm launch_s: must be a finite number"

    # output files (checked before any work)
    yield "out-folder", (*SIMULATE, "--timeline-csv", "{d}/out"), {"out": Dir()}, \
        "--timeline-csv {d}/out: is a folder"
    yield "out-read-only-folder", (*SIMULATE, "--timeline-csv", "{d}/ro/t.csv"), {"ro": Dir(0o555)}, \
        "the folder {d}/ro is not writable"
    yield "out-read-only-file", (*SIMULATE, "--force", "--timeline-csv", "{d}/t.csv"), {"t.csv": File("x\n", 0o444)}, \
        "--timeline-csv {d}/t.csv: the file is read-only"
    yield "out-no-folder", (*SIMULATE, "--timeline-csv", "{d}/none/t.csv"), {}, "no such folder"
    yield "out-exists", (*SIMULATE, "--timeline-csv", "{d}/t.csv"), {"t.csv": "x\n"}, "the file exists"

    # trace and lengths CSV
    yield "trace-isl-inf", (*TRACE_ARGS, T), {"trace.csv": "arrival_s,isl,osl\n0,inf,5\n"}, \
        "line 2: isl must be a whole number of tokens"
    yield "trace-isl-huge", (*TRACE_ARGS, T), {"trace.csv": "arrival_s,isl,osl\n0,1e300,5\n"}, \
        "line 2: isl must be a whole number of tokens"
    yield "trace-arrival-nan", (*TRACE_ARGS, T), {"trace.csv": "arrival_s,isl,osl\nnan,10,5\n"}, \
        "line 2: arrival_s must be seconds from the start of the run, from 0 to 1e+09, got nan"
    yield "trace-osl-zero", (*TRACE_ARGS, T), {"trace.csv": "arrival_s,isl,osl\n0,10,0\n"}, \
        "line 2: osl must be a whole number of tokens"
    yield "trace-short-row", (*TRACE_ARGS, T), {"trace.csv": "arrival_s,isl,osl\n0,10\n"}, \
        "line 2: column osl is '', not a number"
    yield "trace-header-only", (*TRACE_ARGS, T), {"trace.csv": "arrival_s,isl,osl\n"}, "no rows"
    yield "trace-missing-column", (*TRACE_ARGS, T), {"trace.csv": "arrival_s,isl\n0,10\n"}, "missing column(s) osl"
    yield "trace-field-limit", (*TRACE_ARGS, T), {"trace.csv": f"arrival_s,isl,osl\n0,10,{LONG_FIELD}\n"}, \
        "line 2: not valid CSV"
    yield "trace-binary", (*TRACE_ARGS, T), {"trace.csv": BINARY}, "--trace {d}/trace.csv: a binary file"
    yield "trace-latin1", (*TRACE_ARGS, T), {"trace.csv": LATIN1_CSV}, "--trace {d}/trace.csv: not UTF-8"
    yield "trace-folder", (*TRACE_ARGS, "{d}/traces"), {"traces": Dir()}, "--trace {d}/traces: is a folder"
    yield "lengths-negative", (*LENGTHS_ARGS, L), {"lengths.csv": "isl,osl\n-1,5\n"}, "line 2: isl must be a whole number"
    yield "lengths-missing-column", (*LENGTHS_ARGS, L), {"lengths.csv": "isl\n10\n"}, "missing column(s) osl"
    yield "lengths-binary", (*LENGTHS_ARGS, L), {"lengths.csv": BINARY}, "--lengths {d}/lengths.csv: a binary file"
    yield "lengths-latin1", (*LENGTHS_ARGS, L), {"lengths.csv": "isl,osl\n1,2 \xe9\n".encode("latin-1")}, "not UTF-8"

    # measured-data CSV (validate --data)
    yield "data-batch-fraction", (*DATA_ARGS, D), {"data.csv": measured(batch="1.5")}, "line 2: column batch is '1.5'"
    yield "data-batch-zero", (*DATA_ARGS, D), {"data.csv": measured(batch="0")}, "line 2: column batch is '0'"
    yield "data-tp-text", (*DATA_ARGS, D), {"data.csv": measured(tp="two")}, "line 2: column tp is 'two'"
    yield "data-chips-negative", (*DATA_ARGS, D), {"data.csv": measured(num_chips="-1")}, "column num_chips is '-1'"
    yield "data-isl-inf", (*DATA_ARGS, D), {"data.csv": measured(isl="inf")}, "column isl is 'inf'"
    yield "data-value-zero", (*DATA_ARGS, D), {"data.csv": measured(value="0")}, "column value is '0'"
    yield "data-value-negative", (*DATA_ARGS, D), {"data.csv": measured(value="-3")}, "column value is '-3'"
    yield "data-value-nan", (*DATA_ARGS, D), {"data.csv": measured(value="nan")}, "column value is 'nan'"
    yield "data-value-inf", (*DATA_ARGS, D), {"data.csv": measured(value="inf")}, "column value is 'inf'"
    yield "data-model-empty", (*DATA_ARGS, D), {"data.csv": measured(model="")}, "line 2: column model is empty"
    yield "data-short-row", (*DATA_ARGS, D), {"data.csv": MEASURED_HEADER + "\nx-1,test,llama-2-7b\n"}, \
        "line 2: column hardware is empty"
    yield "data-gemm-no-shape", (*DATA_ARGS, D), {"data.csv": op_row(gemm_k="")}, "op qkv_proj needs its shape"
    yield "data-softmax-no-kv-len", (*DATA_ARGS, D), \
        {"data.csv": op_row(op="attn_softmax", gemm_m="", gemm_n="", gemm_k="", notes="phase=decode tokens=8")}, \
        "op attn_softmax needs kv_len=N"
    yield "data-notes-huge", (*DATA_ARGS, D), \
        {"data.csv": op_row(op="norm", gemm_m="", gemm_n="", gemm_k="", notes="tokens=" + "9" * 30)}, \
        "notes give tokens="
    yield "data-missing-columns", (*DATA_ARGS, D), {"data.csv": "id,model,hardware\nx,llama-2-7b,h100-sxm\n"}, \
        "missing column(s) scenario, metric, value; see docs/data-formats.md"
    yield "data-field-limit", (*DATA_ARGS, D), {"data.csv": MEASURED_HEADER + "\n" + LONG_FIELD + "\n"}, "line 2: not valid CSV"
    yield "data-binary", (*DATA_ARGS, D), {"data.csv": BINARY}, "--data {d}/data.csv: a binary file"
    yield "data-latin1", (*DATA_ARGS, D), {"data.csv": measured(notes="caf\xe9").encode("latin-1")}, \
        "--data {d}/data.csv: not UTF-8"
    yield "data-empty-path", (*DATA_ARGS, ""), {}, "--data: the path is empty"
    yield "data-folder", (*DATA_ARGS, "{d}/datadir"), {"datadir": Dir()}, "--data {d}/datadir: is a folder"

    # flags that conflict, or that the engine would ignore (issue 12: one rule per kind of input)
    E8 = ("estimate", "--model", "llama-3-8b")
    yield "flag-hardware-vs-system", (*E8, "--hardware", "a100-sxm-80gb", "--system", "hgx-h100"), {}, \
        "--hardware a100-sxm-80gb conflicts with --system hgx-h100"
    yield "flag-num-chips-unused", (*E8, "--hardware", "h100-sxm", "--num-chips", "4"), {}, \
        "--num-chips 4 but the plan tp x pp x dp = 1 uses 1"
    yield "flag-num-chips-over-system", (*E8, "--system", "hgx-h100", "--num-chips", "16"), {}, \
        "--num-chips 16: system hgx-h100 has 8; add --nodes"
    yield "flag-nodes-with-hardware", (*E8, "--hardware", "h100-sxm", "--nodes", "2"), {}, \
        "--nodes scales a named --system"
    yield "flag-gptq-vs-fp16-weights", (*E8, "--hardware", "h100-sxm", "--quantization", "gptq", "--weight-dtype",
                                        "fp16"), {}, "--weight-dtype fp16 contradicts --quantization gptq"
    yield "flag-micro-batches-without-pp", (*E8, "--hardware", "h100-sxm", "--micro-batches", "4"), {}, \
        "--micro-batches splits a batch over pipeline stages; it needs --pp"
    yield "flag-compare-twice", ("compare", "--model", "llama-3-8b", "--systems", "h100-sxm,h100-sxm"), {}, \
        "--systems: h100-sxm is named twice"
    yield "flag-compare-one", ("compare", "--model", "llama-3-8b", "--systems", "h100-sxm"), {}, \
        "--systems: name at least two"
    yield "flag-auto-with-dp", (*E8, "--system", "hgx-h100", "--auto", "--dp", "2"), {}, \
        "--auto chooses --tp and --pp"
    yield "flag-kv-dtype-scheme", (*E8, "--hardware", "h100-sxm", "--kv-cache-dtype", "q4_0"), {}, \
        "--kv-cache-dtype q4_0: a weight quantization scheme"
    yield "flag-act-dtype-scheme", (*E8, "--hardware", "h100-sxm", "--act-dtype", "gptq4"), {}, \
        "--act-dtype gptq4: a weight quantization scheme"
    yield "flag-unknown-scheme", (*E8, "--hardware", "h100-sxm", "--quantization", "q3"), {}, \
        "--quantization: unknown scheme 'q3'"
    yield "flag-attention-kind", ("estimate", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--attention",
                                  "paged"), {}, "--attention"

    # impossible values the engine itself refuses
    yield "moe-imbalance-above-e-over-k", ("estimate", "--model", "mixtral-8x7b", "--hardware", "h100-sxm",
                                           "--moe-imbalance", "5"), {}, "exceeds mixtral-8x7b's 8 experts / 2"
    yield "moe-imbalance-inf", ("estimate", "--model", "mixtral-8x7b", "--hardware", "h100-sxm", "--moe-imbalance",
                                "inf"), {}, "--moe-imbalance must be at least 1"
    yield "moe-imbalance-below-one", ("estimate", "--model", "mixtral-8x7b", "--hardware", "h100-sxm",
                                      "--moe-imbalance", "0.5"), {}, "--moe-imbalance must be at least 1"
    yield "efficiency-overhead-huge", (*E8, "--hardware", "h100-sxm", "--efficiency", "kernel_overhead_s=1e9"), {}, \
        "--efficiency kernel_overhead_s: Input should be less than or equal to 1"
    yield "efficiency-half-dim-inf", (*E8, "--hardware", "h100-sxm", "--efficiency", "gemm_half_dim=inf"), {}, \
        "--efficiency gemm_half_dim: must be a finite number"
    yield "efficiency-unknown-key", (*E8, "--hardware", "h100-sxm", "--efficiency", "bandwith=0.5"), {}, \
        "--efficiency bandwith: unknown key"
    yield "cost-pue-inf", (*E8, "--hardware", "h100-sxm", "--pue", "inf"), {}, "--pue: input should be a finite number"
    yield "cost-years-huge", (*E8, "--hardware", "h100-sxm", "--years", "1e300"), {}, "--years: input should be less"
    yield "cost-usd-inf", (*E8, "--hardware", "h100-sxm", "--usd-per-chip-hour", "inf"), {}, "--usd-per-chip-hour"
    yield "cost-price-nan", (*E8, "--hardware", "h100-sxm", "--cost", "chip_price_usd=nan"), {}, \
        "--cost chip_price_usd: must be a finite number"
    yield "energy-per-bit-huge", (*E8, "--hardware", "h100-sxm", "--energy", "hbm_j_per_bit=1e300"), {}, \
        "--energy hbm_j_per_bit"
    yield "energy-overhead-below-one", (*E8, "--hardware", "h100-sxm", "--energy", "chip_overhead=0.5"), {}, \
        "--energy chip_overhead"
    yield "fleet-qps-huge", ("fleet", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--qps", "1e300"), {}, \
        "--qps 1e+300: beyond any service"
    yield "fleet-qps-zero", ("fleet", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--qps", "0"), {}, \
        "--qps must be a positive number"
    yield "fleet-utilization", ("fleet", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--qps", "1",
                                "--target-utilization", "2"), {}, "--target-utilization must be in (0, 1]"
    yield "fleet-not-a-decoder", ("fleet", "--model", "sdxl-base-1.0", "--hardware", "h100-sxm", "--qps", "1"), {}, \
        "fleet sizes replicas of a language model; sdxl-base-1.0 is not a decoder"
    yield "simulate-not-a-decoder", ("simulate", "--model", "bert-large", "--hardware", "h100-sxm"), {}, \
        "simulate: bert-large is not a decoder"
    yield "workload-context", (*E8, "--hardware", "h100-sxm", "--isl", "8000", "--osl", "500"), {}, \
        "exceeds llama-3-8b's context of 8192 tokens"
    yield "workload-batch-zero", (*E8, "--hardware", "h100-sxm", "--batch", "0"), {}, "--batch must be a whole number"
    yield "workload-batch-huge", (*E8, "--hardware", "h100-sxm", "--batch", "10000000000000"), {}, \
        "--batch of 1e+13 is beyond any deployment"
    yield "plan-tp-zero", (*E8, "--hardware", "h100-sxm", "--tp", "0"), {}, "--tp must be a whole number"
    yield "plan-tp-not-dividing", (*E8, "--hardware", "h100-sxm", "--tp", "3", "--num-chips", "3"), {}, \
        "--tp 3 does not divide"
    yield "plan-pp-over-layers", (*E8, "--hardware", "h100-sxm", "--pp", "64", "--num-chips", "64"), {}, \
        "--pp 64 exceeds llama-3-8b's 32 layers"
    yield "plan-ep-dense", (*E8, "--hardware", "h100-sxm", "--ep", "2"), {}, "--ep 2: llama-3-8b is a dense model"
    yield "plan-system-too-small", (*E8, "--system", "hgx-h100", "--tp", "8", "--pp", "2"), {}, \
        "the plan needs tp x pp x dp = 16 chips but system hgx-h100 has 8"


CASES = list(_cases())


def make_files(root: Path, files: dict) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Dir):
            path.mkdir(exist_ok=True)
            continue
        content, mode = (content.content, content.mode) if isinstance(content, File) else (content, 0o644)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        path.chmod(mode)
    for name, content in files.items():  # modes of folders last, once their files exist
        if isinstance(content, Dir):
            (root / name).chmod(content.mode)


def run_case(root: Path, args: tuple, files: dict) -> tuple[int, str, str, str | None]:
    make_files(root, files)
    try:
        return run_main([a.replace("{d}", str(root)) for a in args], env={"HF_HUB_CACHE": str(root / "hub")})
    finally:
        for path in [root, *root.rglob("*")]:  # let pytest clean up read-only folders
            if path.is_dir() and not path.is_symlink():
                path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_table_is_large_and_ids_unique():
    assert len(CASES) >= 80
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("args", "files", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_naming_the_problem(tmp_path, args, files, expected):
    code, out, err, escaped = run_case(tmp_path, args, files)
    assert escaped is None, escaped
    assert "Traceback" not in out + err
    assert code == 2, (code, out[-500:], err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert expected.replace("{d}", str(tmp_path)) in lines[0]


# --- what the readers now accept ---------------------------------------------------------------


def test_hf_repo_id_reads_the_newest_cached_snapshot(tmp_path, monkeypatch):
    from infercast.model import load_model, preset_config

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--acme--llama-like-7b"
    old, new = repo / "snapshots" / "aaa", repo / "snapshots" / "bbb"
    for folder, layers in ((old, 1), (new, 2)):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(config(LLAMA, num_hidden_layers=layers))
    os.utime(old, (1, 1))
    assert load_model("acme/llama-like-7b").num_layers == 2
    # refs/main names the snapshot from_pretrained would load offline; it wins over the newest
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("aaa")
    (tmp_path / "models--acme--pinned").mkdir()
    (tmp_path / "models--acme--pinned" / "snapshots" / "ccc").mkdir(parents=True)
    (tmp_path / "models--acme--pinned" / "snapshots" / "ccc" / "config.json").write_text(
        json.dumps(preset_config("llama-2-7b")))
    assert load_model("acme/pinned").params() == load_model("llama-2-7b").params()


def test_hf_home_and_default_cache_locations(tmp_path, monkeypatch):
    from infercast.model import hf_cache_dir

    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hf_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.delenv("HF_HOME")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert hf_cache_dir() == Path.home() / ".cache" / "huggingface" / "hub"


@pytest.mark.parametrize(("name", "canonical"), [("FP16", "fp16"), ("BF16", "bf16"), ("float16", "fp16"),
                                                 ("bfloat16", "bf16"), ("float32", "fp32"), ("Fp8", "fp8")])
def test_format_names_in_any_case_and_hf_aliases(name, canonical):
    from infercast.formats import element_bytes, get_format

    assert get_format(name).name == canonical
    assert element_bytes(name) == element_bytes(canonical)


def test_estimate_with_hf_dtype_names_matches_the_canonical_ones():
    from infercast import estimate

    a = estimate("llama-2-7b", "h100-sxm", dtype="bfloat16", isl=64, osl=8)
    b = estimate("llama-2-7b", "h100-sxm", dtype="bf16", isl=64, osl=8)
    assert a.e2e_latency_s == b.e2e_latency_s
    q = estimate("llama-2-7b", "rtx-4090", weight_dtype="Q4_K_M", isl=64, osl=8)
    r = estimate("llama-2-7b", "rtx-4090", weight_dtype="q4_k_m", isl=64, osl=8)
    assert q.memory.weights_bytes == r.memory.weights_bytes  # the q6_K LM head is kept whatever the case


def test_measured_csv_dtypes_are_read_in_any_case(tmp_path):
    from infercast.validate import read_rows

    path = tmp_path / "data.csv"
    path.write_text(measured(weight_dtype="BF16", act_dtype="bfloat16", kv_dtype="FP8"))
    row = read_rows(str(path))[0]
    assert (row["weight_dtype"], row["act_dtype"], row["kv_dtype"]) == ("bf16", "bf16", "fp8")


def test_written_files_get_the_umask_mode_and_keep_a_replaced_files_mode(tmp_path):
    from infercast.files import write_new

    old = os.umask(0o027)
    try:
        write_new(str(tmp_path / "new.csv"), "a\n")
        assert stat.S_IMODE((tmp_path / "new.csv").stat().st_mode) == 0o640
    finally:
        os.umask(old)
    kept = tmp_path / "kept.csv"
    kept.write_text("old\n")
    kept.chmod(0o664)
    write_new(str(kept), "new\n", force=True)
    assert kept.read_text() == "new\n"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o664
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_utf8_bom_is_not_part_of_the_first_column(tmp_path):
    from infercast.serving.workload import read_lengths

    path = tmp_path / "lengths.csv"
    path.write_bytes("\ufeffisl,osl\n10,5\n".encode())
    isl, osl = read_lengths(str(path), 4096)
    assert isl.tolist() == [10] and osl.tolist() == [5]
