"""Models: ``ModelSpec``, the Hugging Face ``config.json`` normaliser, presets and exact parameter counts.

Every family's config keys are mapped onto one spec by ``normalise``. Parameter counts are
computed from the shapes of the weight matrices, biases and norms the HF implementation of
each family creates, so they match ``sum(p.numel() for p in model.parameters())``.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from infercast.errors import InfercastError, UnknownName, did_you_mean, pydantic_error_line, shown
from infercast.files import exists, read_text
from infercast.keep import keep


class ModelSpec(BaseModel):
    """A decoder-only transformer, normalised from any supported config.json."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __hash__(self) -> int:
        # the hash of the fields, as pydantic's frozen models compute it, kept per spec object (specs key the
        # caches of stages, precisions and plan tables, several times per estimate; held so its id stays its own)
        return keep(_HASHES, (self,), lambda: hash(tuple(self.__dict__[k] for k in type(self).model_fields)))

    name: str
    """Preset id or the path the config came from."""
    architecture: str
    """HF ``model_type`` (llama, mixtral, gpt2, bloom, ...)."""
    vocab_size: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    num_layers: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    """K/V heads: equal to num_heads for MHA, fewer for GQA, 1 for MQA."""
    head_dim: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    """Width of the dense MLP (or of dense layers in an MoE model)."""
    gated_mlp: bool
    """SwiGLU-style gate and up projections (3 matrices) vs plain up/down (2)."""
    activation: str
    norm: Literal["rmsnorm", "layernorm"]
    norm_bias: bool = True
    """A LayerNorm carries a bias beside its weight (MPT with no_bias: weight only); RMSNorm never does."""
    norms_per_layer: int = Field(ge=1, le=2)
    parallel_block: bool
    """Attention and MLP read the same input (GPT-J, NeoX, Falcon)."""
    embedding_norm: bool = False
    """A norm right after the token embedding (BLOOM)."""
    qkv_bias: bool
    out_bias: bool
    mlp_bias: bool
    lm_head_bias: bool = False
    tie_word_embeddings: bool
    position_embedding: Literal["rope", "learned", "alibi"]
    max_position_embeddings: int = Field(gt=0)
    """Context length the model was trained for."""
    sliding_window: int | None = Field(default=None, gt=0)
    """Keys each query attends to at most (Mistral-7B v0.1: 4096); the cache keeps only these."""
    sliding_window_layers: int | None = Field(default=None, ge=0)
    """Layers that attend within ``sliding_window``, spread evenly from the first (gpt-oss alternates
    windowed and full layers); the others attend to the whole context. None: every layer."""
    attention_sinks: bool = False
    """A learned sink logit per head in each layer's softmax denominator (gpt-oss): one parameter per head."""
    num_experts: int = Field(default=0, ge=0)
    """Routed experts per MoE layer (0 for a dense model)."""
    experts_per_token: int = Field(default=0, ge=0)
    moe_intermediate_size: int = Field(default=0, ge=0)
    num_shared_experts: int = Field(default=0, ge=0)
    first_dense_layers: int = Field(default=0, ge=0)
    """Leading layers with a dense MLP in an MoE model (DeepSeek's first_k_dense_replace)."""
    q_lora_rank: int | None = None
    """MLA: rank of the query down-projection (None: queries projected directly)."""
    kv_lora_rank: int | None = None
    """MLA: width of the compressed KV latent that is cached (None: not MLA)."""
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        """Shapes that cannot go together, whoever builds the spec (``normalise`` names the config keys first)."""
        if self.num_kv_heads > self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_kv_heads {self.num_kv_heads} must divide num_heads {self.num_heads}")
        if self.num_experts and not 1 <= self.experts_per_token <= self.num_experts:
            raise ValueError(f"experts_per_token {self.experts_per_token} must be between 1 and num_experts "
                             f"{self.num_experts}")
        if self.sliding_window_layers is not None and (self.sliding_window is None
                                                       or self.sliding_window_layers > self.num_layers):
            raise ValueError(f"sliding_window_layers {self.sliding_window_layers} needs a sliding_window and at most "
                             f"num_layers {self.num_layers} layers")
        if self.num_experts and self.first_dense_layers >= self.num_layers:
            raise ValueError(f"first_dense_layers {self.first_dense_layers} must be fewer than num_layers "
                             f"{self.num_layers}")
        return self

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank is not None

    @property
    def num_moe_layers(self) -> int:
        return self.num_layers - self.first_dense_layers if self.is_moe else 0

    @property
    def num_dense_layers(self) -> int:
        return self.num_layers - self.num_moe_layers

    @property
    def windowed_layers(self) -> int:
        """Layers whose attention is capped at ``sliding_window`` keys (0 without a window)."""
        if self.sliding_window is None:
            return 0
        return self.num_layers if self.sliding_window_layers is None else self.sliding_window_layers

    def windowed_layers_in(self, start: int, end: int) -> int:
        """Windowed layers among layers [start, end): spread evenly from the first, ceil(i r) - ceil(s r) for
        the share r windowed (gpt-oss's layer_types window the even layers)."""
        n = self.windowed_layers
        L = self.num_layers
        return -(-end * n // L) - (-(-start * n // L))

    @property
    def q_dim(self) -> int:
        """Width of all query heads together."""
        qk = self.qk_nope_head_dim + self.qk_rope_head_dim if self.is_mla else self.head_dim
        return self.num_heads * qk

    @property
    def kv_dim(self) -> int:
        """Width of all K (or V) heads together, for non-MLA attention."""
        return self.num_kv_heads * self.head_dim

    @property
    def attn_out_dim(self) -> int:
        """Width of the concatenated attention output entering the output projection."""
        return self.num_heads * (self.v_head_dim if self.is_mla else self.head_dim)

    def kv_elements_per_token(self) -> int:
        """Elements cached per token over all layers.

        Standard attention caches K and V: 2 x layers x kv_heads x head_dim.
        MLA caches the compressed latent plus the shared RoPE key (DeepSeek-V2 paper, eq. 10-11):
        layers x (kv_lora_rank + qk_rope_head_dim).
        """
        L = self.num_layers
        if self.is_mla:
            return L * (self.kv_lora_rank + self.qk_rope_head_dim)
        return 2 * L * self.num_kv_heads * self.head_dim

    def kv_elements_per_token_if_mha(self) -> int:
        """Elements per token if every query head had its own K and V (seed claim C1)."""
        L, H = self.num_layers, self.num_heads
        if self.is_mla:
            return L * H * (self.qk_nope_head_dim + self.qk_rope_head_dim + self.v_head_dim)
        return 2 * L * H * self.head_dim

    @property
    def norm_params(self) -> int:
        """Parameters of one norm: a weight, and a bias for a LayerNorm that has one."""
        return self.hidden_size * (2 if self.norm == "layernorm" and self.norm_bias else 1)

    def expert_params(self) -> int:
        """Parameters of one routed (or shared) expert MLP, with its biases where the MLP has them (gpt-oss)."""
        h, f = self.hidden_size, self.moe_intermediate_size
        bias = ((2 * f if self.gated_mlp else f) + h) if self.mlp_bias else 0
        return (3 if self.gated_mlp else 2) * h * f + bias

    def param_parts(self) -> dict[str, int]:
        """Parameters by piece: ``embedding`` (token, position, embedding norm), ``final_norm``,
        ``head`` (untied LM head), ``dense_layer`` (one layer with a dense MLP), ``moe_layer``
        (one MoE layer without its routed experts: attention, norms, router, shared experts)
        and ``expert`` (one routed expert)."""
        h, V = self.hidden_size, self.vocab_size
        norm = self.norm_params
        attn = self._attention_params()
        per_norms = self.norms_per_layer * norm
        embedding = V * h
        if self.position_embedding == "learned":
            embedding += self.max_position_embeddings * h
        if self.embedding_norm:
            embedding += norm
        moe_layer = expert = 0
        if self.is_moe:
            router = self.num_experts * h
            if self.architecture.startswith("deepseek") or self.architecture == "gpt_oss":
                router += self.num_experts  # DeepSeek-V3's e_score_correction_bias; gpt-oss's router bias
            expert = self.expert_params()
            moe_layer = attn + per_norms + router + self.num_shared_experts * expert
        return {
            "embedding": embedding,
            "final_norm": norm,
            "head": (0 if self.tie_word_embeddings else V * h) + (V if self.lm_head_bias else 0),
            "dense_layer": attn + self._mlp_params(self.intermediate_size) + per_norms,
            "moe_layer": moe_layer,
            "expert": expert,
        }

    def params(self) -> tuple[int, int]:
        """(total, active) parameter counts; active = what one token uses (MoE: k routed experts)."""
        p = self.param_parts()
        ends = p["embedding"] + p["final_norm"] + p["head"]
        dense = ends + self.num_dense_layers * p["dense_layer"]
        moe = self.num_moe_layers * p["moe_layer"]
        total = dense + moe + self.num_moe_layers * self.num_experts * p["expert"]
        active = dense + moe + self.num_moe_layers * self.experts_per_token * p["expert"]
        return total, active

    def _attention_params(self) -> int:
        h, H = self.hidden_size, self.num_heads
        if self.is_mla:
            rope, nope, v, r = self.qk_rope_head_dim, self.qk_nope_head_dim, self.v_head_dim, self.kv_lora_rank
            if self.q_lora_rank:
                q = h * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * H * (nope + rope)
            else:
                q = h * H * (nope + rope)
            kv = h * (r + rope) + r + r * H * (nope + v)  # kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj
            return q + kv + H * v * h
        qkv = h * (self.q_dim + 2 * self.kv_dim) + (self.q_dim + 2 * self.kv_dim if self.qkv_bias else 0)
        out = self.attn_out_dim * h + (h if self.out_bias else 0)
        return qkv + out + (H if self.attention_sinks else 0)

    def _mlp_params(self, f: int) -> int:
        h = self.hidden_size
        if self.gated_mlp:
            return 3 * h * f + ((2 * f + h) if self.mlp_bias else 0)
        return 2 * h * f + ((f + h) if self.mlp_bias else 0)


# --- the normaliser -------------------------------------------------------------------

_HASHES: dict[int, tuple[ModelSpec, int]] = {}

_ALIASES = {
    "hidden_size": ("hidden_size", "n_embd", "n_embed", "d_model"),
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "num_heads": ("num_attention_heads", "n_head", "num_heads", "n_heads"),
    "vocab_size": ("vocab_size",),
}
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length", "max_sequence_length")

_LLAMA_LIKE = {"llama", "mistral", "mixtral", "qwen2", "deepseek_v3", "deepseek_v2", "gpt_oss"}
_FAMILIES = sorted(_LLAMA_LIKE | {"gpt2", "gptj", "gpt_neox", "bloom", "falcon", "mpt", "nemotron", "opt"})

# Defaults of transformers' config classes, used only to fill a nested ``text_config``:
# HF writes nested configs as a diff against these defaults (PretrainedConfig.to_diff_dict),
# so keys left out there mean "the class default". Top-level configs must be complete.
_TEXT_CONFIG_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                  num_attention_heads=32, max_position_embeddings=2048, tie_word_embeddings=False),
    "mistral": dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=4096 * 32,
                    tie_word_embeddings=False),
    "qwen2": dict(vocab_size=151936, hidden_size=4096, intermediate_size=22016, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=32768,
                  tie_word_embeddings=False),
}

