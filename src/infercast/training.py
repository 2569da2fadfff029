"""Training: the backward pass, the optimizer step, and the time, memory, energy and cost of a training step.

A step trains on ``global_batch`` sequences of ``seq_len`` tokens with tp x pp x cp x dp chips. Each data-
parallel replica runs m = global_batch / (dp x micro_batch) micro-batches through its pipeline. Per micro-
batch, each chip of a stage runs:

    forward     the stage's forward operators (``ops.forward_ops``) on micro_batch x seq_len / cp tokens;
                the last stage adds the LM head over every token and the cross-entropy
    backward    per forward GEMM [M, K] x [K, N]: a data-gradient GEMM dY W^T ([M, N] x [N, K]) and a
                weight-gradient GEMM X^T dY ([K, M] x [M, N]), 2 M N K FLOPs each; FlashAttention's
                backward recomputes the scores and runs five matmuls to the forward's two (Dao 2023);
                norms, activations and adds read their input and the output gradient and write the
                input gradient
    recompute   selective: the attention core's forward again; full: the whole layers' forward again
                (Korthikanti et al. 2022)
    collectives TP all-reduces (or reduce-scatter / all-gather with sequence parallelism), twice per
                layer forward and twice backward; CP ring exchanges of K/V (and dK/dV) hidden behind
                attention as far as it lasts; PP sends of activations and gradients

and once per step the data-parallel gradient reduction (all-reduce; reduce-scatter and all-gather of the
parameters with ZeRO 1-2; with ZeRO-3 / FSDP an all-gather in the forward, another in the backward and
a reduce-scatter per micro-batch), hidden behind compute by the framework's documented overlap fraction
(``catalog/training/frameworks.yaml``), and the Adam update of the chip's share of the parameters.

Operators are timed on the roofline (``roofline.times``) with the chip's calibrated efficiencies, the
matrix efficiencies replaced by the training fit of the framework on the chip's family
(``catalog/training/calibration.yaml``). A pipeline step takes m x the slowest stage plus the others'
share of the fill and drain, (p - 1) / v stage-times in all: the bubble (p - 1) / v / (m + (p - 1) / v).

MFU counts model FLOPs, not executed ones: 6 N + 12 L H Q S per token (PaLM, Chowdhery et al. 2022,
appendix B: N the parameters of the matrix multiplies, i.e. without the input embedding table, L layers,
H query heads of Q, S the sequence), against the dense peak of the format the GEMMs run in. HFU counts
what runs, recomputation included. ``model_flops_per_token`` also gives the conventions the measured
rows use (llm-foundry: 6 N with N all parameters, + 12 L h S; NeMo: Megatron-LM's formula).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from infercast.errors import InfercastError, did_you_mean, pydantic_error_line
from infercast.evaluation import Pricer
from infercast.formats import element_bytes
from infercast.model import ModelSpec, load_model
from infercast.ops import SOFTMAX_FLOPS, Kernel, Op, attention_kernels, forward_ops, gemm_op, make_op, norm_op
from infercast.parallel import allgather_s, allreduce_s, p2p_s, stage_layers, stage_weight_params, tp_shard
from infercast.roofline import Efficiency
from infercast.scenario import Scenario, StageGroup, positive_int, resolve
from infercast.system import System
from infercast.training_memory import (
    RECOMPUTE,
    SELECTIVE,
    Recompute,
    Selective,
    StateBytes,
    States,
    bubble_fraction,
    head_activation_bytes,
    in_flight,
    layer_activation_bytes,
    op_policy_recomputed,
    shard_states,
    tokens_that_fit,
)

TRAIN_DTYPES = ("bf16", "fp16", "fp8", "fp32")
CONVENTIONS = ("palm", "llm-foundry", "megatron")
ADAM_FLOPS = 15
"""Arithmetic per parameter of an AdamW update: two moment updates (3 + 4), bias corrections, the square
root, the division and epsilon, weight decay and the learning-rate step."""
_CATALOG = resources.files("infercast") / "catalog" / "training"


# --- frameworks and their fitted efficiencies ------------------------------------------------------


class Framework(BaseModel):
    """How a training framework keeps model states and overlaps its collectives (documented assumptions)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = ""
    name: str
    aliases: list[str] = []
    stack: Literal["pytorch", "megatron"]
    """The kernels that run its GEMMs and attention: PyTorch's ops with flash-attn, or Megatron-core's
    Transformer Engine; a framework without fitted rows on a chip family takes its stack's fit."""
    gradients_bytes: float = Field(gt=0, le=8)
    """Bytes per gradient element held (FP32 main grads: 4)."""
    reduce_bytes: float = Field(gt=0, le=8)
    """Bytes per gradient element the data-parallel reduction sends."""
    master_is_sharded_param: bool
    """FSDP: the sharded parameter is the FP32 master; 16-bit copies exist only for gathered layers."""
    sequence_parallel: bool
    """With tp > 1, norms and dropout run sequence-parallel (reduce-scatter / all-gather for all-reduce)."""
    overlap_dp: float = Field(ge=0, le=1)
    """Fraction of the compute it overlaps with that a data-parallel collective can hide behind."""
    overlap_tp: float = Field(ge=0, le=1)
    """Fraction of the tensor-parallel collectives hidden behind the GEMMs."""
    overlap_cp: float = Field(ge=0, le=1)
    """Fraction of the attention compute the context-parallel ring exchange can hide behind."""
    overlap_pp: float = Field(ge=0, le=1)
    """Fraction of the pipeline sends hidden."""
    reduce_every_micro_batch: bool
    """ZeRO-3: gradients are reduce-scattered after every micro-batch (FSDP without no_sync)."""
    gathered_layers: float = Field(ge=0)
    """ZeRO-3: layers held whole at once (the one computed and the one prefetched)."""
    pp_keeps_gathered: bool
    """ZeRO-3 with pipeline parallelism: the stage's parameters stay gathered through the step, with their
    unsharded 16-bit gradients (no all-gather per micro-batch)."""
    workspace_bytes: float = Field(ge=0)
    """Memory outside the tensors: CUDA context, library and communication workspaces."""
    selective: Selective
    """What ``--recompute selective`` recomputes in this framework (``training_memory.SELECTIVE``)."""
    logits_bytes: float = Field(gt=0)
    """Bytes per logit the loss holds at its peak (16-bit logits, FP32 copies)."""
    notes: dict[str, str] = {}

    @model_validator(mode="after")
    def _notes_name_fields(self) -> Framework:
        unknown = set(self.notes) - set(type(self).model_fields)
        if unknown:
            raise ValueError(f"notes: {', '.join(sorted(unknown))} name no field")
        return self


