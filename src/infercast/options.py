"""The options of a deployment, declared once: the commands' flags, the web API's request fields and
``resolve()``'s keywords.

Each ``Option`` is a keyword of ``infercast.scenario.resolve`` (or part of one: ``--pue`` is a field of its
``cost`` dict), its flag is the keyword with dashes (``--kv-cache-dtype``), and a web request names it in
snake_case (``kv_cache_dtype``). ``click_options`` decorates a command with them, ``request_model`` builds
the pydantic model of a request body, and ``resolve_kwargs`` turns either's values into ``resolve()``'s
keywords. Adding a flag is one entry here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from infercast.errors import InfercastError

DTYPE_HELP = "fp32, tf32, bf16, fp16, fp8 (fp8_e4m3, fp8_e5m2), int8, fp6, int4, fp4, mxfp4, nvfp4, mxfp6"
SCHEME_HELP = "q4_0, q4_k_m, q8_0, gptq, awq, w4a16, fp8, w8a8, mxfp4, nvfp4 or mxfp6"


@dataclass(frozen=True)
class Option:
    name: str
    """The keyword (snake_case); the flag is ``--`` and the name with dashes."""
    help: str
    type: type = str
    default: Any = None
    choices: tuple[str, ...] | None = None
    pairs: bool = False
    """Repeatable KEY=NUMBER pairs, gathered into a dict (``--efficiency bandwidth=0.8``)."""
    numbers: bool = True
    """Pairs' values are numbers; False: kept as given (``--chip dram_bandwidth=2x``), their reader checks them."""
    metavar: str | None = None
    into: str | None = None
    """The ``resolve()`` keyword whose dict this option is a field of ('memory', 'cost')."""
    required: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


MODEL = Option("model", "Preset id (infercast models list), or a config.json path or folder.", required=True)
HARDWARE = (
    Option("hardware", "Chip id (infercast hardware list) or a chip YAML path."),
    Option("num_chips", "Chips of --hardware in a default system (NVLink or PCIe in a node), or of --system to use; "
                        "the plan must use them all.", int),
    Option("system", "Named system (infercast hardware systems) or a system YAML path."),
    Option("nodes", "Nodes of --system (scale out over its inter-node link).", int),
    Option("offload", "Place tensors on memory tiers beyond the chip's: TENSOR=TIER[:FRACTION][+TIER:FRACTION] for "
                      "weights, kv, act (tiers cpu, cxl, nvme), overlap=0..1, pinned=0|1, TIER_gb=N, TIER_gbps=N; "
                      "e.g. weights=cpu:0.5,kv=cpu."),
    Option("chip", "Change one figure of the chip or design, e.g. dram_bandwidth=2x, sram_bytes=200e6, clock=1.2x "
                   "or peak_flops.fp8=4e15 (repeatable; keys: infercast whatif --help).", pairs=True, numbers=False,
           metavar="KEY=VALUE"),
)
PLAN = (
    Option("tp", "Tensor-parallel degree.", int, 1),
    Option("pp", "Pipeline-parallel stages.", int, 1),
    Option("ep", "Expert-parallel degree (MoE models).", int, 1),
    Option("dp", "Data-parallel replicas.", int, 1),
    Option("pp_stages", "Layers per pipeline stage, e.g. 41,39 (default: as even as possible)."),
    Option("sequence_parallel", "Reduce-scatter/all-gather instead of all-reduce.", bool, False),
    Option("micro_batches", "Micro-batches in flight with --pp [default: min(pp, sequences per replica)].", int),
)
PRECISION = (
    Option("dtype", f"Format of weights, activations and KV cache: {DTYPE_HELP} [default: fp16]."),
    Option("weight_dtype", "Weight format (overrides --dtype)."),
    Option("act_dtype", "Activation format (overrides --dtype)."),
    Option("kv_cache_dtype", "KV-cache format (overrides --dtype)."),
    Option("quantization", f"Named weight quantization scheme: {SCHEME_HELP}."),
    Option("expert_dtype", "Format of an MoE model's routed experts' weights, e.g. mxfp4 (gpt-oss's checkpoint) "
                           "[--weight-dtype]."),
    Option("weight_sparsity", "Fraction of zero weights in the decoder's linear layers, e.g. 0.5 [0].", float),
    Option("sparsity_pattern", "unstructured, or N:M such as 2:4 (sets the sparsity) [unstructured]."),
    Option("activation_sparsity", "Fraction of zero inputs to the linear layers (after ReLU, ...) [0].", float),
    Option("sparse_storage", "Store sparse weights with their zeros, or as non-zeros plus an index [compressed for "
                             "unstructured on chips that read it, else dense].", choices=("dense", "compressed")),
    Option("moe_imbalance", "Tokens of an MoE layer's busiest expert over the mean (1 = uniform routing).", float, 1.0),
    Option("attention", "Fused FlashAttention-style kernel (GQA-aware), one that re-reads K/V per query head in "
                        "decode (TensorRT-LLM before XQA), or scores written to memory [the framework's: flash].",
           choices=("flash", "flash-per-head", "materialized")),
)
FRAMEWORK = Option("framework", "Inference framework NAME[@VERSION]: generic, vllm, sglang, trtllm, llamacpp, "
                                "pytorch-eager, atom, optimum-habana, jetstream, neuron, mlc (infercast frameworks "
                                "list) [generic].", metavar="NAME[@VERSION]")