# BLOOM's config.json has no context key: ALiBi has no trained table. BLOOM was trained on
# 2048-token sequences (BigScience, "BLOOM: A 176B-Parameter Open-Access Multilingual LM", 2022, sec. 3.5).
_BLOOM_TRAINED_CONTEXT = 2048
# Falcon configs before transformers 4.33 have no max_position_embeddings; FalconConfig's default is 2048.
_FALCON_DEFAULT_CONTEXT = 2048


# The largest value infercast accepts for each kind of size, far above any released model (widths
# ~ 3e4, 128 heads, 256 experts, vocabularies ~ 2.6e5, contexts ~ 1e7 tokens): a larger one is a typo,
# and would push parameter and byte counts past what 64-bit integers and the roofline hold exactly.
_LIMITS = {"width": 2**20, "layers": 10_000, "heads": 2**16, "experts": 2**16, "vocab": 2**24, "context": 2**30}
_REQUIRED = object()


class _Config:
    """A config.json read key by key: each value's type, sign and size is checked before it is used,
    and every error names the key and says what it must be."""

    def __init__(self, cfg: dict[str, Any], name: str, family: str, prefix: str = "") -> None:
        self.cfg, self.name, self.family, self.prefix = cfg, name, family, prefix

    def key(self, *keys: str) -> str:
        """The first of ``keys`` the config sets (for naming it in a message), else the first."""
        return next((k for k in keys if self.cfg.get(k) is not None), keys[0])

    def fail(self, key: str, problem: str) -> InfercastError:
        return InfercastError(f"{self.name}: config.json key '{self.prefix}{key}' {problem}")

    def int(self, *keys: str, default: Any = _REQUIRED, low: int = 1, kind: str = "width") -> Any:
        """A whole number in [low, limit of ``kind``] under the first of ``keys`` set (null = unset)."""
        key = self.key(*keys)
        value = self.cfg.get(key)
        if value is None:
            if default is _REQUIRED:
                raise InfercastError(f"{self.name}: config.json has no '{self.prefix}{keys[0]}' ({self.family}); "
                                     f"add it")
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be a whole number, got {shown(value)}; write a JSON integer (e.g. 32, "
                                 f"not \"32\" or 32.0)")
        fix = "set the model's real value" + ("" if default is _REQUIRED else " or remove the key for the default")
        if value < low:
            raise self.fail(key, f"must be at least {low}, got {value}; {fix}")
        high = _LIMITS[kind]
        if value > high:
            raise self.fail(key, f"is {value:,}, above the {high:,} infercast accepts; {fix}")
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self.cfg.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false (unquoted JSON), got {shown(value)}")
        return value

    def str(self, key: str, default: str) -> str:
        value = self.cfg.get(key)
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip() or len(value) > 100:
            raise self.fail(key, f"must be a short name such as {shown(default)}, got {shown(value)}")
        return value

    def context(self, default: int | None = None) -> int:
        if default is None or any(self.cfg.get(k) is not None for k in _CONTEXT_KEYS):
            return self.int(*_CONTEXT_KEYS, kind="context")
        return default


