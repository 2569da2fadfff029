"""A LLaMA-architecture decoder in eager PyTorch, with random weights, that ``infercast calibrate --local``
times to check the estimate against a real run on the machine at hand.

It is the LLaMA layer as Hugging Face's ``LlamaForCausalLM`` computes it: RMSNorm, rotary position
embeddings (the rotate-half form), grouped-query attention over a KV cache that every pass appends
to, a SwiGLU MLP and an LM head, with greedy sampling. Q/K/V and gate/up are fused into one matrix
each, as vLLM and TensorRT-LLM do, so the kernels are the ones ``infercast.ops`` counts. The weights
are random: speed does not depend on their values, and nothing is downloaded.

torch is an optional dependency (``pip install "infercast[torch]"``); this module imports it at the
top, so import it only after checking that torch is installed.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from infercast.estimate import Estimate, estimate
from infercast.hardware import Chip
from infercast.model import ModelSpec, normalise


@dataclass(frozen=True)
class ReferenceConfig:
    """Shape of the reference decoder (the fields of a LLaMA ``config.json``)."""

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int = 32000
    """LLaMA-2's vocabulary."""
    max_position_embeddings: int = 4096
    rope_theta: float = 10000.0
    """LLaMA-2's rotary base."""
    rms_norm_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def hf_config(self) -> dict:
        """The Hugging Face ``config.json`` of this shape."""
        return {
            "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_layers, "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads, "intermediate_size": self.intermediate_size,
            "vocab_size": self.vocab_size, "max_position_embeddings": self.max_position_embeddings,
            "rope_theta": self.rope_theta, "rms_norm_eps": self.rms_norm_eps, "hidden_act": "silu",
            "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
        }

    def spec(self) -> ModelSpec:
        """The ``ModelSpec`` infercast estimates this decoder with."""
        return normalise(self.hf_config(), self.name)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: int) -> torch.Tensor:
    """Causal grouped-query attention of the ``T`` new queries at positions ``pos .. pos + T - 1``
    over the first ``pos + T`` cached keys. q: [B, H, T, d]; k, v: [B, KV, pos + T, d]."""
    T = q.shape[2]
    if T == 1:  # one decode query sees every cached key
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    if pos == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    keys = torch.arange(pos + T, device=q.device)
    mask = keys[None, :] <= (pos + torch.arange(T, device=q.device))[:, None]  # [T, pos + T]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)


