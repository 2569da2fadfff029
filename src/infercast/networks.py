"""Models beyond the decoder: encoders (BERT), CNNs (ResNet), and diffusion pipelines (text encoders, a UNet
or a diffusion transformer, a VAE decoder), read from the configs shipped in ``catalog/models/<id>/``.

A preset folder holds a ``model_index.json`` (diffusers' pipeline manifest; infercast's for BERT and
ResNet) whose ``_infercast`` block gives the model kind, its source and its default workload, and one
folder per component with that component's own config (diffusers' ``UNet2DConditionModel``,
``AutoencoderKL`` and ``FluxTransformer2DModel`` configs, transformers' ``CLIPTextConfig`` and
``T5Config``, the MLPerf harness's ``bert_config.json``, torchvision's ResNet layer list).

A model is run as a list of passes (``Network.passes``): an encoder is one bidirectional pass over the
sequence (S^2 attention pairs, no KV cache, no LM head); a CNN one pass over the image; a diffusion
pipeline its text encoder(s) once, the denoiser ``steps`` times (on twice the batch with classifier-free
guidance, as diffusers batches the unconditional and conditional halves), and the VAE decoder once. Each
pass is an ``ops.Op`` list built from ``ops_vision``'s operators; parameters are counted from the same
operators (``params``), so the memory model and the FLOP counts read one description.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any, Literal

from infercast.errors import InfercastError, UnknownName, did_you_mean
from infercast.model import is_network_preset
from infercast.ops import Op, Precision, vector_op
from infercast.ops_vision import (FUSED, Execution, add, attention, conv2d, cross_attention, encoder_layers, feed_forward,
                                  linear, norm, norm_act, norm_modulate, out_size, pool, self_attention, upsample2x)

Kind = Literal["encoder", "cnn", "diffusion"]
Pass = tuple[str, list[Op], float]
"""(name, operators of one execution, executions per batch of requests)."""

_PRESETS = resources.files("infercast") / "catalog" / "models"
TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3")
"""A diffusion pipeline's text encoder components, in diffusers' names."""
INT8 = Precision("int8", "int8", "int8")
"""One byte per element: an operator list's weight bytes at this precision are its parameters."""


# --- components ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextEncoder:
    """A transformer encoder over ``tokens`` tokens (CLIP and T5 text encoders, BERT)."""

    name: str
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    tokens: int
    positions: int
    """Learned position rows (0: relative or none)."""
    ff: str = "gelu"
    causal: bool = False
    rms: bool = False
    bias: bool = True
    projection: int = 0
    """Output projection width (CLIPTextModelWithProjection), 0 for none."""
    extra_params: int = 0
    """Parameters no operator reads per token (token-type rows, T5's relative-position table)."""
    head: int = 0
    """A task head on every token (BERT's span head: 2 logits), 0 for none."""

    def ops(self, batch, tokens=None, x: Execution = FUSED) -> list[Op]:
        S = self.tokens if tokens is None else tokens
        T, d, p = batch * S, self.hidden, _P
        rows = 2 if self.positions else 1
        ops = [vector_op(f"{self.name}_embedding", 1, T * d, rows - 1, p, reads=0, weight_elems=0)]
        if self.name == "bert":  # BERT normalises the embeddings
            ops.append(norm("bert_embedding_norm", 1, T * d, d, p))
        ops += encoder_layers(self.name, self.layers, batch, S, d, self.heads, self.ffn, p, ff=self.ff,
                              bias=self.bias, causal=self.causal, rms=self.rms, x=x)
        if self.name != "bert":  # pre-norm encoders end with a norm
            ops.append(norm(f"{self.name}_final_norm", 1, T * d, d, p, rms=self.rms))
        if self.projection:
            ops.append(linear(f"{self.name}_projection", 1, batch, d, self.projection, p, bias=False))
        if self.head:
            ops.append(linear(f"{self.name}_head", 1, T, d, self.head, p))
        return ops

    def table_params(self) -> int:
        return self.vocab * self.hidden + self.positions * self.hidden + self.extra_params