def normalise(config: dict[str, Any], name: str) -> ModelSpec:
    """Map a Hugging Face config dict (any supported family) onto a ``ModelSpec``.

    Every value is checked (type, sign, size) before it is used, and the values are checked against
    each other (KV heads divide the heads, top-k within the experts, dense layers within the layers);
    each error is one line naming the config.json key.
    """
    if not isinstance(config, dict):
        raise InfercastError(f"{name}: config.json must hold a JSON object, got {type(config).__name__}")
    cfg, prefix = dict(config), ""
    if isinstance(cfg.get("text_config"), dict):
        text = cfg["text_config"]
        family = text.get("model_type", "llama")
        if not isinstance(family, str):
            raise InfercastError(f"{name}: config.json key 'text_config.model_type' must be a string, "
                                 f"got {shown(family)}")
        cfg, prefix = {**_TEXT_CONFIG_DEFAULTS.get(family, {}), **text, "model_type": family}, "text_config."
    family = cfg.get("model_type")
    if family in ("RefinedWeb", "RefinedWebModel"):
        family = "falcon"
    if not isinstance(family, str) or family not in _FAMILIES:
        raise InfercastError(
            f"{name}: model_type {shown(family)} is not supported; supported: {', '.join(_FAMILIES)}"
        )
    c = _Config(cfg, name, family, prefix)
    h, H = c.int(*_ALIASES["hidden_size"]), c.int(*_ALIASES["num_heads"], kind="heads")
    common = dict(
        name=name, architecture=family, vocab_size=c.int("vocab_size", kind="vocab"), hidden_size=h,
        num_layers=c.int(*_ALIASES["num_layers"], kind="layers"), num_heads=H,
    )
    head_dim = c.int("head_dim", default=None) if family in _LLAMA_LIKE else None
    if family in _LLAMA_LIKE:
        fields = _llama_like(c, family, h, H, common["num_layers"])
        fields["max_position_embeddings"] = c.context()
    elif family == "gpt2":
        fields = dict(
            num_kv_heads=H, head_dim=h // H, intermediate_size=c.int("n_inner", default=4 * h), gated_mlp=False,
            activation=c.str("activation_function", "gelu_new"), norm="layernorm", norms_per_layer=2,
            parallel_block=False, qkv_bias=True, out_bias=True, mlp_bias=True,
            tie_word_embeddings=c.bool("tie_word_embeddings", True), position_embedding="learned",
            max_position_embeddings=c.context(),
        )
    elif family == "gptj":
        fields = dict(
            num_kv_heads=H, head_dim=h // H, intermediate_size=c.int("n_inner", default=4 * h), gated_mlp=False,
            activation=c.str("activation_function", "gelu_new"), norm="layernorm", norms_per_layer=1,
            parallel_block=True, qkv_bias=False, out_bias=False, mlp_bias=True, lm_head_bias=True,
            tie_word_embeddings=c.bool("tie_word_embeddings", False), position_embedding="rope",
            max_position_embeddings=c.context(),
        )
    elif family == "gpt_neox":
        bias = c.bool("attention_bias", True)
        fields = dict(
            num_kv_heads=H, head_dim=h // H, intermediate_size=c.int("intermediate_size"), gated_mlp=False,
            activation=c.str("hidden_act", "gelu"), norm="layernorm", norms_per_layer=2,
            parallel_block=c.bool("use_parallel_residual", True), qkv_bias=bias, out_bias=bias, mlp_bias=True,
            tie_word_embeddings=c.bool("tie_word_embeddings", False), position_embedding="rope",
            max_position_embeddings=c.context(),
        )
    elif family == "opt":  # OPT (Zhang et al. 2022): GPT-2's layout with ReLU, pre-norm, biases everywhere
        bias = c.bool("enable_bias", True)
        fields = dict(
            num_kv_heads=H, head_dim=h // H, intermediate_size=c.int("ffn_dim"), gated_mlp=False,
            activation=c.str("activation_function", "relu"), norm="layernorm", norms_per_layer=2, parallel_block=False,
            qkv_bias=bias, out_bias=bias, mlp_bias=bias, tie_word_embeddings=c.bool("tie_word_embeddings", True),
            position_embedding="learned", max_position_embeddings=c.context(),
        )
    elif family == "bloom":
        fields = dict(
            num_kv_heads=H, head_dim=h // H, intermediate_size=4 * h, gated_mlp=False, activation="gelu",
            norm="layernorm", norms_per_layer=2, parallel_block=False, embedding_norm=True,
            qkv_bias=True, out_bias=True, mlp_bias=True, tie_word_embeddings=c.bool("tie_word_embeddings", True),
            position_embedding="alibi", max_position_embeddings=c.context(_BLOOM_TRAINED_CONTEXT),
        )
    elif family == "mpt":
        fields = _mpt(c, h)
    elif family == "nemotron":
        bias = c.bool("attention_bias", False)
        fields = dict(
            num_kv_heads=_kv_heads(c, "num_key_value_heads", H), head_dim=c.int("head_dim", default=None) or h // H,
            intermediate_size=c.int("intermediate_size"), gated_mlp=False, activation=c.str("hidden_act", "relu2"),
            norm="layernorm", norms_per_layer=2, parallel_block=False, qkv_bias=bias, out_bias=bias,
            mlp_bias=c.bool("mlp_bias", False), tie_word_embeddings=c.bool("tie_word_embeddings", False),
            position_embedding="rope", max_position_embeddings=c.context(),
        )
    else:  # falcon
        new_arch = c.bool("new_decoder_architecture", False)
        parallel = c.bool("parallel_attn", True)
        if new_arch:
            kv = _kv_heads(c, "num_kv_heads", H)
        else:
            kv = 1 if c.bool("multi_query", True) else H
        bias = c.bool("bias", False)
        fields = dict(
            num_kv_heads=kv, head_dim=h // H, intermediate_size=c.int("ffn_hidden_size", default=4 * h),
            gated_mlp=False, activation=c.str("activation", "gelu"), norm="layernorm",
            norms_per_layer=2 if (new_arch or not parallel) else 1, parallel_block=parallel,
            qkv_bias=bias, out_bias=bias, mlp_bias=bias, tie_word_embeddings=c.bool("tie_word_embeddings", True),
            position_embedding="alibi" if c.bool("alibi", False) else "rope",
            max_position_embeddings=c.context(_FALCON_DEFAULT_CONTEXT),
        )
    if h % H and head_dim is None and not fields.get("kv_lora_rank"):
        raise InfercastError(f"{name}: hidden size {h} is not a multiple of {H} heads "
                             f"(config.json keys '{prefix}{c.key(*_ALIASES['hidden_size'])}' and "
                             f"'{prefix}{c.key(*_ALIASES['num_heads'])}'); give head_dim or fix one of them")
    try:
        return ModelSpec(**common, **fields)
    except ValidationError as exc:
        raise InfercastError(f"{name}: {pydantic_error_line(exc)}") from None