class ReferenceLlama:
    """The decoder's weights and KV cache for ``batch`` sequences of up to ``max_len`` tokens."""

    def __init__(self, config: ReferenceConfig, *, batch: int, max_len: int, device: str = "cpu",
                 dtype: torch.dtype = torch.float32, seed: int = 0) -> None:
        c = config
        self.config, self.batch, self.max_len, self.device, self.dtype = c, batch, max_len, device, dtype
        gen = torch.Generator(device=device).manual_seed(seed)

        def weight(*shape: int, fan_in: int | None = None) -> torch.Tensor:
            # uniform with variance 1 / fan_in keeps activations O(1) through the layers (the
            # spread, not the values, matters: timing does not depend on them)
            bound = (3.0 / fan_in) ** 0.5 if fan_in else 3.0**0.5
            return torch.empty(shape, device=device, dtype=dtype).uniform_(-bound, bound, generator=gen)

        h, d, H, KV, f = c.hidden_size, c.head_dim, c.num_heads, c.num_kv_heads, c.intermediate_size
        self.embed = weight(c.vocab_size, h)
        self.layers = [
            {
                "attn_norm": torch.ones(h, device=device, dtype=dtype),
                "wqkv": weight((H + 2 * KV) * d, h, fan_in=h),
                "wo": weight(h, H * d, fan_in=H * d),
                "mlp_norm": torch.ones(h, device=device, dtype=dtype),
                "w_gate_up": weight(2 * f, h, fan_in=h),
                "w_down": weight(h, f, fan_in=f),
            }
            for _ in range(c.num_layers)
        ]
        self.final_norm = torch.ones(h, device=device, dtype=dtype)
        self.lm_head = weight(c.vocab_size, h, fan_in=h)
        # the KV cache: [layer][B, KV, max_len, d], written at each pass's positions
        self.k_cache = [torch.zeros(batch, KV, max_len, d, device=device, dtype=dtype) for _ in range(c.num_layers)]
        self.v_cache = [torch.zeros_like(k) for k in self.k_cache]
        # rotary tables [max_len, d] (Su et al. 2021; HF's rotate-half layout), computed in fp32
        inv_freq = 1.0 / c.rope_theta ** (torch.arange(0, d, 2, device=device, dtype=torch.float32) / d)
        angles = torch.outer(torch.arange(max_len, device=device, dtype=torch.float32), inv_freq)
        angles = torch.cat([angles, angles], dim=-1)
        self.cos, self.sin = angles.cos().to(dtype), angles.sin().to(dtype)

    def forward(self, tokens: torch.Tensor, pos: int, *, all_logits: bool = False) -> torch.Tensor:
        """Logits (fp32) after the ``T`` tokens ``tokens`` [B, T] at positions ``pos ..``: of the last
        position [B, V], or of every position [B, T, V] with ``all_logits``. Appends to the cache."""
        c = self.config
        B, T = tokens.shape
        if pos + T > self.max_len:
            raise ValueError(f"positions up to {pos + T} exceed the cache of {self.max_len}")
        H, KV, d, eps = c.num_heads, c.num_kv_heads, c.head_dim, c.rms_norm_eps
        cos, sin = self.cos[pos:pos + T], self.sin[pos:pos + T]  # [T, d]
        x = F.embedding(tokens, self.embed)  # [B, T, h]
        for layer, k_cache, v_cache in zip(self.layers, self.k_cache, self.v_cache):
            a = F.rms_norm(x, (c.hidden_size,), layer["attn_norm"], eps)
            q, k, v = F.linear(a, layer["wqkv"]).split([H * d, KV * d, KV * d], dim=-1)
            q = _rope(q.view(B, T, H, d).transpose(1, 2), cos, sin)  # [B, H, T, d]
            k = _rope(k.view(B, T, KV, d).transpose(1, 2), cos, sin)  # [B, KV, T, d]
            k_cache[:, :, pos:pos + T] = k
            v_cache[:, :, pos:pos + T] = v.view(B, T, KV, d).transpose(1, 2)
            o = attend(q, k_cache[:, :, :pos + T], v_cache[:, :, :pos + T], pos)
            x = x + F.linear(o.transpose(1, 2).reshape(B, T, H * d), layer["wo"])
            m = F.rms_norm(x, (c.hidden_size,), layer["mlp_norm"], eps)
            gate, up = F.linear(m, layer["w_gate_up"]).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, layer["w_down"])
        x = F.rms_norm(x, (c.hidden_size,), self.final_norm, eps)
        if not all_logits:
            x = x[:, -1]  # only the last position's logits are sampled from
        return F.linear(x, self.lm_head).float()


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin over the last dimension (x: [B, heads, T, d])."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


@dataclass(frozen=True)
class GenerationTiming:
    """Wall time of a prefill (the first token) and of each decode step after it."""

    prefill_s: float
    step_s: list[float]


def time_generation(model: ReferenceLlama, prompt: torch.Tensor, osl: int,
                    sync: Callable[[], None]) -> GenerationTiming:
    """Greedy generation of ``osl`` tokens after ``prompt`` [B, isl], timing the prefill (which
    samples the first token) and each of the ``osl - 1`` decode steps. ``sync`` waits for the device."""
    with torch.inference_mode():
        sync()
        start = time.perf_counter()
        token = model.forward(prompt, 0).argmax(dim=-1, keepdim=True)  # [B, 1]
        sync()
        prefill_s = time.perf_counter() - start
        steps = []
        for j in range(osl - 1):
            start = time.perf_counter()
            token = model.forward(token, prompt.shape[1] + j).argmax(dim=-1, keepdim=True)
            sync()
            steps.append(time.perf_counter() - start)
    return GenerationTiming(prefill_s, steps)


def llama_width(hidden: int) -> int:
    """LLaMA's SwiGLU width: two thirds of 4 x hidden, rounded up to a multiple of 256 (``multiple_of``
    in Meta's llama/model.py; 11008 for 4096)."""
    return 256 * math.ceil(8 * hidden / 3 / 256)


LADDER = tuple(ReferenceConfig(f"reference-{h}x{L}", h, L, H, KV, llama_width(h))
               for h, L, H, KV in ((512, 4, 8, 2), (1024, 8, 16, 4), (2048, 8, 16, 4), (2048, 16, 16, 4),
                                   (4096, 16, 32, 8), (4096, 32, 32, 8)))