_P = Precision()
"""Placeholder precision while a component's operators are built; ``with_precision`` sets the real one."""


@dataclass(frozen=True)
class ResNet:
    """ResNet v1.5 (torchvision): bottleneck stages with the stride on the 3x3 conv. At inference batch norm
    is folded into each conv's weights and bias, and ReLU and the residual add run in the conv's epilogue
    (TensorRT's and ONNX Runtime's conv fusions): the last conv of a block reads the shortcut tensor too."""

    name: str
    stages: tuple[int, ...]
    width: int
    classes: int
    expansion: int = 4

    def ops(self, batch, H: int, W: int) -> list[Op]:
        p, c = _P, self.width
        ops = [conv2d("stem_conv", 1, batch, H, W, 3, c, 7, p, stride=2)]
        H, W = out_size(H, 7, 2), out_size(W, 7, 2)
        ops.append(pool("stem_maxpool", 1, batch, H, W, c, 3, 2, p))
        H, W = out_size(H, 3, 2), out_size(W, 3, 2)
        inplanes = c
        for i, blocks in enumerate(self.stages):
            planes, out = c * 2**i, c * 2**i * self.expansion
            for b in range(blocks):
                stride = 2 if (b == 0 and i > 0) else 1
                Ho, Wo = out_size(H, 3, stride), out_size(W, 3, stride)
                tag = f"layer{i + 1}"
                if b == 0:  # the projection shortcut: a strided 1x1 conv
                    ops.append(conv2d(f"{tag}_downsample", 1, batch, H, W, inplanes, out, 1, p, stride=stride))
                conv3 = conv2d(f"{tag}_conv3", 1, batch, Ho, Wo, planes, out, 1, p)
                ops += [conv2d(f"{tag}_conv1", 1, batch, H, W, inplanes, planes, 1, p),
                        conv2d(f"{tag}_conv2", 1, batch, H, W, planes, planes, 3, p, stride=stride),
                        replace(conv3, act_bytes=conv3.act_bytes + conv3.write_bytes)]  # + the shortcut read
                H, W, inplanes = Ho, Wo, out
        ops.append(pool("avgpool", 1, batch, H, W, inplanes, H, H, p))
        ops.append(linear("fc", 1, batch, inplanes, self.classes, p))
        return ops


def _resnet_block(prefix: str, batch, H: int, W: int, cin: int, cout: int, groups_ch: int, temb: int,
                  p: Precision, x: Execution = FUSED) -> list[Op]:
    """diffusers' ResnetBlock2D: GN+SiLU, 3x3 conv, the time embedding projected and added, GN+SiLU, 3x3
    conv, a 1x1 shortcut conv where the channels change, the residual add."""
    E = batch * H * W
    ops = [*norm_act(f"{prefix}_norm1", 1, E * cin, cin, p, x=x),
           conv2d(f"{prefix}_conv1", 1, batch, H, W, cin, cout, 3, p)]
    if temb:
        ops += [linear(f"{prefix}_time_proj", 1, batch, temb, cout, p), add(f"{prefix}_time_add", 1, E * cout, p)]
    ops += [*norm_act(f"{prefix}_norm2", 1, E * cout, cout, p, x=x),
            conv2d(f"{prefix}_conv2", 1, batch, H, W, cout, cout, 3, p)]
    if cin != cout:
        ops.append(conv2d(f"{prefix}_shortcut", 1, batch, H, W, cin, cout, 1, p))
    ops.append(add(f"{prefix}_residual", 1, E * cout, p))
    return ops


