"""Sparsity: what a workload declares, what a chip accelerates, and what that changes.

A workload declares weight sparsity (a fraction of zero weights in the decoder layers' linear
layers, either in an N:M pattern or unstructured) and activation sparsity (a fraction of zero
inputs to those layers, e.g. after ReLU). A chip declares what its matrix units accelerate
(``hardware.SparsitySupport``). The effect on a linear layer is two numbers:

* ``math_density``: the share of the dense math the units still execute. Weight sparsity the
  chip accelerates keeps ``1 - s_w`` of it, activation sparsity it accelerates ``1 - s_a``
  (both: their product, "dual sparsity"), never below ``1 / max_speedup``. Sparsity the chip
  does not accelerate keeps all of it: a dense kernel multiplies the zeros.
* ``weight_bits``: storage bits per (dense) weight. Sparse weights save bytes only when they
  are stored compressed, and only net of the index that says where the non-zeros are:

  - N:M, compressed as NVIDIA's sparse tensor cores read it: N of every M values plus
    N x ceil(log2 M) bits of position metadata per group (2:4: 2 bits per kept value, so fp16
    2:4 weights are 2 x 16 + 4 = 36 bits per 4 weights, 0.5625 of dense; NVIDIA Ampere
    whitepaper, "Fine-Grained Structured Sparsity"). Off by default: the issue is whether the
    engine ships the compressed form (cuSPARSELt does; a dense checkpoint with zeros does not).
  - unstructured: the non-zeros plus the cheaper of a bitmap (1 bit per weight) and a 16-bit
    position per non-zero; on by default where the chip reads compressed weights.

  An engine stores weights compressed only where that is smaller than dense (at low sparsity
  the index costs more than the zeros it drops), so more sparsity never costs bytes.

Embeddings, the LM head, the MoE router and attention (scores over the KV cache) stay dense:
pruning methods such as SparseGPT and Wanda prune the decoder's linear layers only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from infercast.errors import InfercastError, pydantic_error_line
from infercast.hardware import Chip, parse_pattern

INDEX_BITS = 16
"""Bits of one non-zero's position in the index form of unstructured storage (a 16-bit column index,
as in CSR with blocks of up to 65,536 columns)."""


class Sparsity(BaseModel):
    """The sparsity a workload declares for the decoder layers' linear layers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weight: float = Field(default=0.0, ge=0, lt=1)
    """Fraction of the linear layers' weights that are zero (--weight-sparsity)."""
    pattern: str = "unstructured"
    """'unstructured' or N:M (N non-zeros in every M consecutive weights), e.g. '2:4' (--sparsity-pattern)."""
    activation: float = Field(default=0.0, ge=0, lt=1)
    """Fraction of the linear layers' input activations that are zero (--activation-sparsity)."""
    storage: Literal["dense", "compressed"] | None = None
    """How sparse weights are stored: None picks compressed for unstructured, dense for N:M (--sparse-storage)."""

    @model_validator(mode="after")
    def _pattern_matches(self) -> Sparsity:
        if self.pattern != "unstructured":
            n, m = parse_pattern(self.pattern)
            if self.weight == 0.0:
                object.__setattr__(self, "weight", 1 - n / m)
            elif not math.isclose(self.weight, 1 - n / m, abs_tol=1e-9):
                raise ValueError(f"pattern {self.pattern} keeps {n} of {m} weights, so --weight-sparsity must be "
                                 f"{1 - n / m:g} (got {self.weight:g}); drop one of the two flags")
        return self

    @property
    def is_dense(self) -> bool:
        return self.weight == 0.0 and self.activation == 0.0


DENSE = Sparsity()


@dataclass(frozen=True)
class SparsityEffect:
    """What the declared sparsity does on one chip."""

    math_density: float
    """Share of the linear layers' dense math the matrix units execute (1: no speed-up)."""
    weight_bits: float
    """Storage bits per dense weight of the linear layers."""
    storage: str
    """'dense' or 'compressed'."""
    weight_accelerated: bool
    activation_accelerated: bool
    reason: str
    """One line saying what is and is not accelerated, and why."""

    @property
    def math_speedup(self) -> float:
        return 1 / self.math_density

    def to_dict(self, sparsity: Sparsity, dense_bits: float) -> dict:
        return {"weight_sparsity": sparsity.weight, "pattern": sparsity.pattern,
                "activation_sparsity": sparsity.activation, "weight_accelerated": self.weight_accelerated,
                "activation_accelerated": self.activation_accelerated, "math_speedup": self.math_speedup,
                "storage": self.storage, "weight_bytes_ratio": self.weight_bits / dense_bits, "reason": self.reason}


