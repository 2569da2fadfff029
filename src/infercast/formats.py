"""Number formats: bytes per element and which units the math runs on."""

from __future__ import annotations

from infercast.errors import InfercastError

# Bytes per element of plain formats. tf32 is stored as fp32 (only the math is reduced);
# fp6 and fp4 are packed (6 and 4 bits); block scales of micro-scaled formats come in
# the quantization schemes, not here.
BYTES_PER_ELEMENT: dict[str, float] = {
    "fp32": 4.0,
    "tf32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "fp6": 0.75,
    "int4": 0.5,
    "fp4": 0.5,
}


def element_bytes(dtype: str, field: str = "dtype") -> float:
    """Bytes per element of ``dtype``; a clear error naming ``field`` for an unknown one."""
    try:
        return BYTES_PER_ELEMENT[dtype]
    except KeyError:
        known = ", ".join(BYTES_PER_ELEMENT)
        raise InfercastError(f"{field}: unknown format '{dtype}'; use one of {known}") from None


def math_dtype(*dtypes: str) -> str:
    """The format the math runs in when operands come in ``dtypes``: the widest of them.

    Weight-only quantisation (W4A16) dequantises and computes at the activation format's
    rate; W8A8 and FP8 x FP8 use the 8-bit units.
    """
    return max(dtypes, key=lambda d: (BYTES_PER_ELEMENT[d], d in ("bf16", "fp16", "fp32")))