def _transformer_2d(prefix: str, batch, H: int, W: int, C: int, blocks: int, heads: int, ctx_len: int,
                    ctx_dim: int, p: Precision, x: Execution = FUSED) -> list[Op]:
    """diffusers' Transformer2DModel: GN, proj_in, ``blocks`` BasicTransformerBlocks (LN, self-attention; LN,
    cross-attention over the text tokens; LN, GEGLU feed-forward of 4C), proj_out, the residual add."""
    S = H * W
    T = batch * S
    ops = [*norm_act(f"{prefix}_norm", 1, T * C, C, p, act=False), linear(f"{prefix}_proj_in", 1, T, C, C, p)]
    ops += [norm(f"{prefix}_norm1", blocks, T * C, C, p),
            *self_attention(f"{prefix}_self", blocks, batch, S, C, heads, p, bias=False, out_bias=True, x=x),
            add(f"{prefix}_self_residual", blocks, T * C, p),
            norm(f"{prefix}_norm2", blocks, T * C, C, p),
            *cross_attention(f"{prefix}_cross", blocks, batch, S, C, heads, ctx_len, ctx_dim, p, x),
            add(f"{prefix}_cross_residual", blocks, T * C, p),
            norm(f"{prefix}_norm3", blocks, T * C, C, p),
            *feed_forward(f"{prefix}_ff", blocks, T, C, 4 * C, p, kind="geglu"),
            add(f"{prefix}_ff_residual", blocks, T * C, p)]
    return ops + [linear(f"{prefix}_proj_out", 1, T, C, C, p), add(f"{prefix}_residual", 1, T * C, p)]


def _per_block(value, n: int) -> list[int]:
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


@dataclass(frozen=True)
class UNet:
    """diffusers' UNet2DConditionModel, from its config.json (SD-1.5, SD-2.1, SDXL)."""

    config: dict[str, Any]
    name: str = "unet"

    def ops(self, batch, h: int, w: int, ctx_len: int, x: Execution = FUSED) -> list[Op]:
        c, p = self.config, _P
        ch = list(c["block_out_channels"])
        n = len(ch)
        # diffusers: attention_head_dim is the number of heads when num_attention_heads is unset
        heads = _per_block(c.get("num_attention_heads") or c["attention_head_dim"], n)
        depth = _per_block(c.get("transformer_layers_per_block", 1), n)
        layers = _per_block(c["layers_per_block"], n)
        ctx_dim, temb, t_ch = c["cross_attention_dim"], ch[0] * 4, ch[0]
        ops = [vector_op("time_proj", 1, batch * t_ch, 4, p),
               linear("time_linear_1", 1, batch, t_ch, temb, p), linear("time_linear_2", 1, batch, temb, temb, p)]
        if c.get("addition_embed_type") == "text_time":  # SDXL: size and crop ids beside the pooled text
            add_in = c["projection_class_embeddings_input_dim"]
            ops += [vector_op("add_time_proj", 1, batch * 6 * c["addition_time_embed_dim"], 4, p),
                    linear("add_linear_1", 1, batch, add_in, temb, p), linear("add_linear_2", 1, batch, temb, temb, p)]
        ops.append(conv2d("conv_in", 1, batch, h, w, c["in_channels"], ch[0], c.get("conv_in_kernel", 3), p))
        skips, H, W, cin = [ch[0]], h, w, ch[0]
        for i, kind in enumerate(c["down_block_types"]):
            for j in range(layers[i]):
                ops += _resnet_block(f"down{i}_resnet{j}", batch, H, W, cin, ch[i], 32, temb, p, x)
                cin = ch[i]
                if kind.startswith("CrossAttn"):
                    ops += _transformer_2d(f"down{i}_attn{j}", batch, H, W, cin, depth[i], heads[i], ctx_len, ctx_dim,
                                           p, x)
                skips.append(cin)
            if i < n - 1:
                ops.append(conv2d(f"down{i}_downsample", 1, batch, H, W, cin, cin, 3, p, stride=2))
                H, W = out_size(H, 3, 2), out_size(W, 3, 2)
                skips.append(cin)
        ops += _resnet_block("mid_resnet0", batch, H, W, cin, cin, 32, temb, p, x)
        ops += _transformer_2d("mid_attn", batch, H, W, cin, depth[-1], heads[-1], ctx_len, ctx_dim, p, x)
        ops += _resnet_block("mid_resnet1", batch, H, W, cin, cin, 32, temb, p, x)
        rev, rheads, rdepth = ch[::-1], heads[::-1], depth[::-1]
        for i, kind in enumerate(c["up_block_types"]):
            out = rev[i]
            for j in range(layers[::-1][i] + 1):
                ops += _resnet_block(f"up{i}_resnet{j}", batch, H, W, cin + skips.pop(), out, 32, temb, p, x)
                cin = out
                if kind.startswith("CrossAttn"):
                    ops += _transformer_2d(f"up{i}_attn{j}", batch, H, W, out, rdepth[i], rheads[i], ctx_len, ctx_dim,
                                           p, x)
            if i < n - 1:
                ops.append(upsample2x(f"up{i}_upsample", 1, batch, H, W, out, p))
                H, W = 2 * H, 2 * W
                ops.append(conv2d(f"up{i}_upsample_conv", 1, batch, H, W, out, out, 3, p))
        ops += [*norm_act("conv_norm_out", 1, batch * H * W * cin, cin, p, x=x),
                conv2d("conv_out", 1, batch, H, W, cin, c["out_channels"], c.get("conv_out_kernel", 3), p)]
        return ops