def _mpt(c: _Config, h: int) -> dict[str, Any]:
    """MosaicML MPT (transformers' MptConfig; llm-foundry's MPTConfig writes the same keys): fused Wqkv, a
    plain MLP of expansion_ratio x d_model, LayerNorms, the LM head tied to the embedding. ``no_bias`` drops
    every bias, the norms' included; positions come from ALiBi when ``attn_config.alibi`` is set, else from a
    learned table of ``max_seq_len`` rows (llm-foundry builds ``wpe`` only without ALiBi). Keys left out take
    MptConfig's defaults (no_bias and alibi true), as transformers would."""
    attn = c.cfg.get("attn_config")
    if attn is None:
        attn = {}
    if not isinstance(attn, dict):
        raise c.fail("attn_config", f"must be a JSON object, got {shown(attn)}")
    a = _Config(attn, c.name, c.family, c.prefix + "attn_config.")
    for key in ("rope", "qk_ln", "qk_gn"):
        if a.bool(key, False):
            raise a.fail(key, "is true; infercast models MPT with ALiBi or learned positions and no QK norm")
    kv = a.int("kv_n_heads", default=None, kind="heads")
    H = c.int(*_ALIASES["num_heads"], kind="heads")
    if kv is not None:
        kv = _kv_heads(a, "kv_n_heads", H)
    bias = not c.bool("no_bias", True)
    alibi = a.bool("alibi", True)
    if not alibi and not c.bool("learned_pos_emb", True):
        raise c.fail("learned_pos_emb", "is false and attn_config.alibi is false: the model has no positions")
    expansion = c.int("expansion_ratio", default=4, kind="width")
    return dict(
        num_kv_heads=kv or H, head_dim=h // H, intermediate_size=expansion * h, gated_mlp=False, activation="gelu",
        norm="layernorm", norm_bias=bias, norms_per_layer=2, parallel_block=False, qkv_bias=bias, out_bias=bias,
        mlp_bias=bias, tie_word_embeddings=True, position_embedding="alibi" if alibi else "learned",
        max_position_embeddings=c.int("max_seq_len", default=2048, kind="context"),
    )