def compressed_bits(sparsity: Sparsity, dense_bits: float) -> float:
    """Bits per dense weight of the compressed form (values plus position index)."""
    keep = 1 - sparsity.weight
    if sparsity.pattern == "unstructured":
        return keep * dense_bits + min(1.0, keep * INDEX_BITS)
    n, m = parse_pattern(sparsity.pattern)
    return (n * dense_bits + n * math.ceil(math.log2(m))) / m


def effect_on(chip: Chip, sparsity: Sparsity, dense_bits: float) -> SparsityEffect:
    """The math density and storage of ``sparsity`` on ``chip``, whose weights take ``dense_bits`` each."""
    support = chip.sparsity
    if sparsity.is_dense:
        return SparsityEffect(1.0, dense_bits, "dense", False, False, "dense")
    notes = []
    weight_ok = False
    if sparsity.weight > 0:
        if support is None:
            notes.append(f"{chip.id} accelerates no weight sparsity: the zeros are multiplied")
        elif sparsity.pattern == "unstructured":
            weight_ok = support.unstructured
            if not weight_ok:
                patterns = ", ".join(support.structured) or "none"
                notes.append(f"{chip.id} accelerates only {patterns} weight sparsity, not unstructured")
        else:
            # an N:M pattern is also unstructured sparsity, for units that take any placement
            weight_ok = sparsity.pattern in support.structured or support.unstructured
            if not weight_ok:
                notes.append(f"{chip.id} does not accelerate the {sparsity.pattern} pattern")
    act_ok = sparsity.activation > 0 and support is not None and support.activation
    if sparsity.activation > 0 and not act_ok:
        notes.append(f"{chip.id} does not skip zero activations")
    density = (1 - sparsity.weight if weight_ok else 1.0) * (1 - sparsity.activation if act_ok else 1.0)
    cap = support.max_speedup if support is not None else 1.0
    if density < 1 / cap:
        notes.append(f"speed-up capped at the chip's {cap:g}x")
        density = 1 / cap
    storage, bits = "dense", dense_bits
    if weight_ok:
        wanted = sparsity.storage or ("compressed" if sparsity.pattern == "unstructured" and
                                      support.compressed_weights else "dense")
        packed = compressed_bits(sparsity, dense_bits)
        if wanted == "compressed" and packed < dense_bits:
            storage, bits = "compressed", packed
        elif wanted == "compressed":
            notes.append("compressed storage would be larger than dense at this sparsity: kept dense")
        else:
            notes.append("weights stored dense (zeros included): no bytes saved; --sparse-storage compressed "
                         "stores the non-zeros and their index")
    head = f"{1 / density:.3g}x on the linear layers' math"
    return SparsityEffect(density, bits, storage, weight_ok, act_ok, "; ".join([head, *notes]))


def make_sparsity(weight: float | None = None, pattern: str | None = None, activation: float | None = None,
                  storage: str | None = None) -> Sparsity:
    """A validated ``Sparsity`` from the CLI/API keywords; one line naming the flag on bad input."""
    fields = {k: v for k, v in dict(weight=weight, pattern=pattern, activation=activation, storage=storage).items()
              if v is not None}
    if not fields:
        return _DENSE
    flags = {"weight": "--weight-sparsity", "pattern": "--sparsity-pattern", "activation": "--activation-sparsity",
             "storage": "--sparse-storage"}
    try:
        return Sparsity(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "pattern"  # the model-level check is the pattern's
        msg = pydantic_error_line(exc).split(": ", 1)[-1].removeprefix("Value error, ")
        if err["type"] in ("greater_than_equal", "less_than"):
            msg = "must be a fraction from 0 up to (not including) 1, e.g. 0.5"
        raise InfercastError(f"{flags.get(field, 'sparsity')}: {msg}") from None


_DENSE = Sparsity()
"""No sparsity (every scenario without the flags shares it: a ``Sparsity`` is frozen)."""