@dataclass(frozen=True)
class VAEDecoder:
    """The decoder of diffusers' AutoencoderKL, from its config.json: post-quant conv, conv_in, a mid block
    (resnet, single-head attention, resnet), up blocks of layers_per_block + 1 resnets with nearest 2x
    upsampling and a 3x3 conv between them, GN+SiLU, conv_out to RGB."""

    config: dict[str, Any]
    name: str = "vae_decoder"

    @property
    def scale(self) -> int:
        """Pixels per latent along a side: 2 per upsampling."""
        return 2 ** (len(self.config["block_out_channels"]) - 1)

    def ops(self, batch, H: int, W: int, x: Execution = FUSED) -> list[Op]:
        c, p = self.config, _P
        ch, latent = list(c["block_out_channels"])[::-1], c["latent_channels"]
        h, w = H // self.scale, W // self.scale
        ops = []
        if c.get("use_post_quant_conv", True):
            ops.append(conv2d("post_quant_conv", 1, batch, h, w, latent, latent, 1, p))
        ops.append(conv2d("vae_conv_in", 1, batch, h, w, latent, ch[0], 3, p))
        ops += _resnet_block("vae_mid_resnet0", batch, h, w, ch[0], ch[0], 32, 0, p, x)
        T = batch * h * w
        ops += [*norm_act("vae_mid_attn_norm", 1, T * ch[0], ch[0], p, act=False),
                *self_attention("vae_mid_attn", 1, batch, h * w, ch[0], 1, p, x=x),
                add("vae_mid_attn_residual", 1, T * ch[0], p)]
        ops += _resnet_block("vae_mid_resnet1", batch, h, w, ch[0], ch[0], 32, 0, p, x)
        cin = ch[0]
        for i, out in enumerate(ch):
            for j in range(c["layers_per_block"] + 1):
                ops += _resnet_block(f"vae_up{i}_resnet{j}", batch, h, w, cin, out, 32, 0, p, x)
                cin = out
            if i < len(ch) - 1:
                ops.append(upsample2x(f"vae_up{i}_upsample", 1, batch, h, w, out, p))
                h, w = 2 * h, 2 * w
                ops.append(conv2d(f"vae_up{i}_upsample_conv", 1, batch, h, w, out, out, 3, p))
        return ops + [*norm_act("vae_norm_out", 1, batch * h * w * cin, cin, p, x=x),
                      conv2d("vae_conv_out", 1, batch, h, w, cin, c["out_channels"], 3, p)]