"""Reference decoders from small to LLaMA-2-7B's widths (with 4:1 grouped-query attention); a run
takes the largest that fits its time budget and the machine's memory."""


def choose_reference(chip: Chip, dtype: str, *, isl: int, osl: int, runs: int, budget_s: float,
                     memory_bytes: float) -> ReferenceConfig:
    """The largest decoder of ``LADDER`` whose ``runs`` generations the estimate puts within ``budget_s``
    and whose weights and cache take at most ``memory_bytes`` (the smallest one if none does)."""
    chosen = LADDER[0]
    for config in LADDER:
        r = estimate(config.spec(), chip, batch=1, isl=isl, osl=osl, dtype=dtype)
        if runs * r.e2e_latency_s > budget_s or r.memory.weights_bytes + r.memory.kv_cache_bytes > memory_bytes:
            break
        chosen = config
    return chosen


@dataclass(frozen=True)
class ReferenceRun:
    """Measured and predicted prefill and decode of one reference decoder."""

    config: ReferenceConfig
    dtype: str
    batch: int
    isl: int
    osl: int
    prefill_s: float
    """Median over the timed generations of the prefill (time to the first token)."""
    tpot_s: float
    """Median over the timed generations of the mean decode step."""
    predicted: Estimate
    prefill_min_s: float
    tpot_min_s: float
    """The fastest of the same, for a view of the spread (interference on a shared machine)."""

    def rows(self) -> list[dict]:
        pairs = (("prefill", self.prefill_s, self.predicted.ttft_s), ("tpot", self.tpot_s, self.predicted.tpot_s))
        return [{"phase": phase, "measured_s": m, "predicted_s": p, "error": p / m - 1} for phase, m, p in pairs]

    def to_dict(self) -> dict:
        return {"model": self.config.name, "config": self.config.hf_config(), "params": self.predicted.params_total,
                "dtype": self.dtype, "batch": self.batch, "isl": self.isl, "osl": self.osl,
                "prefill_min_s": self.prefill_min_s, "tpot_min_s": self.tpot_min_s,
                "breakdown": [{"op": r.op, "phase": r.phase, "time_s": r.time_s, "bound": r.bound}
                              for r in self.predicted.breakdown]}


def run_reference(config: ReferenceConfig, chip: Chip, *, device: str, dtype: str, torch_dtype: torch.dtype,
                  isl: int, osl: int, trials: int, sync: Callable[[], None], batch: int = 1) -> ReferenceRun:
    """Time ``trials`` greedy generations (after a short warm-up), keeping the median as
    ``localbench.time_call`` does, and predict them on ``chip``."""
    model = ReferenceLlama(config, batch=batch, max_len=isl + osl, device=device, dtype=torch_dtype)
    gen = torch.Generator(device=device).manual_seed(1)
    prompt = torch.randint(0, config.vocab_size, (batch, isl), device=device, generator=gen)
    time_generation(model, prompt, min(osl, 3), sync)
    runs = [time_generation(model, prompt, osl, sync) for _ in range(trials)]
    prefill = [r.prefill_s for r in runs]
    tpot = [statistics.fmean(r.step_s) if r.step_s else float("nan") for r in runs]
    predicted = estimate(config.spec(), chip, batch=batch, isl=isl, osl=osl, dtype=dtype)
    return ReferenceRun(config, dtype, batch, isl, osl, statistics.median(prefill), statistics.median(tpot),
                        predicted, min(prefill), min(tpot))


def step_overhead(chip: Chip, *, num_layers: int, device: str, dtype: str, torch_dtype: torch.dtype, trials: int,
                  sync: Callable[[], None]) -> float:
    """Per-pass framework time: the mean decode step of a decoder ``num_layers`` deep but 64 channels
    wide (whose math is negligible) less what the roofline predicts for it without a step overhead.
    What is left is Python and dispatch beyond one kernel overhead per counted operator."""
    tiny = ReferenceConfig("step-overhead-probe", 64, num_layers, 4, 2, llama_width(64), vocab_size=256)
    bare = chip.model_copy(update={"efficiency": {**(chip.efficiency or {}), "step_overhead_s": 0.0}})
    run = run_reference(tiny, bare, device=device, dtype=dtype, torch_dtype=torch_dtype, isl=16, osl=33,
                        trials=trials, sync=sync)
    return max(0.0, run.tpot_s - run.predicted.tpot_s)
