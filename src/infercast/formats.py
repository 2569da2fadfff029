"""Number formats and quantization schemes: bits per element (scales and zero points included)
and which units the math runs on.

A plain format (fp16, fp8, ...) stores each element in its own width. A quantization scheme
stores weights in blocks with scales (and zero points), so its bits per weight exceed the
element width; weight-only schemes dequantise on the fly and compute at the activation
format's rate, while W4A4/W8A8 schemes use the narrow units where the chip has them.
"""

from __future__ import annotations

from dataclasses import dataclass

from infercast.errors import InfercastError, did_you_mean, shown


@dataclass(frozen=True)
class Format:
    name: str
    bits: float
    """Storage bits per element, block scales and zero points included."""
    math: str | None
    """Plain format whose units do the math; None: the activation format's (weight-only schemes)."""
    dequant_ops: float
    """Operations per weight element to dequantise it once (scale multiply, zero-point subtract)."""
    source: str


_PLAIN = {
    "fp32": (32, "IEEE 754 binary32"),
    "tf32": (32, "stored as fp32; only the tensor-core math drops to a 10-bit mantissa"),
    "bf16": (16, "bfloat16"),
    "fp16": (16, "IEEE 754 binary16"),
    "fp8": (8, "OCP FP8 (E4M3 for weights and activations, per-tensor scale)"),
    "fp8_e4m3": (8, "OCP FP8 E4M3"),
    "fp8_e5m2": (8, "OCP FP8 E5M2"),
    "int8": (8, "8-bit integer, per-channel scales amortised to nothing"),
    "fp6": (6, "OCP MX FP6 element width (E3M2 / E2M3)"),
    "int4": (4, "4-bit integer, packed two per byte"),
    "fp4": (4, "E2M1, packed two per byte"),
}

FORMATS: dict[str, Format] = {
    name: Format(name, bits, "fp8" if name.startswith("fp8") else name, 0.0, src)
    for name, (bits, src) in _PLAIN.items()
}
FORMATS.update({
    # llama.cpp / ggml block formats (ggml-common.h): block_q4_0 = fp16 scale + 32 x 4-bit = 18 bytes / 32.
    "q4_0": Format("q4_0", 18 * 8 / 32, None, 2.0, "ggml block_q4_0: 18 bytes per 32 weights = 4.5 bits"),
    # block_q8_0 = fp16 scale + 32 x int8 = 34 bytes / 32
    "q8_0": Format("q8_0", 34 * 8 / 32, None, 1.0, "ggml block_q8_0: 34 bytes per 32 weights = 8.5 bits"),
    # block_q4_K: 256 weights in 8 sub-blocks: fp16 d and dmin, 12 bytes of 6-bit scales/mins, 128 bytes of
    # nibbles = 144 bytes / 256 = 4.5 bits; block_q6_K: 128 + 64 + 16 bytes + fp16 d = 210 bytes / 256
    "q4_k": Format("q4_k", 144 * 8 / 256, None, 3.0, "ggml block_q4_K: 144 bytes per 256 weights = 4.5 bits"),
    "q6_k": Format("q6_k", 210 * 8 / 256, None, 3.0, "ggml block_q6_K: 210 bytes per 256 weights = 6.5625 bits"),
    # Q4_K_M mixes the two per tensor (see weight_bits); its nominal figure is the q4_K one.
    "q4_k_m": Format("q4_k_m", 144 * 8 / 256, None, 3.0, "llama.cpp Q4_K_M: q4_K, with q6_K for half of the "
                     "attn_v and ffn_down tensors and for the output matrix (src/llama-quant.cpp)"),
    # GPTQ / AWQ 4-bit, group size 128: per group and output column an fp16 scale and a packed 4-bit zero
    # point (AutoGPTQ / AutoAWQ checkpoint layout: qweight int32-packed, scales fp16, qzeros int32-packed).
    "gptq4": Format("gptq4", 4 + (16 + 4) / 128, None, 2.0, "GPTQ 4-bit, group 128: 4 + 20/128 bits"),
    "awq": Format("awq", 4 + (16 + 4) / 128, None, 2.0, "AWQ 4-bit, group 128: 4 + 20/128 bits"),
    # OCP Microscaling v1.0: 32 E2M1 elements share one E8M0 scale: 4 + 8/32 bits.
    "mxfp4": Format("mxfp4", 4 + 8 / 32, "fp4", 0.0, "OCP MX v1.0 MXFP4: 4 + 8/32 = 4.25 bits"),
    # NVIDIA NVFP4: 16 E2M1 elements share an FP8 E4M3 scale (plus one fp32 per tensor): 4 + 8/16 bits.
    "nvfp4": Format("nvfp4", 4 + 8 / 16, "fp4", 0.0, "NVIDIA NVFP4 (Blackwell): 4 + 8/16 = 4.5 bits"),
    "mxfp6": Format("mxfp6", 6 + 8 / 32, "fp6", 0.0, "OCP MX v1.0 MXFP6: 6 + 8/32 = 6.25 bits"),
})