EFFICIENCY = (
    Option("efficiency", "Override an efficiency parameter, e.g. bandwidth=0.8 or step_overhead_s=0.002.",
           pairs=True, metavar="KEY=VALUE"),
    Option("calibration", "Calibration profile (infercast calibrate --fit) [the shipped fit of the public data].",
           metavar="PROFILE.yaml"),
    Option("comm", "Override a collective parameter, e.g. bandwidth=0.7 or overlap=0.5.", pairs=True,
           metavar="KEY=VALUE"),
    Option("gpu_memory_utilization", "Fraction of device memory the engine may use [0.9].", float, into="memory"),
    Option("max_num_batched_tokens", "Tokens one forward pass processes at most: the activations reserved "
                                     "[8192].", int, into="memory"),
)
PRICES = (
    Option("usd_per_chip_hour", "Cloud price of a chip-hour; without it chips are priced as owned hardware.", float),
    Option("electricity_usd_per_kwh", "Electricity price for owned hardware [0.08].", float, into="cost"),
    Option("pue", "Facility power over IT power [1.2].", float, into="cost"),
    Option("years", "Years to pay off owned hardware over (and a fleet's TCO) [5].", float, into="cost"),
    Option("energy", "Override an energy parameter, e.g. chip_overhead=8 or idle_fraction_of_tdp=0.15.",
           pairs=True, metavar="KEY=VALUE"),
    Option("cost", "Override a cost parameter, e.g. chip_price_usd=25000 or hosting_usd_per_kw_month=100.",
           pairs=True, metavar="KEY=VALUE"),
)
DEPLOYMENT = (MODEL, *HARDWARE, FRAMEWORK, *PLAN, *PRECISION, *EFFICIENCY, *PRICES)
"""Every option of a deployment: what ``resolve()`` takes."""