def _kv_heads(c: _Config, key: str, H: int) -> int:
    """K/V heads under ``key`` (absent: one per query head, MHA), dividing the query heads."""
    kv = c.int(key, default=H, low=0, kind="heads")
    if kv == 0:
        raise c.fail(key, "is 0; give the number of K/V heads, or remove the key for multi-head attention "
                          "(one per query head)")
    heads = c.key(*_ALIASES["num_heads"])
    if kv > H:
        raise c.fail(key, f"is {kv}, more than the {H} query heads ('{heads}'); KV heads are at most the heads")
    if H % kv:
        raise c.fail(key, f"is {kv}, which does not divide the {H} query heads ('{heads}'); grouped-query "
                          f"attention shares each KV head among a whole number of query heads")
    return kv


def _experts(c: _Config, experts_key: str) -> dict[str, int]:
    """Routed experts and the top-k of an MoE config, checked against each other."""
    experts = c.int(experts_key, kind="experts")
    k = c.int("num_experts_per_tok", kind="experts")
    if k > experts:
        raise c.fail("num_experts_per_tok", f"is {k}, more than the {experts} experts ('{experts_key}'); "
                                            f"a token is routed to at most every expert")
    return dict(num_experts=experts, experts_per_token=k)


def _llama_like(c: _Config, family: str, h: int, H: int, num_layers: int) -> dict[str, Any]:
    """LLaMA, Mistral, Mixtral, Qwen2 and DeepSeek-V2/V3 share one layout with optional MoE and MLA."""
    attention_bias = c.bool("attention_bias", False)
    fields: dict[str, Any] = dict(
        num_kv_heads=_kv_heads(c, "num_key_value_heads", H),
        head_dim=c.int("head_dim", default=None) or h // H,
        intermediate_size=c.int("intermediate_size"),
        gated_mlp=True, activation=c.str("hidden_act", "silu"), norm="rmsnorm", norms_per_layer=2,
        parallel_block=False,
        # Qwen2 always has q/k/v biases (Qwen2Attention: bias=True) and none on o_proj.
        qkv_bias=True if family == "qwen2" else attention_bias,
        out_bias=False if family == "qwen2" else attention_bias,
        mlp_bias=c.bool("mlp_bias", False),
        tie_word_embeddings=c.bool("tie_word_embeddings", False),
        position_embedding="rope",
        # Qwen2 configs carry a window with use_sliding_window false: only an enabled one counts.
        sliding_window=(c.int("sliding_window", default=None, kind="context")
                        if c.bool("use_sliding_window", True) else None),
    )
    if family == "mixtral":
        fields.update(**_experts(c, "num_local_experts"), moe_intermediate_size=fields["intermediate_size"])
    if family == "gpt_oss":
        fields.update(_gpt_oss(c, num_layers, fields["intermediate_size"]))
    if family.startswith("deepseek"):
        if c.int("moe_layer_freq", default=1, kind="layers") != 1:
            raise c.fail("moe_layer_freq", "other than 1 is not supported (an MoE layer every layer after "
                                           "first_k_dense_replace)")
        dense = c.int("first_k_dense_replace", default=0, low=0, kind="layers")
        if dense >= num_layers:
            raise c.fail("first_k_dense_replace", f"is {dense}, not fewer than the {num_layers} layers "
                                                  f"('{c.key(*_ALIASES['num_layers'])}'); an MoE model needs at "
                                                  f"least one MoE layer")
        rope, nope = c.int("qk_rope_head_dim", low=0), c.int("qk_nope_head_dim", low=0)
        if rope + nope == 0:
            raise c.fail("qk_nope_head_dim", "and 'qk_rope_head_dim' are both 0; a query head needs a width")
        fields.update(
            **_experts(c, "n_routed_experts"),
            moe_intermediate_size=c.int("moe_intermediate_size"),
            num_shared_experts=c.int("n_shared_experts", default=0, low=0, kind="experts"),
            first_dense_layers=dense,
            q_lora_rank=c.int("q_lora_rank", default=None), kv_lora_rank=c.int("kv_lora_rank"),
            qk_rope_head_dim=rope, qk_nope_head_dim=nope, v_head_dim=c.int("v_head_dim"),
            num_kv_heads=H, head_dim=nope + rope,
        )
    return fields