@cache
def frameworks() -> dict[str, Framework]:
    data = yaml.safe_load((_CATALOG / "frameworks.yaml").read_text(encoding="utf-8"))
    out = {}
    for fid, fields in data["frameworks"].items():
        try:
            out[fid] = Framework(id=fid, **fields)
        except ValidationError as exc:
            raise InfercastError(f"catalog/training/frameworks.yaml: {fid}.{pydantic_error_line(exc)}") from None
    return out


def load_framework(name: str) -> Framework:
    """A framework by id or alias, in any case; ``NAME@VERSION`` is read as NAME (one profile per framework)."""
    key = name.split("@", 1)[0].strip().lower()
    for f in frameworks().values():
        if key == f.id or key in (a.lower() for a in f.aliases):
            return f
    ids = list(frameworks())
    raise InfercastError(f"--framework: unknown framework '{name}'{did_you_mean(key, ids)}; use one of {', '.join(ids)}")


MATRIX_FIELDS = ("gemm_max", "gemm_max_narrow", "attention_max")
"""The efficiency fields the training fit replaces: what a framework's kernels reach on a chip family."""


class TrainingCalibration(BaseModel):
    """Matrix efficiencies of training, per framework and chip family, fitted to measured training runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    infercast_training_calibration: int = Field(default=1, ge=1, le=1)
    description: str = ""
    frameworks: dict[str, dict[str, dict[str, float]]] = {}
    """framework id -> chip family -> fields of ``MATRIX_FIELDS`` the data pins (the rest stay the chip's)."""
    stacks: dict[str, dict[str, dict[str, float]]] = {}
    """kernel stack -> chip family -> fields, pooled over the stack's frameworks (``Framework.stack``)."""
    allocator_reserve: float = Field(default=0.0, ge=0, le=1)
    """What PyTorch's caching allocator reserves beyond the live tensors at the peak, as a fraction of them:
    the memory a framework reports (max reserved) over what its tensors need."""
    fit: dict[str, Any] | None = None
    """How it was fitted, on what, and its in-sample and leave-one-source-out errors."""

    @model_validator(mode="after")
    def _known(self) -> TrainingCalibration:
        tables = {f"{kind}.{f}.{k}": v for kind in ("frameworks", "stacks")
                  for f, fams in getattr(self, kind).items() for k, v in fams.items()}
        for where, table in tables.items():
            for key, value in table.items():
                if key not in MATRIX_FIELDS:
                    raise ValueError(f"{where}.{key}: not one of {', '.join(MATRIX_FIELDS)}")
                if not (isinstance(value, (int, float)) and 0 < value <= 1):
                    raise ValueError(f"{where}.{key}: must be in (0, 1], got {value!r}")
        return self

    def fields_for(self, framework: str, family: str, stack: str = "") -> dict[str, float]:
        """The fitted fields of a framework on a chip family: its own fit, else its stack's (none: the chip's
        inference calibration stands)."""
        return {**self.stacks.get(stack, {}).get(family, {}), **self.frameworks.get(framework, {}).get(family, {})}


@cache
def load_training_calibration(path: str | None = None) -> TrainingCalibration:
    """The shipped training fit (``catalog/training/calibration.yaml``), or a profile YAML that ``infercast
    calibrate --fit`` wrote from a training CSV."""
    from infercast.files import read_text
    from infercast.hardware import parse_spec

    if path is None:
        return parse_spec((_CATALOG / "calibration.yaml").read_text(encoding="utf-8"), "training calibration",
                          TrainingCalibration)
    return parse_spec(read_text(path, "--calibration"), f"--calibration {path}", TrainingCalibration)


# --- the resolved training run ----------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """What a training step does beside the deployment (``Scenario``): workload, sharding, policies."""

    seq_len: int
    global_batch: int
    micro_batch: int
    cp: int
    dp: int
    zero_stage: int
    recompute: Recompute
    dtype: str
    framework: Framework
    selective: Selective
    virtual_stages: int
    sequence_parallel: bool
    dropout: bool
    overlap_tp: float
    reduce_bytes: float
    states: StateBytes
    convention: str = "palm"
    allocator_reserve: float = 0.0

    @property
    def micro_batches(self) -> int:
        """Micro-batches per replica per step (gradient accumulation steps x pipeline micro-batches)."""
        return self.global_batch // (self.dp * self.micro_batch)

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch * self.seq_len


@dataclass(frozen=True)
class TrainScenario:
    sc: Scenario
    """The deployment (model, chip, system, tp x pp plan with dp x cp replicas, bf16 precision, efficiencies)."""
    cfg: TrainConfig

    @property
    def spec(self) -> ModelSpec:
        return self.sc.spec


def state_bytes(dtype: str, framework: Framework) -> StateBytes:
    """Bytes per parameter of each state class: 16-bit working weights with FP32 master weights and moments
    (FP8 training keeps them so too: Transformer Engine and torchao cast to FP8 per GEMM), the framework's
    gradients; FP32 training has no separate master."""
    if dtype == "fp32":
        return StateBytes(weights=4.0, master=0.0, moments=8.0, gradients=4.0)
    return StateBytes(weights=2.0, master=4.0, moments=8.0, gradients=framework.gradients_bytes)


def resolve_training(model: str | ModelSpec, hardware=None, *, seq_len: int, global_batch: int, micro_batch: int = 1,
                     tp: int = 1, pp: int = 1, cp: int = 1, dp: int | None = None, ep: int = 1, zero_stage: int = 1,
                     recompute: str = "selective", dtype: str = "bf16", framework: str = "megatron",
                     virtual_stages: int = 1, sequence_parallel: bool | None = None, dropout: bool = False,
                     tp_comm_overlap: float | None = None, reduce_dtype: str | None = None,
                     selective: str | None = None,
                     convention: str = "palm", system=None, num_chips: int | None = None, nodes: int | None = None,
                     efficiency: dict[str, Any] | None = None, training_calibration: TrainingCalibration | None = None,
                     **deployment: Any) -> TrainScenario:
    """Resolve and check a training run; every bad input is one ``InfercastError`` line naming the flag.

    ``dp`` defaults to the chips left after tp x pp x cp (``num_chips``, or the system's chips). The
    deployment keywords (``comm``, ``energy``, ``cost``, ``usd_per_chip_hour``, ``calibration``, ...) are
    ``scenario.resolve``'s.
    """
    spec = model if isinstance(model, ModelSpec) else load_model(model)
    for flag, value in (("--seq-len", seq_len), ("--global-batch", global_batch), ("--micro-batch", micro_batch),
                        ("--tp", tp), ("--pp", pp), ("--cp", cp), ("--ep", ep), ("--virtual-stages", virtual_stages)):
        positive_int(flag, value)
    if zero_stage not in (0, 1, 2, 3):
        raise InfercastError(f"--zero-stage must be 0, 1, 2 or 3 (3 = FSDP full sharding), got {zero_stage!r}")
    if recompute not in RECOMPUTE:
        raise InfercastError(f"--recompute must be one of {', '.join(RECOMPUTE)}, got {recompute!r}")
    if dtype not in TRAIN_DTYPES:
        raise InfercastError(f"--dtype for training must be one of {', '.join(TRAIN_DTYPES)}, got {dtype!r}")
    if convention not in CONVENTIONS:
        raise InfercastError(f"--flops-convention must be one of {', '.join(CONVENTIONS)}, got {convention!r}")
    fw = load_framework(framework)
    if dp is None:
        chips = num_chips
        if chips is None and system is not None:
            from infercast.system import load_system

            sys_ = system if isinstance(system, System) else load_system(system)
            chips = sys_.chips_per_node * (nodes or sys_.nodes)
        chips = chips if chips is not None else tp * pp * cp
        if chips % (tp * pp * cp):
            raise InfercastError(f"{chips} chips are not a multiple of tp x pp x cp = {tp * pp * cp}; give --dp or "
                                 f"change the plan")
        dp = chips // (tp * pp * cp)
    positive_int("--dp", dp)
    if global_batch % (dp * micro_batch):
        raise InfercastError(f"--global-batch {global_batch} is not a multiple of dp x micro-batch = {dp} x "
                             f"{micro_batch}; each replica must run whole micro-batches")
    if seq_len % cp:
        raise InfercastError(f"--seq-len {seq_len} is not a multiple of --cp {cp}")
    if seq_len > spec.max_position_embeddings and spec.position_embedding == "learned":
        raise InfercastError(f"--seq-len {seq_len}: {spec.name} has a learned position table of "
                             f"{spec.max_position_embeddings} rows; give a config with a longer context")
    if virtual_stages > 1:
        if pp == 1:
            raise InfercastError("--virtual-stages interleaves pipeline stages; it needs --pp above 1")
        if spec.num_layers < pp * virtual_stages:
            raise InfercastError(f"--virtual-stages {virtual_stages}: {spec.name}'s {spec.num_layers} layers are fewer "
                                 f"than pp x v = {pp * virtual_stages} chunks")
    selective = fw.selective if selective is None else selective
    if selective not in SELECTIVE:
        raise InfercastError(f"--selective must be one of {', '.join(SELECTIVE)}, got {selective!r}")
    sp = fw.sequence_parallel if sequence_parallel is None else sequence_parallel
    sp = bool(sp and tp > 1)
    cal = training_calibration or load_training_calibration()
    reduce = fw.reduce_bytes if reduce_dtype is None else element_bytes(reduce_dtype, "--reduce-dtype")
    overlap_tp = fw.overlap_tp if tp_comm_overlap is None else float(tp_comm_overlap)
    if not 0 <= overlap_tp <= 1:
        raise InfercastError(f"--tp-comm-overlap must be a fraction from 0 to 1, got {tp_comm_overlap!r}")
    dense = "fp16" if dtype == "fp16" else ("fp32" if dtype == "fp32" else "bf16")
    sc = resolve(spec, hardware, system=system, num_chips=num_chips, nodes=nodes, dtype=dense, tp=tp, pp=pp, ep=ep,
                 dp=dp * cp, sequence_parallel=sp, **deployment)
    if dtype == "fp8":
        sc.chip.native_format("fp8")
    fitted = cal.fields_for(fw.id, sc.chip.family, fw.stack)
    eff = sc.efficiency.model_copy(update={**fitted, **(efficiency or {})}) if fitted or efficiency else sc.efficiency
    sc = replace(sc, efficiency=eff)
    cfg = TrainConfig(seq_len=seq_len, global_batch=global_batch, micro_batch=micro_batch, cp=cp, dp=dp,
                      zero_stage=zero_stage, recompute=recompute, dtype=dtype, framework=fw, selective=selective,
                      virtual_stages=virtual_stages, sequence_parallel=sp, dropout=dropout, overlap_tp=overlap_tp,
                      reduce_bytes=reduce, states=state_bytes(dtype, fw), convention=convention,
                      allocator_reserve=cal.allocator_reserve)
    return TrainScenario(sc, cfg)


# --- operators of a training micro-batch ------------------------------------------------------------


def loss_ops(spec: ModelSpec, tokens, p, *, norm_tokens=None) -> list[Op]:
    """The last stage's head in training: final norm, the LM head over every token (``spec`` is the chip's
    TP shard: its vocabulary slice) and the cross-entropy over the logits, computed in FP32."""
    V = spec.vocab_size
    logits = tokens * V
    return [
        norm_op("final_norm", spec, 1, tokens if norm_tokens is None else norm_tokens, p),
        gemm_op("lm_head", 1, tokens, V, spec.hidden_size, p, bias=spec.lm_head_bias, wbytes=p.head_weight_bytes,
                sparse=False),
        make_op("cross_entropy", "vector", 1, flops=SOFTMAX_FLOPS * logits, act=logits * p.act_bytes,
                write=logits * 4.0),
    ]


def gemm_backward(op: Op, grad_over_weight_bytes: float = 1.0) -> list[Op]:
    """The data-gradient and weight-gradient GEMMs of a forward GEMM [M, K] x [K, N] -> [M, N].

    dX = dY W^T ([M, N] x [N, K]): reads dY (the forward's output bytes) and W, writes dX (the forward's
    input bytes). dW = X^T dY ([K, M] x [M, N]): reads X and dY, writes dW (the weight's bytes at the
    gradient's width). Both cost the forward's 2 M N K FLOPs and share its smallest dimension.
    """
    common = dict(count=op.count, kv_bytes=op.kv_bytes * 0, min_dim=op.min_dim, math=op.math,
                  compute_factor=op.compute_factor, vector_flops=op.vector_flops, tiles=None)
    dgrad = Op(f"{op.name}_dgrad", "gemm", flops=op.flops, weight_bytes=op.weight_bytes, act_bytes=op.write_bytes,
               write_bytes=op.act_bytes, **common)
    wgrad = Op(f"{op.name}_wgrad", "gemm", flops=op.flops, weight_bytes=op.weight_bytes * 0,
               act_bytes=op.act_bytes + op.write_bytes, write_bytes=op.weight_bytes * grad_over_weight_bytes,
               **common)
    return [dgrad, wgrad]


def vector_backward(op: Op, act_bytes: float = 2.0) -> Op:
    """An elementwise kernel's backward: read its input(s) and the output gradient, write the input
    gradient(s), at twice the arithmetic; the embedding's is a scatter-add of the output gradient into the
    table's gradient (one add per element of the output)."""
    if op.name == "embedding":
        return Op("embedding_bwd", "vector", op.count, op.write_bytes / act_bytes, op.weight_bytes * 0,
                  op.write_bytes, op.kv_bytes * 0, op.write_bytes, op.min_dim, op.math)
    return Op(f"{op.name}_bwd", "vector", op.count, 2 * op.flops, op.weight_bytes, op.act_bytes + op.write_bytes,
              op.kv_bytes * 0, op.act_bytes, op.min_dim, op.math)


def attention_backward_kernels(spec: ModelSpec, p, attention: str = "flash") -> list[Kernel]:
    """Backward of the attention core of every layer, per (query, key) pair and new token.

    FlashAttention-2 (Dao 2023, Algorithm 2) recomputes S = Q K^T and P, then dV = P^T dO, dP = dO V^T,
    dQ = dS K and dK = dS^T Q: 3 x 2 d_qk + 2 x 2 d_v FLOPs per pair and head (2.5 x the forward's for
    d_qk = d_v), reading Q, K, V, O, dO and writing dQ, dK, dV. Materialised attention reads the saved
    probabilities instead: dV and dP (value backward), the softmax backward, dQ and dK (score backward).
    """
    H, L = spec.num_heads, spec.num_layers
    if spec.is_mla:
        d_qk, d_v = spec.qk_nope_head_dim + spec.qk_rope_head_dim, spec.v_head_dim
        kv_elems = H * (d_qk + d_v)  # prefill attends over up-projected per-head K and V
        group = 1
    else:
        d_qk = d_v = spec.head_dim
        kv_elems = 2 * spec.kv_dim
        group = spec.num_heads // spec.num_kv_heads
    a = p.act_bytes
    q_b, o_b, kv_b = H * d_qk * a, H * d_v * a, kv_elems * a
    shape = dict(group=group, dim=min(d_qk, d_v), window=spec.sliding_window, math=p.attention_math)
    none = (0.0, 0.0, 0.0)
    if attention == "flash":
        return [Kernel("attention_bwd", "attention", L, flops=(H * (6 * d_qk + 4 * d_v + SOFTMAX_FLOPS), 0.0, 0.0),
                       act=(0.0, q_b + kv_b + 2 * o_b, 0.0), kv=none, write=(0.0, q_b + kv_b, 0.0), **shape)]
    score = H * a
    share = d_v / (d_qk + d_v)
    return [
        Kernel("attn_value_bwd", "attention", L, flops=(4 * H * d_v, 0.0, 0.0), act=(score, o_b + kv_b * share, 0.0),
               kv=none, write=(score, kv_b * share, 0.0), **shape),
        Kernel("attn_softmax_bwd", "vector", L, flops=(2 * SOFTMAX_FLOPS * H, 0.0, 0.0), act=(2 * score, 0.0, 0.0),
               kv=none, write=(score, 0.0, 0.0), **shape),
        Kernel("attn_score_bwd", "attention", L, flops=(4 * H * d_qk, 0.0, 0.0),
               act=(score, q_b + kv_b * (1 - share), 0.0), kv=none, write=(0.0, q_b + kv_b * (1 - share), 0.0),
               **shape),
    ]


def dropout_ops(spec: ModelSpec, seqs, seq_len, p, attention: str, norm_tokens_divisor: int = 1) -> list[Op]:
    """Dropout of every layer (GPT-3-era recipes: hidden and attention dropout 0.1): after attention and after
    the MLP on the residual stream (read, write the output and a 1-byte mask), and on the materialised
    attention probabilities (FlashAttention fuses it into its kernel)."""
    L, h, a = spec.num_layers, spec.hidden_size, p.act_bytes
    T = seqs * seq_len / norm_tokens_divisor
    ops = [make_op("hidden_dropout", "vector", 2 * L, flops=2 * T * h, act=T * h * a, write=T * h * (a + 1))]
    if attention == "materialized":
        pairs = seqs * spec.num_heads * seq_len * (seq_len + 1) / 2
        ops.append(make_op("attention_dropout", "vector", L, flops=2 * pairs, act=pairs * a, write=pairs * (a + 1)))
    return ops


_NARROW_EXEMPT = ("lm_head", "moe_router")
"""GEMMs FP8 training leaves in 16-bit: Transformer Engine and torchao convert the decoder's linear layers,
not the output layer or the router."""


def _in_math(ops: list[Op], math_: str) -> list[Op]:
    return [replace(op, math=math_) if op.kind == "gemm" and op.name not in _NARROW_EXEMPT else op for op in ops]


def _share(op: Op, share: float) -> Op:
    """``share`` of an operator's work (a recomputed part of a fused GEMM, or of its layers)."""
    return replace(op, flops=op.flops * share, weight_bytes=op.weight_bytes * share, act_bytes=op.act_bytes * share,
                   write_bytes=op.write_bytes * share)


@dataclass(frozen=True)
class MicroBatchOps:
    """One chip's operators for one micro-batch of one stage, by part."""

    forward: list[Op]
    backward: list[Op]
    recompute: list[Op]
    attention_fwd: list[Op]
    attention_bwd: list[Op]


def micro_batch_ops(ts: TrainScenario, g: StageGroup, one=1.0) -> MicroBatchOps:
    """The forward, backward and recomputed operators one chip of stage group ``g`` runs per micro-batch
    (``one``: 1.0, or ones of the shape of what-if arrays the sizes must broadcast with)."""
    sc, cfg, s = ts.sc, ts.cfg, g.stage
    spec, p, tp = s.spec, sc.precision, sc.plan.tp
    mb, S, cp = cfg.micro_batch * one, cfg.seq_len, cfg.cp
    q = S / cp  # tokens of each sequence on this chip
    T = mb * q
    div = tp if cfg.sequence_parallel else 1
    body = forward_ops(spec, mb, q, q, p, sc.attention, moe=s.moe, first=s.first, last=False,
                       norm_tokens_divisor=div, with_attention=False, decode=False)
    # causal attention over the whole sequence, split evenly over the cp ranks (load-balanced chunks)
    kernels = attention_kernels(spec, p, sc.attention, decode=False)
    attn = [k.op(mb / cp, S, S) for k in kernels]
    attn_bwd = [k.op(mb / cp, S, S) for k in attention_backward_kernels(spec, p, sc.attention)]
    head = loss_ops(spec, T, p, norm_tokens=T / div) if s.last else []
    drop = dropout_ops(spec, mb / cp, S, p, sc.attention, div) if cfg.dropout else []
    body = body + drop
    fwd = body + attn + head
    if cfg.dtype == "fp8":
        fwd = _in_math(fwd, "fp8")
    ratio = cfg.states.gradients / cfg.states.weights
    bwd: list[Op] = []
    for op in fwd:
        if op.kind == "gemm":
            bwd += gemm_backward(op, ratio)
        elif op.kind == "vector":
            bwd.append(vector_backward(op, p.act_bytes))
    bwd += attn_bwd
    layer_ops = [op for op in body if op.name not in ("embedding", "embedding_norm")]
    if cfg.recompute == "full":
        rec = layer_ops + attn
    elif cfg.recompute == "selective" and cfg.selective == "layer":
        rec = [_share(op, 0.5) for op in layer_ops + attn]
    elif cfg.recompute == "selective" and cfg.selective == "op":
        share = op_policy_recomputed(spec)
        rec = [op if op.kind == "vector" else _share(op, share.get(op.name, 0.0)) for op in layer_ops]
        rec = [op for op in rec if np.any(op.flops)]
    elif cfg.recompute == "selective":
        rec = list(attn)
    else:
        rec = []
    rec = _in_math(rec, "fp8") if cfg.dtype == "fp8" else rec
    return MicroBatchOps(fwd, bwd, rec, attn, attn_bwd)


def _comm(name: str, count: float, size, time, tier: str) -> Op:
    return Op(name, "comm", count, 0.0, 0.0, 0.0, 0.0, size, math.inf, "fp32", comm_s=time, tier=tier)


def strided_collective_s(kind: Literal["allreduce", "allgather"], size_bytes, n: int, stride: int, system: System,
                         comm) -> tuple[Any, str]:
    """Time of a collective among ``n`` chips spaced ``stride`` apart (placed node by node), and its link.

    Chips sharing a node run the local part on the node's link; a group spread one chip per node runs on
    the inter-node link (each chip its own NIC); in between it is hierarchical: reduce-scatter in the
    node, the collective across nodes on 1/local of the data, all-gather in the node (as NCCL does).
    """
    if n <= 1:
        return 0.0, ""
    cpn = system.chips_per_node
    local = max(1, min(n, cpn // stride)) if stride < cpn else 1
    intra, inter = system.tier_for(1 if cpn == 1 else 2), system.tier_for(cpn + 1)
    one = allreduce_s if kind == "allreduce" else allgather_s
    if local >= n:
        return one(size_bytes, n, intra, comm), intra.name
    if local == 1:
        return one(size_bytes, n, inter, comm), inter.name
    if kind == "allreduce":
        t = 2 * allgather_s(size_bytes, local, intra, comm) + allreduce_s(size_bytes / local, n // local, inter, comm)
    else:
        t = allgather_s(size_bytes / local, n // local, inter, comm) + allgather_s(size_bytes, local, intra, comm)
    return t, f"{intra.name} + {inter.name}"


@dataclass(frozen=True)
class StageCost:
    """Per micro-batch and per step times of one chip of a stage (floats, or arrays of efficiency grids)."""

    forward_s: Any
    backward_s: Any
    recompute_s: Any
    tp_s: Any
    cp_s: Any
    pp_s: Any
    fsdp_s: Any
    """ZeRO-3 collectives left exposed per micro-batch."""
    dp_s: Any
    """Data-parallel reduction (ZeRO 0-2) left exposed, once per step."""
    optimizer_s: Any
    energy_micro_j: Any
    """Dynamic energy of one chip per micro-batch (None where energy is unknown)."""
    energy_step_j: Any
    """Dynamic energy of one chip per step outside the micro-batches (optimizer, DP reduction)."""
    flops: float
    """FLOPs one chip executes per micro-batch (recomputation included)."""
    optimizer_flops: float
    comm_bytes: float
    rows: list[tuple[str, str, Any, Any, Any]] = field(default_factory=list)
    """(op, part, flops, bytes, time_s) per micro-batch (or per step for the optimizer and DP reduction)."""

    @property
    def micro_batch_s(self):
        return (self.forward_s + self.backward_s + self.recompute_s + self.tp_s + self.cp_s + self.pp_s
                + self.fsdp_s)


def stage_params(ts: TrainScenario, g: StageGroup) -> dict[str, float]:
    """Parameters one chip of the stage holds (before ZeRO), by part, and one layer's."""
    sc = ts.sc
    spec, plan = sc.spec, sc.plan
    local = tp_shard(spec, plan)
    _, layers, dense = stage_layers(spec, plan)[g.stage.index]
    parts = stage_weight_params(spec, local, plan, g.stage.index, layers, dense)
    parts["layers"] += parts.pop("experts")  # training keeps every parameter in one format: experts are layers
    if plan.pp > 1 and spec.tie_word_embeddings and g.stage.last:
        parts["head"] += local.vocab_size * local.hidden_size  # the last stage's copy of a tied embedding
    parts["layer"] = parts["layers"] / max(layers, 1)
    return parts


def _exposed(comm, window, overlap: float, pieces: int):
    """Collective time left over after hiding behind ``overlap`` of ``window``; at least one of its
    ``pieces`` (the first gather or last reduction has nothing to hide behind)."""
    if overlap <= 0:
        return comm
    return np.maximum(comm / max(pieces, 1), comm - overlap * window)


def stage_cost(ts: TrainScenario, g: StageGroup, pricer: Pricer, one=1.0) -> StageCost:
    """Times of one chip of stage group ``g``: its micro-batch (compute and collectives) and its step-level
    work (data-parallel reduction, optimizer)."""
    sc, cfg = ts.sc, ts.cfg
    plan, system, comm_opts, fw = sc.plan, sc.system, sc.comm, cfg.framework
    ops = micro_batch_ops(ts, g, one)
    s = g.stage
    key = (g.stage.index,)
    parts = ("forward", "backward", "recompute") + (("attention_fwd", "attention_bwd") if cfg.cp > 1 else ())
    costs = {part: pricer.cost(getattr(ops, part), key + (part,)) if getattr(ops, part) else None for part in parts}

    def t(part):
        c = costs.get(part)
        return 0.0 if c is None else c.time_s

    def e(part):
        c = costs.get(part)
        return 0.0 if c is None or c.energy is None else c.energy_j

    tp, cp, dp = plan.tp, cfg.cp, cfg.dp
    a = element_bytes(sc.precision.act)
    h = sc.spec.hidden_size
    T = cfg.micro_batch * cfg.seq_len / cp * one
    comm_ops: list[Op] = []
    L = s.layers
    # TP: two collectives per layer (one for a parallel block) forward, as many backward, again on recompute
    if tp > 1:
        msg = T * h * a
        per = (1 if sc.spec.parallel_block else 2) * L + (1 if s.first else 0)
        passes = 2 + (1 if cfg.recompute == "full" else 0)
        if cfg.sequence_parallel:
            half, tier = strided_collective_s("allgather", msg, tp, 1, system, comm_opts)
            comm_ops.append(_comm("tp_reduce_scatter", per * passes, msg, half, tier))
            comm_ops.append(_comm("tp_all_gather", per * passes, msg, half, tier))
        else:
            full, tier = strided_collective_s("allreduce", msg, tp, 1, system, comm_opts)
            comm_ops.append(_comm("tp_allreduce", per * passes, msg, full, tier))
        if s.last:  # vocabulary-parallel cross-entropy: max, sum of exponentials and target logit per token
            small, tier = strided_collective_s("allreduce", T * 4.0, tp, 1, system, comm_opts)
            comm_ops.append(_comm("tp_loss_allreduce", 3, T * 4.0, small, tier))
    tp_time = sum(op.count * op.comm_s for op in comm_ops) * (1 - cfg.overlap_tp) if comm_ops else 0.0
    # CP: ring exchange of each layer's K/V chunk (and dK/dV backward), hidden behind attention
    cp_time = 0.0
    if cp > 1:
        kv = 2 * s.spec.kv_dim * T * a if not s.spec.is_mla else (s.spec.kv_lora_rank + s.spec.qk_rope_head_dim) * T * a
        hop, tier = strided_collective_s("allgather", kv * 2, 2, tp, system, comm_opts)  # one neighbour send
        ring_f = (cp - 1) * hop
        ring_b = 2 * ring_f
        per_layer_f = t("attention_fwd") / max(L, 1)
        per_layer_b = t("attention_bwd") / max(L, 1)
        rec_f = ring_f if cfg.recompute in ("full", "selective") else 0.0
        cp_time = L * (_exposed(ring_f, per_layer_f, fw.overlap_cp, 1) + _exposed(ring_b, per_layer_b, fw.overlap_cp, 1)
                       + (_exposed(rec_f, per_layer_f, fw.overlap_cp, 1) if rec_f else 0.0))
        comm_ops.append(_comm("cp_ring", L * (cp - 1) * (3 + (1 if rec_f else 0)), kv, hop, tier))
    # PP: activations forward and gradients backward at each chunk boundary of this stage
    pp_time = 0.0
    if plan.pp > 1:
        # each TP rank sends its 1/tp of the activations over its own link and the next stage all-gathers them
        # over its fast one (Narayanan et al. 2021, sec. 4.1, scatter/gather); with SP they are split already
        send = T * h * a / tp
        sends = cfg.virtual_stages * ((0 if s.last else 1) + (0 if s.first else 1))
        if cfg.virtual_stages > 1:
            sends = 2 * cfg.virtual_stages
        link = system.tier_for(2 if tp * cp * dp < system.chips_per_node else system.chips_per_node + 1)
        one = p2p_s(send, link, comm_opts)
        pp_time = sends * one * (1 - fw.overlap_pp)
        comm_ops.append(_comm("pp_send", sends, send, one, link.name))
    # data parallelism over dp x cp replicas of the stage's parameters
    parts = stage_params(ts, g)
    P = parts["embedding"] + parts["head"] + parts["layers"]
    n = dp * cp
    w = cfg.states.weights
    grads = P * cfg.reduce_bytes
    fsdp_time, dp_time = 0.0, 0.0
    fwd_window = t("forward")
    bwd_window = t("backward") + (t("recompute") if cfg.recompute == "full" else 0.0)
    if n > 1:
        gather, tier_g = strided_collective_s("allgather", P * w, n, tp, system, comm_opts)
        reduce, tier_r = strided_collective_s("allgather", grads, n, tp, system, comm_opts)
        pieces = max(L, 1)
        m = cfg.micro_batches
        if cfg.zero_stage == 3 and plan.pp > 1 and fw.pp_keeps_gathered:
            # the stage's parameters stay gathered through the step: one all-gather, one reduce-scatter
            dp_time = (_exposed(gather, fwd_window, fw.overlap_dp, pieces)
                       + _exposed(reduce, bwd_window, fw.overlap_dp, pieces))
            comm_ops.append(_comm("fsdp_all_gather", 1 / m, P * w, gather, tier_g))
            comm_ops.append(_comm("fsdp_reduce_scatter", 1 / m, grads, reduce, tier_r))
        elif cfg.zero_stage == 3:
            every = cfg.framework.reduce_every_micro_batch
            rs_mb = reduce if every else 0.0
            fsdp_time = (_exposed(gather, fwd_window, fw.overlap_dp, pieces)
                         + _exposed(gather + rs_mb, bwd_window, fw.overlap_dp, pieces))
            if not every:
                dp_time = _exposed(reduce, bwd_window, fw.overlap_dp, pieces)
            comm_ops.append(_comm("fsdp_all_gather", 2, P * w, gather, tier_g))
            comm_ops.append(_comm("fsdp_reduce_scatter", 1 if every else 1 / m, grads, reduce, tier_r))
        elif cfg.zero_stage == 0:
            ar, tier_a = strided_collective_s("allreduce", grads, n, tp, system, comm_opts)
            dp_time = _exposed(ar, bwd_window, fw.overlap_dp, pieces)
            comm_ops.append(_comm("dp_allreduce", 1 / m, grads, ar, tier_a))
        else:
            dp_time = (_exposed(reduce, bwd_window, fw.overlap_dp, pieces)
                       + _exposed(gather, fwd_window, fw.overlap_dp, pieces))
            comm_ops.append(_comm("dp_reduce_scatter", 1 / m, grads, reduce, tier_r))
            comm_ops.append(_comm("dp_all_gather", 1 / m, P * w, gather, tier_g))
    # Adam over the chip's shard of the parameters
    shard = (P / n if cfg.zero_stage >= 1 else P) * one
    b = cfg.states
    opt_read = b.master + b.moments + b.gradients if b.master else b.weights + b.moments + b.gradients
    opt_write = b.master + b.moments + b.weights if b.master else b.weights + b.moments
    opt = make_op("adam", "vector", 1, flops=ADAM_FLOPS * shard, act=opt_read * shard, write=opt_write * shard)
    opt_cost = pricer.cost([opt], key + ("optimizer",))
    comm_cost = pricer.cost(comm_ops, key + ("comm",)) if comm_ops and pricer.er is not None else None
    flops = sum(float(np.sum(op.flops)) * op.count for part in ("forward", "backward", "recompute")
                for op in getattr(ops, part))
    energy_mb = None
    energy_step = None
    if pricer.er is not None:
        comm_e = 0.0
        if comm_cost is not None:
            per = comm_cost.energy.total_j * comm_cost.table.count
            comm_e = float(np.sum(per))
        energy_mb = e("forward") + e("backward") + e("recompute") + comm_e
        energy_step = opt_cost.energy_j
    rows = []
    for part in ("forward", "backward", "recompute"):
        c = costs[part]
        if c is None:
            continue
        tb = c.table
        for i, op in enumerate(tb.ops):
            rows.append((op.name, part, tb.count[i] * tb.flops[i], tb.count[i] * tb.bytes[i],
                         tb.count[i] * c.times.time_s[i]))
    for op in comm_ops:
        rows.append((op.name, "communication", 0.0, op.count * op.write_bytes, op.count * op.comm_s))
    rows.append(("adam", "optimizer", ADAM_FLOPS * shard, opt.bytes, opt_cost.time_s))
    return StageCost(forward_s=t("forward"), backward_s=t("backward"), recompute_s=t("recompute"), tp_s=tp_time,
                     cp_s=cp_time, pp_s=pp_time, fsdp_s=fsdp_time, dp_s=dp_time, optimizer_s=opt_cost.time_s,
                     energy_micro_j=energy_mb, energy_step_j=energy_step, flops=flops,
                     optimizer_flops=float(np.max(ADAM_FLOPS * shard)), comm_bytes=sum(op.count * op.write_bytes for op in comm_ops),
                     rows=rows)


# --- model FLOPs ------------------------------------------------------------------------------------


def model_flops_per_token(spec: ModelSpec, seq_len, convention: str = "palm"):
    """Model FLOPs per token of a training step (forward and backward, no recomputation).

    palm        6 N + 12 L H Q S, N the parameters of the matrix multiplies (all but the input embedding
                and position tables; a tied table counts, as the LM head): PaLM (Chowdhery et al. 2022,
                appendix B), and torchtitan's count
    llm-foundry 6 N + 12 L h S with N every parameter (llm-foundry's benchmarking collect_results.py)
    megatron    Megatron-LM's num_floating_point_operations per token (NeMo's "model TFLOP/s"):
                12 L h^2 [(1 + g / a + S / h) q / h + f / h x (1.5 if gated) + V / (2 L h)], q = a x head_dim
    """
    L, h, H, Q = spec.num_layers, spec.hidden_size, spec.num_heads, spec.head_dim
    total, active = spec.params()
    if convention == "llm-foundry":
        return 6 * active + 12 * L * h * seq_len
    if convention == "megatron":
        g = spec.num_kv_heads / spec.num_heads
        q_ratio = H * Q / h
        mlp = spec.intermediate_size / h * (1.5 if spec.gated_mlp else 1.0)
        if spec.is_moe:
            mlp = spec.moe_intermediate_size * spec.experts_per_token / h * (1.5 if spec.gated_mlp else 1.0)
        return 12 * L * h * h * ((1 + g + seq_len / h) * q_ratio + mlp + spec.vocab_size / (2 * L * h))
    embedding = spec.param_parts()["embedding"] - (spec.vocab_size * h if spec.tie_word_embeddings else 0)
    return 6 * (active - embedding) + 12 * L * H * Q * seq_len


# --- the step -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepTime:
    step_s: Any
    stages: list[tuple[StageGroup, StageCost]]
    micro_batches: int
    bubble: float
    pipeline_s: Any
    dp_s: Any
    optimizer_s: Any
    power_capped: Any
    dynamic_energy_step_j: Any
    """Dynamic energy of all chips in one step (None where unknown)."""


def step_time(ts: TrainScenario, *, eff: Efficiency | None = None, rates=None) -> StepTime:
    """Time of one training step (floats, or arrays where ``eff`` or ``rates`` hold arrays)."""
    sc, cfg = ts.sc, ts.cfg
    pricer = Pricer(sc, rates=rates, eff=eff)
    dims = max([np.ndim(getattr(eff, f)) for f in type(eff).model_fields] if eff is not None else [0])
    one = np.ones((1,) * dims) if dims else 1.0
    costs = [(g, stage_cost(ts, g, pricer, one)) for g in sc.groups]
    m, v = cfg.micro_batches, cfg.virtual_stages
    per = [c.micro_batch_s for _, c in costs]
    slowest = _maximum(per)
    total = 0.0
    for (g, _), x in zip(costs, per, strict=True):
        total = total + g.count * x
    # 1F1B: m slots of the slowest stage, plus the others' share of fill and drain, divided over v chunks
    pipeline = m * slowest + (total - slowest) / v
    dp = _maximum([c.dp_s for _, c in costs])
    opt = _maximum([c.optimizer_s for _, c in costs])
    step = pipeline + dp + opt
    capped = False
    dyn = None
    if pricer.er is not None and all(c.energy_micro_j is not None for _, c in costs):
        chips_per_stage = sc.plan.tp * cfg.cp * cfg.dp
        per_chip = [m * c.energy_micro_j + c.energy_step_j for _, c in costs]
        dyn = sum(g.count * chips_per_stage * x for (g, _), x in zip(costs, per_chip, strict=True))
        # no chip draws more than its TDP: a step whose busiest chip would takes its energy / (TDP - idle)
        floor = _maximum(per_chip) / pricer.power
        capped = np.asarray(floor > step)
        step = np.maximum(step, floor)
        capped = bool(capped) if capped.ndim == 0 else capped
    return StepTime(step_s=_scalar(step), stages=costs, micro_batches=m, bubble=bubble_fraction(sc.plan.pp, m, v),
                    pipeline_s=pipeline, dp_s=dp, optimizer_s=opt, power_capped=capped, dynamic_energy_step_j=dyn)


def _maximum(values: list):
    out = values[0]
    for x in values[1:]:
        out = np.maximum(out, x)
    return out


def _scalar(x):
    return float(x) if np.ndim(x) == 0 else x


# --- memory -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainMemory:
    """Bytes one chip holds at its peak: the fullest stage's chip."""

    weights_bytes: float
    master_weights_bytes: float
    moments_bytes: float
    gradients_bytes: float
    gathered_bytes: float
    activation_bytes: float
    head_bytes: float
    workspace_bytes: float
    reserve_bytes: float
    """What the caching allocator holds beyond the tensors at the peak (fragmentation, rounding)."""
    capacity_bytes: float
    stage: int
    """The pipeline stage whose chips hold the most."""
    layer_activation_bytes: float
    """One layer's saved activations for one micro-batch on this chip."""
    in_flight: float
    params_per_chip: float

    @property
    def optimizer_bytes(self) -> float:
        return self.master_weights_bytes + self.moments_bytes

    @property
    def total_bytes(self) -> float:
        return self.tensor_bytes + self.reserve_bytes + self.workspace_bytes

    @property
    def tensor_bytes(self) -> float:
        """Bytes of live tensors at the peak (what torch.cuda.max_memory_allocated reports)."""
        return (self.weights_bytes + self.optimizer_bytes + self.gradients_bytes + self.gathered_bytes
                + self.activation_bytes + self.head_bytes)

    @property
    def fits(self) -> bool:
        """The live tensors and the workspace within capacity: the caching allocator gives back what it holds
        beyond them (it frees its cache and retries before it reports out of memory)."""
        return self.tensor_bytes + self.workspace_bytes <= self.capacity_bytes


def stage_memory(ts: TrainScenario, index: int, capacity: float) -> TrainMemory:
    sc, cfg = ts.sc, ts.cfg
    spec, plan = sc.spec, sc.plan
    g = next(g for g in sc.groups if index in g.indices)
    parts = stage_params(ts, g)
    P = parts["embedding"] + parts["head"] + parts["layers"]
    fw = cfg.framework
    layers = stage_layers(spec, plan)[index][1]
    whole = plan.pp > 1 and fw.pp_keeps_gathered
    st: States = shard_states(P, cfg.states, cfg.zero_stage, cfg.dp * cfg.cp,
                              layer_params=P if whole else parts["layer"], gathered_layers=1 if whole else
                              fw.gathered_layers, master_is_sharded_param=fw.master_is_sharded_param)
    tokens = cfg.micro_batch * cfg.seq_len / cfg.cp
    a = element_bytes(sc.precision.act)
    x = 1.0 if cfg.dtype == "fp8" else a  # FP8 training keeps the FP8 casts of the linear layers' inputs
    per_layer = layer_activation_bytes(spec, tokens, cfg.seq_len, tp=plan.tp, sequence_parallel=cfg.sequence_parallel,
                                       recompute=cfg.recompute, attention=sc.attention, dropout=cfg.dropout,
                                       act_bytes=a, selective=cfg.selective, linear_input_bytes=x)
    flight = in_flight(index, plan.pp, cfg.micro_batches, cfg.virtual_stages)
    act = flight * layers * per_layer
    if cfg.recompute == "full" or (cfg.recompute == "selective" and cfg.selective == "layer"):
        # the layer being recomputed in the backward holds all its activations meanwhile
        act += layer_activation_bytes(spec, tokens, cfg.seq_len, tp=plan.tp, sequence_parallel=cfg.sequence_parallel,
                                      recompute="none", attention=sc.attention, dropout=cfg.dropout, act_bytes=a,
                                      linear_input_bytes=x)
    if cfg.sequence_parallel:  # a layer's attention and MLP inputs all-gathered whole while it computes
        act += 2 * a * spec.hidden_size * tokens * (1 - 1 / plan.tp)
    head = (head_activation_bytes(spec, tokens, tp=plan.tp, act_bytes=a, logits_bytes=fw.logits_bytes)
            if index == plan.pp - 1 else 0.0)
    tensors = st.total_bytes + act + head
    return TrainMemory(weights_bytes=st.weights_bytes, master_weights_bytes=st.master_weights_bytes,
                       moments_bytes=st.moments_bytes, gradients_bytes=st.gradients_bytes,
                       gathered_bytes=st.gathered_bytes, activation_bytes=act, head_bytes=head,
                       workspace_bytes=fw.workspace_bytes, reserve_bytes=tensors * cfg.allocator_reserve,
                       capacity_bytes=capacity, stage=index,
                       layer_activation_bytes=per_layer, in_flight=flight, params_per_chip=P)


def train_memory(ts: TrainScenario, capacity: float | None = None) -> TrainMemory:
    """The memory of the fullest chip (the largest over the pipeline stages)."""
    cap = float(ts.sc.rates.mem_capacity_bytes) if capacity is None else capacity
    per = [stage_memory(ts, i, cap) for i in range(ts.sc.plan.pp)]
    return max(per, key=lambda m: m.total_bytes)


def largest_micro_batch_and_seq(ts: TrainScenario, capacity: float | None = None) -> tuple[int, int]:
    """The largest micro-batch at this sequence length, and the longest sequence at this micro-batch, whose
    activations fit beside the model states on every stage (activations are linear in the tokens with
    FlashAttention; with materialised scores the sequence's quadratic term makes this an upper bound).
    Whether the global batch divides into the micro-batch is not asked."""
    cap = float(ts.sc.rates.mem_capacity_bytes) if capacity is None else capacity
    cfg = ts.cfg
    tokens = cfg.micro_batch * cfg.seq_len / cfg.cp
    best_mb = best_seq = math.inf
    for i in range(ts.sc.plan.pp):
        mem = stage_memory(ts, i, cap)
        varying = mem.activation_bytes + mem.head_bytes
        fixed = mem.tensor_bytes - varying + mem.workspace_bytes  # what ``fits`` counts (not the allocator's cache)
        per_token = varying / tokens
        most = tokens_that_fit(cap - fixed, per_token)
        best_mb = min(best_mb, math.floor(most * cfg.cp / cfg.seq_len))
        best_seq = min(best_seq, math.floor(most * cfg.cp / cfg.micro_batch))
    return int(max(best_mb, 0)), int(max(best_seq, 0))