@dataclass(frozen=True)
class MMDiT:
    """A multimodal diffusion transformer (Flux's FluxTransformer2DModel, from its config): image latents cut
    into patches and the text tokens run ``num_layers`` double-stream blocks (own weights per stream, one
    joint attention) and ``num_single_layers`` single-stream blocks (attention and MLP in parallel), each
    modulated (adaLN) by the timestep, guidance and pooled-text embedding."""

    config: dict[str, Any]
    name: str = "transformer"

    def ops(self, batch, h: int, w: int, txt: int, x: Execution = FUSED) -> list[Op]:
        c, p = self.config, _P
        heads, hd = c["num_attention_heads"], c["attention_head_dim"]
        d, mlp = heads * hd, 4 * heads * hd
        N = (h // c.get("patch_size", 1)) * (w // c.get("patch_size", 1)) // 4  # 2x2 latent patches (packed)
        L = N + txt
        nd, ns = c["num_layers"], c["num_single_layers"]
        ops = [linear("img_in", 1, batch * N, c["in_channels"], d, p),
               linear("txt_in", 1, batch * txt, c["joint_attention_dim"], d, p)]
        embeds = [("time", 256), ("guidance", 256)] if c.get("guidance_embeds") else [("time", 256)]
        for name, width in embeds + [("vector", c["pooled_projection_dim"])]:
            ops += [linear(f"{name}_in_1", 1, batch, width, d, p), linear(f"{name}_in_2", 1, batch, d, d, p)]
        streams = (("img", batch * N), ("txt", batch * txt))
        for stream, T in streams:  # adaLN modulation (shift, scale, gate for attention and MLP), norms, Q K V
            ops += [linear(f"double_{stream}_mod", nd, batch, d, 6 * d, p),
                    *norm_modulate(f"double_{stream}_norm_mod", nd, 2 * T * d, p, x=x),
                    linear(f"double_{stream}_qkv", nd, T, d, 3 * d, p),
                    norm(f"double_{stream}_qk_norm", nd, 2 * T * d, 2 * hd, p, rms=True)]
        ops += attention("double_attention", nd, batch, heads, L, L, hd, p, x=x)  # one attention over both streams
        for stream, T in streams:
            ops += [linear(f"double_{stream}_out", nd, T, d, d, p),
                    *feed_forward(f"double_{stream}_mlp", nd, T, d, mlp, p),
                    vector_op(f"double_{stream}_gated_residual", nd, 2 * T * d, 2, p, reads=3)]
        T = batch * L
        ops += [linear("single_mod", ns, batch, d, 3 * d, p), *norm_modulate("single_norm_mod", ns, T * d, p, x=x),
                linear("single_linear1", ns, T, d, 3 * d + mlp, p), norm("single_qk_norm", ns, 2 * T * d, 2 * hd, p, rms=True),
                *attention("single_attention", ns, batch, heads, L, L, hd, p, x=x),
                vector_op("single_mlp_act", ns, T * mlp, 8, p),
                linear("single_linear2", ns, T, d + mlp, d, p),
                vector_op("single_gated_residual", ns, T * d, 2, p, reads=3),
                linear("norm_out_mod", 1, batch, d, 2 * d, p), *norm_modulate("norm_out", 1, batch * N * d, p, x=x),
                linear("proj_out", 1, batch * N, d, c["in_channels"], p)]
        return ops


@dataclass(frozen=True)
class JointDiT:
    """Stable Diffusion 3's MMDiT (diffusers' SD3Transformer2DModel, from its config; Esser et al. 2024): the
    latent cut into 2x2 patches (a strided conv: one linear layer per patch) and the projected text tokens
    run ``num_layers`` joint blocks, each with its own weights per stream (adaLN-zero modulation, Q K V,
    output projection, a GELU MLP of 4 d) and one attention over both; the last block keeps only the image
    stream's output (``context_pre_only``). The timestep and the pooled text embed into the modulation."""

    config: dict[str, Any]
    name: str = "transformer"

    def ops(self, batch, h: int, w: int, txt: int, x: Execution = FUSED) -> list[Op]:
        c, p = self.config, _P
        heads, hd, P = c["num_attention_heads"], c["attention_head_dim"], c["patch_size"]
        d, n = heads * hd, c["num_layers"]
        N = (h // P) * (w // P)  # image tokens
        L, Ti, Tt = N + txt, batch * N, batch * txt
        ops = [linear("patch_embed", 1, Ti, c["in_channels"] * P * P, d, p), add("pos_embed_add", 1, Ti * d, p),
               vector_op("time_proj", 1, batch * 256, 4, p),
               linear("time_in_1", 1, batch, 256, d, p), linear("time_in_2", 1, batch, d, d, p),
               linear("pooled_in_1", 1, batch, c["pooled_projection_dim"], d, p), linear("pooled_in_2", 1, batch, d, d, p),
               linear("context_embedder", 1, Tt, c["joint_attention_dim"], c["caption_projection_dim"], p)]
        for stream, T, k in (("img", Ti, n), ("txt", Tt, n - 1)):  # the last block's text stream ends at its Q K V
            ops += [linear(f"joint_{stream}_mod", k, batch, d, 6 * d, p),
                    *norm_modulate(f"joint_{stream}_norm_mod", k, T * d, p, x=x),
                    linear(f"joint_{stream}_qkv", k, T, d, 3 * d, p)]
        ops += [linear("joint_txt_mod_last", 1, batch, d, 2 * d, p),
                *norm_modulate("joint_txt_norm_mod_last", 1, Tt * d, p, x=x), linear("joint_txt_qkv_last", 1, Tt, d, 3 * d, p),
                *attention("joint_attention", n, batch, heads, L, L, hd, p, x=x)]
        for stream, T, k in (("img", Ti, n), ("txt", Tt, n - 1)):
            ops += [linear(f"joint_{stream}_out", k, T, d, d, p),
                    vector_op(f"joint_{stream}_gated_residual", k, 2 * T * d, 2, p, reads=3),
                    *norm_modulate(f"joint_{stream}_norm2_mod", k, T * d, p, x=x),
                    *feed_forward(f"joint_{stream}_mlp", k, T, d, 4 * d, p)]
        return ops + [linear("norm_out_mod", 1, batch, d, 2 * d, p), *norm_modulate("norm_out", 1, Ti * d, p, x=x),
                      linear("proj_out", 1, Ti, d, P * P * c["out_channels"], p)]


# --- networks -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """What one request asks of a network: the image side, denoising steps and guidance, or the tokens."""

    resolution: tuple[int, int] | None = None
    """(height, width) in pixels."""
    steps: int = 1
    cfg: bool = False
    """Classifier-free guidance: the denoiser runs on the conditional and unconditional halves."""
    seq_len: int | None = None


@dataclass(frozen=True)
class Network:
    """A non-decoder model: its kind, components and default workload."""

    id: str
    kind: Kind
    components: dict[str, Any]
    defaults: dict[str, Any]
    source: str
    notes: str = ""
    text_tokens: dict[str, int] = field(default_factory=dict)
    architecture: str = ""
    """The class its manifest names (diffusers' pipeline, BertForQuestionAnswering, ResNet)."""

    def workload(self, *, resolution: str | tuple[int, int] | None = None, steps: int | None = None,
                 cfg: bool | None = None, seq_len: int | None = None) -> Workload:
        """The request's workload, each unset axis at the model's default; bad values name their flag."""
        if self.kind != "diffusion":
            for flag, value in (("--steps", steps), ("--cfg" if cfg else "--no-cfg", cfg)):
                if value is not None:
                    raise InfercastError(f"{flag} applies to diffusion pipelines; {self.id} is {_article(self.kind)}")
        if self.kind == "encoder" and resolution is not None:
            raise InfercastError(f"--resolution applies to images; {self.id} is an encoder: give --seq-len")
        if self.kind != "encoder" and seq_len is not None:
            raise InfercastError(f"--seq-len applies to encoders; {self.id} is {_article(self.kind)}: give "
                                 f"--resolution")
        if self.kind == "encoder":
            S = _whole("--seq-len", seq_len if seq_len is not None else self.defaults["seq_len"])
            limit = self.components["encoder"].positions
            if S > limit:
                raise InfercastError(f"--seq-len {S} exceeds {self.id}'s {limit} position embeddings")
            return Workload(seq_len=S)
        res = parse_resolution(resolution if resolution is not None else self.defaults["resolution"])
        if self.kind == "cnn":
            return Workload(resolution=res)
        multiple = 16 * (2 if "transformer" in self.components else 1) if self.kind == "diffusion" else 1
        if res[0] % multiple or res[1] % multiple:
            raise InfercastError(f"--resolution {res[0]}x{res[1]}: {self.id} needs sides that are multiples of "
                                 f"{multiple} pixels (the latent's downsampling{' and patches' if multiple > 16 else ''})")
        return Workload(resolution=res, steps=_whole("--steps", steps if steps is not None else self.defaults["steps"]),
                        cfg=self.defaults.get("cfg", False) if cfg is None else bool(cfg))

    def passes(self, batch, wl: Workload, p: Precision, x: Execution = FUSED) -> list[Pass]:
        """The passes of ``batch`` requests, in order, with their operators at precision ``p`` as ``x`` runs them."""
        c = self.components
        if self.kind == "encoder":
            return [("encoder", with_precision(c["encoder"].ops(batch, wl.seq_len, x), p), 1.0)]
        H, W = wl.resolution
        if self.kind == "cnn":
            return [("forward", with_precision(c["cnn"].ops(batch, H, W), p), 1.0)]
        guided = 2 if wl.cfg else 1
        out = []
        for name in TEXT_ENCODERS:
            if name in c:  # the negative prompt is encoded too under guidance
                out.append((name, with_precision(c[name].ops(guided * batch, x=x), p), 1.0))
        vae = c["vae"]
        h, w = H // vae.scale, W // vae.scale
        if "unet" in c:
            ctx = c["text_encoder"].tokens
            den = c["unet"].ops(guided * batch, h, w, ctx, x)
        else:
            den = c["transformer"].ops(guided * batch, h, w, self.text_tokens["transformer"], x)
        out.append(("denoiser", with_precision(den, p), float(wl.steps)))
        out.append(("vae_decoder", with_precision(vae.ops(batch, H, W, x), p), 1.0))
        return out

    def params(self) -> dict[str, int]:
        """Parameters of each component, counted from its operators' weights (plus embedding tables)."""
        wl = self.workload()
        out = {}
        for name, ops, _ in self.passes(1, wl, INT8):
            comp = self.components.get(name, self.components.get("unet", self.components.get("transformer")))
            tables = comp.table_params() if isinstance(comp, TextEncoder) else 0
            out[name] = int(round(sum(op.count * float(op.weight_bytes) for op in ops))) + tables
        return out

    @property
    def denoiser(self) -> str:
        return "unet" if "unet" in self.components else "transformer"


def with_precision(ops: list[Op], p: Precision) -> list[Op]:
    """Operators built at the placeholder precision, rebuilt at ``p``: each byte count is rescaled by the
    element size of its tensor class and the GEMMs run in ``p``'s math format. Linear layers' FLOPs and
    weight bytes follow ``p``'s sparse math density and weight storage."""
    a, w = p.act_bytes / _P.act_bytes, p.layer_weight_bytes / _P.layer_weight_bytes
    out = []
    for op in ops:
        matrix = op.kind in ("gemm", "attention")
        weight_elems_bytes = op.weight_bytes * (w if op.kind == "gemm" else a)
        flops = op.flops * (p.layer_math_density if op.kind == "gemm" else 1.0)
        out.append(replace(op, flops=flops, weight_bytes=weight_elems_bytes, act_bytes=op.act_bytes * a,
                           write_bytes=op.write_bytes * a, math=p.gemm_math if matrix else op.math))
    return out


def _article(kind: str) -> str:
    return {"encoder": "an encoder", "cnn": "a CNN", "diffusion": "a diffusion pipeline"}[kind]


def _whole(flag: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value > 100_000:
        raise InfercastError(f"{flag} must be a whole number from 1 to 100,000, got {value!r}")
    return value


def parse_resolution(value: str | tuple[int, int]) -> tuple[int, int]:
    """'1024x1024' (or '1024') as (height, width) in pixels; a bad one is one line naming --resolution."""
    if isinstance(value, tuple):
        return value
    text = str(value).strip().lower()
    parts = text.split("x") if "x" in text else [text, text]
    if len(parts) != 2 or not all(x.strip().isdecimal() for x in parts):
        raise InfercastError(f"--resolution {value!r}: expected HEIGHTxWIDTH in pixels, e.g. 1024x1024")
    h, w = (int(x) for x in parts)
    if not (8 <= h <= 16384 and 8 <= w <= 16384):
        raise InfercastError(f"--resolution {value!r}: each side must be from 8 to 16,384 pixels")
    return h, w


# --- presets ----------------------------------------------------------------------------------------------


@cache
def network_ids() -> list[str]:
    """Ids of the non-decoder presets (folders with a model_index.json)."""
    return sorted(p.name for p in _PRESETS.iterdir() if (p / "model_index.json").is_file())


def _read(model_id: str, *parts: str) -> dict[str, Any]:
    node = _PRESETS / model_id
    for part in parts:
        node = node / part
    return json.loads(node.read_text(encoding="utf-8"))


def _text_encoder(name: str, cfg: dict[str, Any]) -> TextEncoder:
    """A CLIP text model (transformers' CLIPTextConfig) or a T5 encoder (T5Config) as a ``TextEncoder``."""
    if cfg.get("model_type") == "t5":
        return TextEncoder(name, cfg["d_model"], cfg["num_layers"], cfg["num_heads"], cfg["d_ff"], cfg["vocab_size"],
                           cfg["_infercast_tokens"], 0, ff="gated-gelu", rms=True, bias=False,
                           extra_params=cfg["relative_attention_num_buckets"] * cfg["num_heads"])
    return TextEncoder(name, cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"],
                       cfg["intermediate_size"], cfg["vocab_size"], cfg["max_position_embeddings"],
                       cfg["max_position_embeddings"], causal=True, projection=cfg.get("projection_dim", 0)
                       if cfg.get("architectures", [""])[0].endswith("WithProjection") else 0)


@cache
def load_network(model_id: str) -> Network:
    """A non-decoder preset by exact id."""
    if not is_network_preset(model_id):
        raise UnknownName(f"unknown model '{model_id}'{did_you_mean(model_id, network_ids())}")
    index = _read(model_id, "model_index.json")
    meta = index["_infercast"]
    kind, comps, tokens = meta["kind"], {}, {}
    if kind == "encoder":
        cfg = _read(model_id, "encoder", "config.json")
        comps["encoder"] = TextEncoder("bert", cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"],
                                       cfg["intermediate_size"], cfg["vocab_size"], meta["defaults"]["seq_len"],
                                       cfg["max_position_embeddings"], extra_params=cfg["type_vocab_size"] * cfg["hidden_size"],
                                       head=2)
    elif kind == "cnn":
        cfg = _read(model_id, "cnn", "config.json")
        comps["cnn"] = ResNet(model_id, tuple(cfg["layers"]), cfg["width"], cfg["num_classes"])
    else:
        for name in TEXT_ENCODERS:
            if name in index:
                comps[name] = _text_encoder(name, _read(model_id, name, "config.json"))
        comps["vae"] = VAEDecoder(_read(model_id, "vae", "config.json"))
        if "unet" in index:
            comps["unet"] = UNet(_read(model_id, "unet", "config.json"))
        else:
            cfg = _read(model_id, "transformer", "config.json")
            if cfg["_class_name"] == "SD3Transformer2DModel":  # CLIP's 77 tokens beside T5's, joined
                comps["transformer"] = JointDiT(cfg)
                tokens["transformer"] = comps["text_encoder"].tokens + comps["text_encoder_3"].tokens
            else:
                comps["transformer"] = MMDiT(cfg)
                tokens["transformer"] = comps["text_encoder_2"].tokens
    return Network(model_id, kind, comps, meta["defaults"], meta["source"], meta.get("notes", ""), tokens,
                   index.get("_class_name", ""))


def flops_per_sample(net: Network, wl: Workload | None = None) -> dict[str, float]:
    """FLOPs of one request (an image or a sample) by pass, each pass times its executions."""
    wl = wl or net.workload()
    return {name: reps * sum(op.count * float(op.flops) for op in ops) for name, ops, reps in net.passes(1, wl, _P)}

