"""What placing tensors on a memory tier costs a decoder: memory on the chip, and time to move them.

With ``--offload weights=T:f,kv=T2:g`` (``infercast.tiers``) one chip holds (1 - f) of its weights and
(1 - g) of its KV cache; the rest lives on the tiers. Every pass reads every weight, so each forward pass
(the prefill, and each of the osl - 1 decode steps) pulls f x weights over the tier's link; each decode
step at KV length L also reads g x the batch's cache of L tokens and writes the new token's share. As
FlexGen (Sheng et al., ICML 2023, sec. 4) schedules it, the next layer's transfers run while this layer
computes, so a phase takes

    combine(compute, transfer) = max(c, x) + (1 - overlap) x min(c, x)

(overlap 1: fully hidden, FlexGen's and ZeRO-Inference's prefetch; 0: in series, Accelerate's hooks),
per phase rather than per layer (the same where every layer is alike). The energy of the longer run
adds the chips' idle power over the extra time and the link's energy per bit (``energy.link_j_per_bit``
of the host tier, ``EnergyOptions.pcie_j_per_bit``) over the bytes moved.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from infercast.memory import kept_tokens
from infercast.scenario import Scenario


def combine(compute_s, transfer_s, overlap: float):
    """Time of work and a transfer that overlap by ``overlap`` (1: the longer of the two; 0: their sum)."""
    return np.maximum(compute_s, transfer_s) + (1 - overlap) * np.minimum(compute_s, transfer_s)


def offloaded(sc: Scenario, cols: dict[str, Any]) -> dict[str, Any]:
    """The columns of ``evaluation.evaluate`` (one configuration) with the offload's memory and time applied,
    and its own ``offload.*`` columns."""
    off, chip, opts = sc.offload, sc.chip, sc.memory
    batch, isl, osl = (float(cols[f"workload.{k}"]) for k in ("batch", "isl", "osl"))
    f_w, f_kv, f_act = off.fraction("weights"), off.fraction("kv"), off.fraction("act")
    w, kv, act = (float(cols[f"memory.{k}"]) for k in ("weights_bytes", "kv_cache_bytes", "activation_bytes"))
    pre_x = off.transfer_s(chip, "weights", w)  # every pass brings the offloaded weights over
    steps = max(osl - 1.0, 0.0)
    replica_batch = float(np.ceil(batch / sc.plan.dp))
    seq_kv = kv / replica_batch  # one sequence's cache on this chip at its last step
    kv_token = seq_kv / float(kept_tokens(sc.spec, isl, osl, opts.block_size))
    kv_read = replica_batch * kv_token * (steps * isl + steps * (steps + 1) / 2)  # the sum over steps of L
    dec_x = steps * pre_x + off.transfer_s(chip, "kv", kv_read)
    ttft = float(combine(cols["ttft_s"], pre_x, off.overlap))
    dec = float(combine(cols["decode.latency_s"], dec_x, off.overlap)) if steps else 0.0
    out = copy.copy(cols)  # the engine's Columns, with their operator rows
    e2e = ttft + dec
    extra_s = e2e - cols["e2e_latency_s"]
    out.update({"ttft_s": ttft, "prefill.latency_s": ttft, "decode.latency_s": dec, "e2e_latency_s": e2e,
                "throughput_tokens_per_s": batch * osl / e2e})
    if steps:
        out.update({"decode.tpot_s": dec / steps, "decode.tokens_per_s": batch * steps / dec})
    device = {"weights_bytes": (1 - f_w) * w, "kv_cache_bytes": (1 - f_kv) * kv, "activation_bytes": (1 - f_act) * act}
    total = cols["memory.total_per_chip_bytes"] - (w + kv + act) + sum(device.values())
    usable = cols["memory.usable_per_chip_bytes"]
    sizes = {"weights": w, "kv": kv, "act": act}
    on_tier = off.tier_bytes(sizes)
    fits = bool(total <= usable) and off.fits(chip, sizes)
    room = usable - (total - device["kv_cache_bytes"])
    on_chip_seqs = room / ((1 - f_kv) * seq_kv) if f_kv < 1 and seq_kv else float("inf")
    tier_seqs = float("inf")
    for name, f in off.place.get("kv", ()):  # each tier holds its share of every sequence, beside its other tensors
        other = off.tier_bytes({**sizes, "kv": 0.0}).get(name, 0.0)
        tier_seqs = min(tier_seqs, (off.tier(chip, name).capacity_bytes - other) / (f * seq_kv))
    max_batch = sc.plan.dp * max(0.0, np.floor(min(on_chip_seqs, tier_seqs)))
    out.update({f"memory.{k}": v for k, v in device.items()})
    out.update({"memory.total_per_chip_bytes": total, "memory.fits": fits,
                "memory.max_batch": float(max_batch) if np.isfinite(max_batch) else cols["memory.max_batch"],
                "memory.min_chips": 1.0 if fits else cols["memory.min_chips"],
                "memory.binding": "kv_cache" if fits else cols["memory.binding"]})
    out.update({"offload.placement": off.describe(), "offload.overlap": off.overlap,
                "offload.tier_bytes": on_tier, "offload.prefill_transfer_s": pre_x, "offload.decode_transfer_s": dec_x,
                "offload.tier_bytes_per_s": {n: off.tier(chip, n).bandwidth_bytes_per_s for n in on_tier}})
    if "energy.total_j" in cols:
        n = sc.plan.num_chips
        moved = f_w * w * (1 + steps) + f_kv * kv_read
        link = sc.energy.pcie_j_per_bit * 8 * moved * n
        energy = cols["energy.total_j"] + n * cols["energy.idle_w"] * extra_s + link
        tokens = batch * osl
        out.update({"energy.total_j": energy, "energy.joules_per_token": energy / tokens,
                    "energy.tokens_per_joule": tokens / energy,
                    "energy.average_power_w": min(energy / (n * e2e), cols["energy.tdp_w"]),
                    "energy.split.static_j": cols["energy.split.static_j"] + n * cols["energy.idle_w"] * extra_s,
                    "energy.split.interconnect_j": cols["energy.split.interconnect_j"] + link})
    if "cost.usd_per_hour" in cols:
        out.update({"cost.usd_per_million_tokens": cols["cost.usd_per_hour"] / 3600 / out["throughput_tokens_per_s"] * 1e6,
                    "cost.usd_per_query": cols["cost.usd_per_hour"] / 3600 * e2e / batch})
    return out