# Named schemes for --quantization: (weight format, activation format or None to keep --act-dtype)
SCHEMES: dict[str, tuple[str, str | None]] = {
    "q4_0": ("q4_0", None), "q8_0": ("q8_0", None), "q4_k_m": ("q4_k_m", None),
    "gptq": ("gptq4", None), "gptq4": ("gptq4", None), "awq": ("awq", None),
    "fp8": ("fp8", "fp8"), "w8a8": ("int8", "int8"), "int8": ("int8", "int8"),
    "mxfp4": ("mxfp4", "mxfp4"), "nvfp4": ("nvfp4", "nvfp4"), "mxfp6": ("mxfp6", "mxfp6"),
    "w4a16": ("int4", None),
}


# Hugging Face's torch_dtype names (config.json, from_pretrained) for the plain formats they match
ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}


def get_format(name: str, field: str = "--dtype") -> Format:
    """The format called ``name`` (any case; HF's float16, bfloat16 and float32 too), or one line
    naming ``field`` (the caller's flag or column) with the known names."""
    key = name.strip().lower() if isinstance(name, str) else name
    key = ALIASES.get(key, key)
    if isinstance(key, str) and key in FORMATS:
        return FORMATS[key]
    raise InfercastError(f"{field}: unknown format {shown(name)}{did_you_mean(str(key), FORMATS)}; "
                         f"use one of {', '.join(FORMATS)} (or float32, float16, bfloat16)")


def canonical(name: str, field: str = "--dtype") -> str:
    """The format's own name: 'BF16' and 'bfloat16' are 'bf16'."""
    return get_format(name, field).name


def element_bytes(name: str, field: str = "--dtype") -> float:
    """Bytes per element of a format, scales included; a clear error naming ``field`` for an unknown one."""
    return get_format(name, field).bits / 8


def plain_math(name: str) -> str:
    """The plain format a format's numbers are computed in when it is itself an operand."""
    fmt = get_format(name)
    return fmt.math or "fp16"


def math_dtype(weight: str, act: str) -> str:
    """The format a GEMM's math runs in.

    Weight-only schemes (q4_0, GPTQ, AWQ, W4A16) dequantise and compute at the activation's rate.
    Otherwise the math runs at the wider of the two operands' units: W8A8 and FP8 x FP8 use the
    8-bit units, NVFP4 x NVFP4 the 4-bit ones.
    """
    w = get_format(weight)
    if w.math is None:
        return plain_math(act)
    wa, aa = get_format(w.math), get_format(plain_math(act))
    return max((wa, aa), key=lambda f: (f.bits, f.name in ("bf16", "fp16", "fp32"))).name


# llama.cpp stores the output matrix at q6_K for every k-quant and legacy 4/5-bit type, q8_0 files at q8_0
# (src/llama-quant.cpp, llama_tensor_get_type: "output.weight" -> GGML_TYPE_Q6_K unless already Q8_0).
_GGUF_HEAD = {"q4_0": "q6_k", "q4_k_m": "q6_k", "q8_0": "q8_0"}


def weight_bits(fmt: str, *, layer_params: float, more_bits_params: float) -> dict[str, float]:
    """Bits per weight of the decoder layers, the LM head and the embedding table.

    Q4_K_M gives q6_K to half of the layers' attn_v and ffn_down tensors (llama.cpp's
    use_more_bits: the first and last eighth of the layers and every third one between, half in
    all) and q4_K to the rest; ``more_bits_params`` is the count of those attn_v + ffn_down
    weights over all layers, ``layer_params`` of all layer weights.
    """
    fmt = canonical(fmt)
    base = get_format(fmt).bits
    layers = base
    if fmt == "q4_k_m" and layer_params:
        extra = 0.5 * more_bits_params
        layers = (FORMATS["q6_k"].bits * extra + base * (layer_params - extra)) / layer_params
    head = FORMATS[_GGUF_HEAD[fmt]].bits if fmt in _GGUF_HEAD else base
    return {"layers": layers, "head": head, "embedding": base}