def _gpt_oss(c: _Config, num_layers: int, width: int) -> dict[str, Any]:
    """gpt-oss (OpenAI 2025, "gpt-oss-120b & gpt-oss-20b Model Card"): every layer an MoE of
    ``num_local_experts`` SwiGLU experts of ``intermediate_size`` with biases, a router with a bias,
    biased attention projections with a learned sink per head, and ``layer_types`` alternating
    sliding-window (``sliding_window`` keys) and full attention."""
    types = c.cfg.get("layer_types")
    if types is None:
        windowed = num_layers // 2 + num_layers % 2  # the HF default: every other layer windowed, from the first
    elif not isinstance(types, list) or len(types) != num_layers or not set(types) <= {"sliding_attention",
                                                                                          "full_attention"}:
        raise c.fail("layer_types", f"must list 'sliding_attention' or 'full_attention' for each of the "
                                    f"{num_layers} layers, got {shown(types)}")
    else:
        windowed = types.count("sliding_attention")
    return dict(**_experts(c, "num_local_experts"), moe_intermediate_size=width, mlp_bias=True,
                attention_sinks=True, sliding_window_layers=windowed or None,
                sliding_window=c.int("sliding_window", kind="context") if windowed else None)


# --- presets and loading ---------------------------------------------------------------