SAMPLING = (
    Option("beam_width", "Beams of a beam search: each prompt decodes this many sequences sharing its KV cache "
                         "and returns the best (MLPerf GPT-J uses 4).", int, 1),
    Option("n", "Completions sampled in parallel from each prompt, sharing its KV cache.", int, 1),
)
WORKLOAD = (
    Option("batch", "Sequences processed together (all replicas).", int, 1),
    Option("isl", "Input (prompt) tokens per sequence.", int, 128),
    Option("osl", "Output tokens per sequence.", int, 128),
    *SAMPLING,
)
NETWORK_WORKLOAD = (
    Option("resolution", "Image side HEIGHTxWIDTH in pixels for image models, e.g. 1024x1024 [the model's default]."),
    Option("steps", "Denoising steps of a diffusion pipeline [the model's default].", int),
    Option("cfg", "Classifier-free guidance on (--cfg) or off (--no-cfg): with it the denoiser runs on twice the "
                  "batch [the model's default: on for SD-1.5/2.1/XL and SD3, off for the guidance-distilled Flux].",
           bool, None),
    Option("seq_len", "Tokens per sample of an encoder (BERT) [384].", int),
    Option("eager", "Run the network as PyTorch eager does (diffusers without torch.compile): norms, activations "
                    "and modulations as kernels apart, each dispatched from Python [fused, as TensorRT or "
                    "torch.compile run it].", bool, False),
)
"""The workload of non-decoder models (``infercast.networks``): estimate's flags beside --batch."""
AUTO = Option("auto", "Pick the fastest valid tp x pp plan on the system's chips.", bool, False)

TRAIN_PLAN = tuple(o for o in PLAN if o.name in ("tp", "pp", "ep")) + (
    Option("dp", "Data-parallel replicas [the chips left after tp x pp x cp].", int),
    Option("cp", "Context-parallel degree: each sequence split over cp chips (ring attention).", int, 1),
    Option("zero_stage", "ZeRO stage: 0 replicated; 1 master weights and moments sharded (Megatron's distributed "
                         "optimizer); 2 and gradients; 3 and weights (FSDP).", int, 1),
    Option("virtual_stages", "Interleaved pipeline: model chunks per pipeline rank.", int, 1),
    Option("no_sequence_parallel", "Turn off the sequence parallelism the framework uses with --tp above 1.", bool,
           False),
)
TRAINING = (
    Option("seq_len", "Tokens per training sequence.", int, required=True),
    Option("global_batch", "Sequences per optimizer step, all replicas.", int, required=True),
    Option("micro_batch", "Sequences per micro-batch on each replica.", int, 1),
    Option("recompute", "Activation recomputation.", str, "selective", choices=("none", "selective", "full")),
    Option("selective", "What selective recomputation recomputes: the attention core (Megatron), every second "
                        "matmul (torchtitan's op policy) or every second layer [the framework's].",
           choices=("attention", "op", "layer")),
    Option("dtype", "GEMM math: bf16, fp16, fp8 (bf16 weights, FP32 master weights, FP8 GEMMs) or fp32.", str, "bf16",
           choices=("bf16", "fp16", "fp8", "fp32")),
    Option("framework", "megatron, nemo, fsdp, torchtitan or composer (NAME[@VERSION]): how states are kept and "
                        "collectives overlapped, and its fitted efficiencies.", str, "megatron"),
    Option("tp_comm_overlap", "Fraction of the TP collectives hidden (AsyncTP, userbuffers) [the framework's].", float),
    Option("dropout", "The model trains with dropout (GPT-3-era recipes): its masks and kernels.", bool, False),
    Option("flops_convention", "Model FLOPs for MFU: palm (6N + 12LHQS), llm-foundry or megatron.", str, "palm",
           choices=("palm", "llm-foundry", "megatron")),
    Option("tokens", "Tokens of a whole run, e.g. 15e12: its days, chip-hours, energy and cost.", float),
)
TRAIN_DEPLOYMENT = (MODEL, *HARDWARE, *TRAIN_PLAN,
                    *(o for o in PRECISION if o.name in ("attention", "moe_imbalance")),
                    *(o for o in EFFICIENCY if o.into is None), *PRICES)
"""What ``infercast train`` takes beside TRAINING: the deployment options that mean something for training."""


