"""Models: ``ModelSpec``, the Hugging Face ``config.json`` normaliser, presets and exact parameter counts.

Every family's config keys are mapped onto one spec by ``normalise``. Parameter counts are
computed from the shapes of the weight matrices, biases and norms the HF implementation of
each family creates, so they match ``sum(p.numel() for p in model.parameters())``.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from infercast.errors import InfercastError, did_you_mean, pydantic_error_line


class ModelSpec(BaseModel):
    """A decoder-only transformer, normalised from any supported config.json."""

    model_config = ConfigDict(frozen=True, extra="forbid")

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

    def expert_params(self) -> int:
        """Parameters of one routed (or shared) expert MLP."""
        h, f = self.hidden_size, self.moe_intermediate_size
        return (3 if self.gated_mlp else 2) * h * f

    def param_parts(self) -> dict[str, int]:
        """Parameters by piece: ``embedding`` (token, position, embedding norm), ``final_norm``,
        ``head`` (untied LM head), ``dense_layer`` (one layer with a dense MLP), ``moe_layer``
        (one MoE layer without its routed experts: attention, norms, router, shared experts)
        and ``expert`` (one routed expert)."""
        h, V = self.hidden_size, self.vocab_size
        norm = h * (2 if self.norm == "layernorm" else 1)
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
            if self.architecture.startswith("deepseek"):
                router += self.num_experts  # e_score_correction_bias (DeepSeek-V3 noaux_tc routing)
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
        return qkv + out

    def _mlp_params(self, f: int) -> int:
        h = self.hidden_size
        if self.gated_mlp:
            return 3 * h * f + ((2 * f + h) if self.mlp_bias else 0)
        return 2 * h * f + ((f + h) if self.mlp_bias else 0)


# --- the normaliser -------------------------------------------------------------------

_ALIASES = {
    "hidden_size": ("hidden_size", "n_embd", "n_embed", "d_model"),
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "num_heads": ("num_attention_heads", "n_head", "num_heads"),
    "vocab_size": ("vocab_size",),
}
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length", "max_sequence_length")

_LLAMA_LIKE = {"llama", "mistral", "mixtral", "qwen2", "deepseek_v3", "deepseek_v2"}
_FAMILIES = sorted(_LLAMA_LIKE | {"gpt2", "gptj", "gpt_neox", "bloom", "falcon"})

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


def normalise(config: dict[str, Any], name: str) -> ModelSpec:
    """Map a Hugging Face config dict (any supported family) onto a ``ModelSpec``."""
    cfg = dict(config)
    if "text_config" in cfg and isinstance(cfg["text_config"], dict):
        text = cfg["text_config"]
        family = text.get("model_type", "llama")
        cfg = {**_TEXT_CONFIG_DEFAULTS.get(family, {}), **text, "model_type": family}
    family = cfg.get("model_type")
    if family in ("RefinedWeb", "RefinedWebModel"):
        family = "falcon"
    if family not in _FAMILIES:
        raise InfercastError(
            f"{name}: model_type {family!r} is not supported; supported: {', '.join(_FAMILIES)}"
        )

    def get(canonical: str) -> Any:
        for key in _ALIASES.get(canonical, (canonical,)):
            if cfg.get(key) is not None:
                return cfg[key]
        raise InfercastError(f"{name}: config.json has no '{_ALIASES.get(canonical, (canonical,))[0]}' ({family})")

    def context(default: int | None = None) -> int:
        for key in _CONTEXT_KEYS:
            if cfg.get(key) is not None:
                return cfg[key]
        if default is None:
            raise InfercastError(f"{name}: config.json has no 'max_position_embeddings' ({family})")
        return default

    h, H = get("hidden_size"), get("num_heads")
    common = dict(
        name=name, architecture=family, vocab_size=get("vocab_size"), hidden_size=h,
        num_layers=get("num_layers"), num_heads=H,
    )
    if family in _LLAMA_LIKE:
        fields = _llama_like(cfg, family, h, H, get)
        fields["max_position_embeddings"] = context()
    elif family == "gpt2":
        fields = dict(
            num_kv_heads=H, head_dim=h // H, intermediate_size=cfg.get("n_inner") or 4 * h, gated_mlp=False,
            activation=cfg.get("activation_function", "gelu_new"), norm="layernorm", norms_per_layer=2,
            parallel_block=False, qkv_bias=True, out_bias=True, mlp_bias=True,
            tie_word_embeddings=cfg.get("tie_word_embeddings", True), position_embedding="learned",
            max_position_embeddings=context(),
        )
    elif family == "gptj":
        fields = dict(
            num_kv_heads=H, head_dim=h // H, intermediate_size=cfg.get("n_inner") or 4 * h, gated_mlp=False,
            activation=cfg.get("activation_function", "gelu_new"), norm="layernorm", norms_per_layer=1,
            parallel_block=True, qkv_bias=False, out_bias=False, mlp_bias=True, lm_head_bias=True,
            tie_word_embeddings=cfg.get("tie_word_embeddings", False), position_embedding="rope",
            max_position_embeddings=context(),
        )
    elif family == "gpt_neox":
        fields = dict(
            num_kv_heads=H, head_dim=h // H, intermediate_size=get("intermediate_size"), gated_mlp=False,
            activation=cfg.get("hidden_act", "gelu"), norm="layernorm", norms_per_layer=2,
            parallel_block=cfg.get("use_parallel_residual", True), qkv_bias=cfg.get("attention_bias", True),
            out_bias=cfg.get("attention_bias", True), mlp_bias=True,
            tie_word_embeddings=cfg.get("tie_word_embeddings", False), position_embedding="rope",
            max_position_embeddings=context(),
        )
    elif family == "bloom":
        fields = dict(
            num_kv_heads=H, head_dim=h // H, intermediate_size=4 * h, gated_mlp=False, activation="gelu",
            norm="layernorm", norms_per_layer=2, parallel_block=False, embedding_norm=True,
            qkv_bias=True, out_bias=True, mlp_bias=True, tie_word_embeddings=cfg.get("tie_word_embeddings", True),
            position_embedding="alibi", max_position_embeddings=context(_BLOOM_TRAINED_CONTEXT),
        )
    else:  # falcon
        new_arch = cfg.get("new_decoder_architecture", False)
        parallel = cfg.get("parallel_attn", True)
        if new_arch:
            kv = cfg.get("num_kv_heads") or H
        else:
            kv = 1 if cfg.get("multi_query", True) else H
        bias = cfg.get("bias", False)
        fields = dict(
            num_kv_heads=kv, head_dim=h // H, intermediate_size=cfg.get("ffn_hidden_size") or 4 * h,
            gated_mlp=False, activation=cfg.get("activation", "gelu"), norm="layernorm",
            norms_per_layer=2 if (new_arch or not parallel) else 1, parallel_block=parallel,
            qkv_bias=bias, out_bias=bias, mlp_bias=bias, tie_word_embeddings=cfg.get("tie_word_embeddings", True),
            position_embedding="alibi" if cfg.get("alibi", False) else "rope",
            max_position_embeddings=context(_FALCON_DEFAULT_CONTEXT),
        )
    if h % H and not cfg.get("head_dim") and not cfg.get("kv_lora_rank"):
        raise InfercastError(f"{name}: hidden size {h} is not a multiple of {H} heads")
    try:
        return ModelSpec(**common, **fields)
    except ValidationError as exc:
        raise InfercastError(f"{name}: {pydantic_error_line(exc)}") from None


def _llama_like(cfg: dict[str, Any], family: str, h: int, H: int, get) -> dict[str, Any]:
    """LLaMA, Mistral, Mixtral, Qwen2 and DeepSeek-V2/V3 share one layout with optional MoE and MLA."""
    fields: dict[str, Any] = dict(
        num_kv_heads=cfg.get("num_key_value_heads") or H,
        head_dim=cfg.get("head_dim") or h // H,
        intermediate_size=get("intermediate_size"),
        gated_mlp=True, activation=cfg.get("hidden_act", "silu"), norm="rmsnorm", norms_per_layer=2,
        parallel_block=False,
        # Qwen2 always has q/k/v biases (Qwen2Attention: bias=True) and none on o_proj.
        qkv_bias=True if family == "qwen2" else bool(cfg.get("attention_bias", False)),
        out_bias=False if family == "qwen2" else bool(cfg.get("attention_bias", False)),
        mlp_bias=bool(cfg.get("mlp_bias", False)),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        position_embedding="rope",
        # Qwen2 configs carry a window with use_sliding_window false: only an enabled one counts.
        sliding_window=cfg.get("sliding_window") if cfg.get("use_sliding_window", True) else None,
    )
    if family == "mixtral":
        fields.update(num_experts=get("num_local_experts"), experts_per_token=get("num_experts_per_tok"),
                      moe_intermediate_size=fields["intermediate_size"])
    if family.startswith("deepseek"):
        fields.update(
            num_experts=get("n_routed_experts"), experts_per_token=get("num_experts_per_tok"),
            moe_intermediate_size=get("moe_intermediate_size"), num_shared_experts=cfg.get("n_shared_experts") or 0,
            first_dense_layers=cfg.get("first_k_dense_replace", 0),
            q_lora_rank=cfg.get("q_lora_rank"), kv_lora_rank=get("kv_lora_rank"),
            qk_rope_head_dim=get("qk_rope_head_dim"), qk_nope_head_dim=get("qk_nope_head_dim"),
            v_head_dim=get("v_head_dim"), num_kv_heads=H,
            head_dim=get("qk_nope_head_dim") + get("qk_rope_head_dim"),
        )
        if cfg.get("moe_layer_freq", 1) != 1:
            raise InfercastError("deepseek config: moe_layer_freq other than 1 is not supported")
    return fields


# --- presets and loading ---------------------------------------------------------------

_PRESETS = resources.files("infercast") / "catalog" / "models"


@cache
def model_ids() -> list[str]:
    """Ids of the presets shipped in the package."""
    return sorted(p.name for p in _PRESETS.iterdir() if (p / "config.json").is_file())


def preset_config(model_id: str) -> dict[str, Any]:
    """The raw config.json of a preset (including its ``_infercast`` provenance)."""
    return json.loads((_PRESETS / model_id / "config.json").read_text())


@cache
def load_model(name: str) -> ModelSpec:
    """A preset by exact id, or a config.json path (the file or the folder holding it)."""
    path = Path(name)
    if name in model_ids():
        return normalise(preset_config(name), name)
    if path.is_dir():
        path = path / "config.json"
        if not path.is_file():
            raise InfercastError(f"--model: folder {name} holds no config.json")
    if path.is_file():
        try:
            config = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InfercastError(f"--model: {path} is not valid JSON ({exc})") from None
        if not isinstance(config, dict):
            raise InfercastError(f"--model: {path} must hold a JSON object")
        return normalise(config, str(name))
    if "/" in name or name.endswith(".json"):
        raise InfercastError(f"--model: no such file or folder {name}")
    raise InfercastError(f"unknown model '{name}'{did_you_mean(name, model_ids())}; see 'infercast models list'")