_PRESETS = resources.files("infercast") / "catalog" / "models"


@cache
def is_network_preset(name: object) -> bool:
    """Whether ``name`` is a non-decoder preset (a folder with a model_index.json: ``infercast.networks``)."""
    return isinstance(name, str) and (_PRESETS / name / "model_index.json").is_file()


def is_preset(name: object) -> bool:
    """Whether ``name`` is a decoder preset's id (a folder of the package with a config.json): ``load_model``
    reads it before any path of that name."""
    return isinstance(name, str) and "/" not in name and _preset_file(name)


@cache
def _preset_file(name: str) -> bool:
    """Kept per name: the package's files do not change while it runs."""
    return (_PRESETS / name / "config.json").is_file()


def model_ids() -> list[str]:
    """Ids of the presets shipped in the package."""
    return sorted(p.name for p in _PRESETS.iterdir() if (p / "config.json").is_file())


def preset_config(model_id: str) -> dict[str, Any]:
    """The raw config.json of a preset (including its ``_infercast`` provenance)."""
    return json.loads((_PRESETS / model_id / "config.json").read_text(encoding="utf-8"))


# A Hugging Face repo id: 'org/name', letters, digits and - _ . (huggingface_hub's REPO_ID_REGEX)
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def hf_cache_dir() -> Path:
    """Where huggingface_hub keeps downloaded repos: $HF_HUB_CACHE, else $HF_HOME/hub, else
    $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub (huggingface_hub.constants)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return cache / "huggingface" / "hub"


def hf_cached_config(repo_id: str) -> Path | None:
    """The config.json of ``repo_id`` in the local Hugging Face cache, if it was downloaded.

    The snapshot ``refs/main`` points at is the one ``from_pretrained`` would load offline; without
    that ref, the newest snapshot holding a config.json."""
    repo = hf_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    try:
        ref = repo / "refs" / "main"
        if ref.is_file():
            pinned = repo / "snapshots" / ref.read_text(encoding="utf-8").strip() / "config.json"
            if pinned.is_file():
                return pinned
        found = [p for p in (repo / "snapshots").glob("*/config.json") if p.is_file()]
    except (OSError, ValueError):
        return None
    return max(found, key=lambda p: p.parent.stat().st_mtime) if found else None


def _closest_preset(repo_id: str) -> str:
    """' (closest preset: llama-3-8b)' for a repo id whose name resembles a preset, else ''."""
    base = repo_id.rsplit("/", 1)[-1].lower().removeprefix("meta-")
    for suffix in ("-instruct", "-chat", "-hf", "-base", "-it"):
        base = base.replace(suffix, "")
    close = difflib.get_close_matches(base, model_ids(), n=1, cutoff=0.5)
    return f"; closest preset: {close[0]} (--model {close[0]})" if close else ""


def _read_config(path: Path, name: str) -> dict[str, Any]:
    text = read_text(path, "--model")
    try:
        config = json.loads(text)
    except RecursionError:
        raise InfercastError(f"--model: {path} is nested too deeply to be a config.json") from None
    except ValueError as exc:  # JSONDecodeError, or an integer of more than 4300 digits
        raise InfercastError(f"--model: {path} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise InfercastError(f"--model: {path} must hold a JSON object")
    return config


@cache
def load_model(name: str) -> ModelSpec:
    """A preset by exact id, a config.json path (the file or the folder holding it), or a Hugging Face
    repo id ('org/name') whose config.json is in the local HF cache. The hub is never contacted."""
    if name in model_ids():
        return normalise(preset_config(name), name)
    if not name.strip():
        raise InfercastError("--model: the name is empty; give a preset id (infercast models list) or a config.json path")
    path = Path(name)
    if exists(path):
        if path.is_dir():
            path = path / "config.json"
            if not exists(path):
                raise InfercastError(f"--model: folder {name} holds no config.json")
        config = _read_config(path, name)
    elif _REPO_ID.fullmatch(name) and not name.endswith(".json"):
        cached = hf_cached_config(name)
        if cached is None:
            where = hf_cache_dir() / ("models--" + name.replace("/", "--"))
            raise InfercastError(f"--model {name}: not a preset, a file, or a repo in the local Hugging Face cache "
                                 f"(looked in {where}; the hub is not consulted, infercast works offline){_closest_preset(name)}"
                                 f"; or download its config.json and pass its path")
        config = _read_config(cached, name)
    elif "/" in name or name.endswith(".json"):
        raise InfercastError(f"--model: no such file or folder {name}")
    else:
        raise UnknownName(f"unknown model '{name}'{did_you_mean(name, model_ids())}; see 'infercast models list'")
    try:
        return normalise(config, name)
    except InfercastError as exc:
        raise InfercastError(f"--model {exc}") from None