def click_options(options: Iterable[Option], **defaults: Any) -> Callable:
    """A decorator adding ``options`` to a click command (``defaults`` replace some options' defaults)."""
    import click

    def decorate(f):
        for o in reversed(list(options)):
            default = defaults.get(o.name, o.default)
            if o.type is bool and o.default is None:  # three states: on, off, or unset (the model's default)
                f = click.option(f"{o.flag}/--no-{o.flag[2:]}", o.name, default=None, help=o.help)(f)
            elif o.type is bool:
                f = click.option(o.flag, o.name, is_flag=True, help=o.help)(f)
            elif o.pairs:
                f = click.option(o.flag, o.name, multiple=True, metavar=o.metavar, help=o.help)(f)
            else:
                kind = click.Choice(list(o.choices)) if o.choices else o.type
                extra = {"default": default, "show_default": True} if default is not None else {}
                f = click.option(o.flag, o.name, type=kind, required=o.required, metavar=o.metavar, help=o.help,
                                 **extra)(f)
        return f

    return decorate


def _pairs(option: Option, value) -> dict[str, float] | None:
    """KEY=NUMBER strings (the CLI) or a mapping (a request) as a dict of numbers."""
    if not value:
        return None
    if isinstance(value, dict):
        items = value.items()
    else:
        items = []
        for pair in value:
            key, sep, number = str(pair).partition("=")
            if not sep:
                raise InfercastError(f"{option.flag} {pair!r}: expected KEY=NUMBER, e.g. {option.flag} bandwidth=0.8")
            items.append((key.strip(), number))
    out = {}
    for key, number in items:
        if not option.numbers:
            out[key] = number
            continue
        try:
            out[key] = float(number)
        except (TypeError, ValueError):
            raise InfercastError(f"{option.flag} {key}={number!r}: expected KEY=NUMBER, e.g. {option.flag} "
                                 f"bandwidth=0.8") from None
        if not math.isfinite(out[key]):
            raise InfercastError(f"{option.flag} {key}: must be a finite number, got {number}")
    return out


def _stages(value) -> tuple[int, ...] | None:
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = str(value).split(",")
    try:
        return tuple(int(x) for x in parts)
    except (TypeError, ValueError):
        raise InfercastError(f"--pp-stages {value!r}: expected layer counts such as 41,39") from None


def resolve_kwargs(values: dict[str, Any], options: Iterable[Option] = DEPLOYMENT) -> dict[str, Any]:
    """``resolve()``'s keywords from flag or request values (only ``options``' names are read and removed);
    the rest of ``values`` is left as it is."""
    out: dict[str, Any] = {}
    folded: dict[str, dict[str, Any]] = {}
    for o in options:
        if o.name not in values:
            continue
        value = values.pop(o.name)
        if o.pairs:
            value = _pairs(o, value)
        elif o.name == "pp_stages":
            value = _stages(value)
        if o.into is not None:
            if value is not None:
                folded.setdefault(o.into, {})[o.name] = value
            continue
        out[o.name] = value
    for target, fields in folded.items():
        out[target] = {**(out.get(target) or {}), **fields}
    return out


def request_model(name: str, options: Iterable[Option], doc: str = ""):
    """The pydantic model of a web request carrying ``options`` (unknown keys are errors)."""
    from typing import Literal

    from pydantic import ConfigDict, Field, create_model

    fields: dict[str, Any] = {}
    for o in options:
        if o.pairs:
            kind: Any = dict[str, float] | None if o.numbers else dict[str, float | str] | None
        elif o.name == "pp_stages":
            kind = list[int] | str | None
        elif o.choices:
            kind = Literal[o.choices] if o.required else Literal[o.choices] | None  # type: ignore[valid-type]
        else:
            kind = o.type if o.required or o.default is not None else o.type | None
        default = ... if o.required else o.default
        fields[o.name] = (kind, Field(default=default, description=o.help))
    return create_model(name, __config__=ConfigDict(extra="forbid"), __doc__=doc or None, **fields)
