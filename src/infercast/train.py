"""``train(model, hardware, ...)``: one training run, its step time, memory, MFU, energy and cost, and the run.

The step and its memory come from ``infercast.training``; this module composes them with the energy and
cost models into the document ``infercast train --output json`` prints (DESIGN.md: it mirrors
``estimate``'s, with ``memory{weights_bytes, gradients_bytes, optimizer_bytes, activation_bytes, ...}``,
``step_time_s``, ``tokens_per_s`` and ``mfu``), and searches plans for the fastest one that fits
(``--auto``).

Energy of a step: the dynamic energy of every chip's operators and collectives (``infercast.energy``)
plus every chip's idle power over the step; a run of ``tokens`` tokens takes tokens / (global batch x
seq_len) steps, and its facility energy is the chips' energy times the PUE. Cost: chip-hours at a cloud
price, or owned chips' capital, electricity and hosting per hour (``infercast.cost``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from infercast.cost import capex_per_chip_usd, owned_chip_hour
from infercast.errors import InfercastError
from infercast.training import (
    ADAM_FLOPS,
    TrainScenario,
    largest_micro_batch_and_seq,
    model_flops_per_token,
    resolve_training,
    step_time,
    train_memory,
)

SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class TrainResult:
    ts: TrainScenario
    doc: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.doc

    def __getattr__(self, name: str) -> Any:
        doc = self.__dict__.get("doc") or {}
        if name in doc:
            return doc[name]
        raise AttributeError(name)


def train(model, hardware=None, *, tokens: float | None = None, **kw: Any) -> TrainResult:
    """One training run: ``training.resolve_training``'s keywords (seq_len, global_batch, micro_batch, tp, pp,
    cp, dp, ep, zero_stage, recompute, dtype, framework, ..., and ``scenario.resolve``'s deployment ones),
    and ``tokens``, the tokens of a whole run (its days, chip-hours, energy and cost)."""
    if tokens is not None and not (isinstance(tokens, (int, float)) and math.isfinite(tokens) and tokens > 0):
        raise InfercastError(f"--tokens must be a positive number of training tokens, got {tokens!r}")
    ts = resolve_training(model, hardware, **kw)
    return TrainResult(ts, document(ts, tokens))


def document(ts: TrainScenario, tokens: float | None = None) -> dict[str, Any]:
    sc, cfg = ts.sc, ts.cfg
    spec, plan = sc.spec, sc.plan
    st = step_time(ts)
    mem = train_memory(ts)
    max_mb, max_seq = largest_micro_batch_and_seq(ts)
    step = float(st.step_s)
    chips = plan.num_chips
    tps = cfg.tokens_per_step / step
    math_ = "fp8" if cfg.dtype == "fp8" else ("fp16" if cfg.dtype == "fp16" else ("fp32" if cfg.dtype == "fp32"
                                                                                  else "bf16"))
    peak = float(sc.rates.peak(math_, sc.chip.id))
    flops_token = float(model_flops_per_token(spec, cfg.seq_len, cfg.convention))
    mfu = flops_token * tps / (chips * peak)
    # the slowest stage sets the pace: its parts, over a step
    slow_g, slow = max(st.stages, key=lambda gc: float(gc[1].micro_batch_s))
    m = cfg.micro_batches
    executed = sum(g.count * c.flops * m + g.count * c.optimizer_flops for g, c in st.stages) * (
        plan.tp * cfg.cp * cfg.dp)
    hfu = executed / (step * chips * peak)
    bubble_s = float(st.pipeline_s - m * slow.micro_batch_s)
    parts = {"forward_s": m * float(slow.forward_s), "backward_s": m * float(slow.backward_s),
             "recompute_s": m * float(slow.recompute_s), "tp_comm_s": m * float(slow.tp_s),
             "cp_comm_s": m * float(slow.cp_s), "pp_comm_s": m * float(slow.pp_s),
             "fsdp_comm_s": m * float(slow.fsdp_s), "dp_comm_s": float(st.dp_s), "optimizer_s": float(st.optimizer_s),
             "bubble_s": bubble_s, "power_cap_s": max(0.0, step - float(st.pipeline_s + st.dp_s + st.optimizer_s))}
    shares = {"compute": parts["forward_s"] + parts["backward_s"] + parts["recompute_s"] + parts["optimizer_s"],
              "communication": sum(parts[k] for k in ("tp_comm_s", "cp_comm_s", "pp_comm_s", "fsdp_comm_s",
                                                     "dp_comm_s")),
              "pipeline_bubble": bubble_s, "power": parts["power_cap_s"]}
    bound = max(shares, key=shares.get)
    total, active = spec.params()
    b = cfg.states
    doc: dict[str, Any] = {
        "model": spec.name, "hardware": sc.chip.id, "system": sc.system.id,
        "parallel": {"tp": plan.tp, "pp": plan.pp, "cp": cfg.cp, "dp": cfg.dp, "ep": plan.ep, "num_chips": chips,
                     "zero_stage": cfg.zero_stage, "virtual_stages": cfg.virtual_stages,
                     "sequence_parallel": cfg.sequence_parallel, "micro_batches": m},
        "workload": {"seq_len": cfg.seq_len, "global_batch": cfg.global_batch, "micro_batch": cfg.micro_batch,
                     "tokens_per_step": cfg.tokens_per_step, "dtype": cfg.dtype, "recompute": cfg.recompute,
                     "selective": cfg.selective, "framework": cfg.framework.id, "attention": sc.attention,
                     "dropout": cfg.dropout},
        "params": {"total": total, "active": active, "per_chip": mem.params_per_chip},
        "memory": {
            "weights_bytes": mem.weights_bytes, "gradients_bytes": mem.gradients_bytes,
            "optimizer_bytes": mem.optimizer_bytes, "master_weights_bytes": mem.master_weights_bytes,
            "moments_bytes": mem.moments_bytes, "gathered_bytes": mem.gathered_bytes,
            "activation_bytes": mem.activation_bytes, "logits_bytes": mem.head_bytes,
            "workspace_bytes": mem.workspace_bytes, "reserve_bytes": mem.reserve_bytes,
            "total_per_chip_bytes": mem.total_bytes, "allocated_per_chip_bytes": mem.tensor_bytes + mem.workspace_bytes,
            "capacity_per_chip_bytes": mem.capacity_bytes,
            "fits": mem.fits, "fullest_stage": mem.stage, "in_flight_micro_batches": mem.in_flight,
            "layer_activation_bytes": mem.layer_activation_bytes,
            "bytes_per_param": {"weights": b.weights, "master_weights": b.master, "moments": b.moments,
                                "gradients": b.gradients, "total": b.total},
            "max_micro_batch": max_mb, "max_seq_len": max_seq,
        },
        "step_time_s": step, "tokens_per_s": tps, "tokens_per_s_per_chip": tps / chips,
        "samples_per_s": cfg.global_batch / step,
        "mfu": mfu, "hfu": hfu, "model_flops_per_token": flops_token, "flops_convention": cfg.convention,
        "peak_flops_per_chip": peak, "achieved_tflops_per_chip": flops_token * tps / chips / 1e12,
        "time": {**parts, "bubble_fraction": st.bubble}, "bound": bound,
        "efficiency": {k: v for k, v in dict(sc.efficiency).items()},
        "breakdown": _breakdown(slow, m),
        "warnings": list(sc.warnings),
    }
    doc["energy"], doc["cost"] = _energy_cost(ts, st, step)
    doc["run"] = _run(doc, tokens) if tokens is not None else None
    return doc


def _breakdown(c, m: int) -> list[dict[str, Any]]:
    """The slowest stage's chip over a step: its operators per micro-batch times m, the optimizer once."""
    rows = []
    for name, part, flops, nbytes, time_s in c.rows:
        k = 1 if part == "optimizer" else m
        rows.append({"op": name, "part": part, "flops": k * float(np.sum(flops)), "bytes": k * float(np.sum(nbytes)),
                     "time_s": k * float(np.sum(time_s))})
    return rows


def _energy_cost(ts: TrainScenario, st, step: float) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    sc, cfg = ts.sc, ts.cfg
    er = sc.energy_rates
    chips = sc.plan.num_chips
    energy = None
    avg_w = None
    if er is not None and st.dynamic_energy_step_j is not None:
        static = chips * er.idle_w * step
        total = float(st.dynamic_energy_step_j) + static
        avg_w = min(total / (chips * step), er.tdp_w)
        energy = {"joules_per_step": total, "dynamic_j": float(st.dynamic_energy_step_j), "static_j": static,
                  "joules_per_token": total / cfg.tokens_per_step, "average_power_w_per_chip": avg_w,
                  "idle_w": er.idle_w, "tdp_w": er.tdp_w, "power_capped": bool(np.any(st.power_capped)),
                  "pue": sc.cost.pue}
    o = sc.cost
    cost = None
    try:
        if o.usd_per_chip_hour is not None:
            per_chip_hour, mode, capex = o.usd_per_chip_hour, "cloud", None
        else:
            if avg_w is None:
                raise InfercastError(sc.extra.get("energy_unavailable", "the chip's power is unknown")
                                     + "; owned-hardware cost needs it: give --usd-per-chip-hour")
            capex = capex_per_chip_usd(sc.rates, sc.system, o, sc.chip.id)
            per_chip_hour, mode = owned_chip_hour(capex, avg_w, er.tdp_w, o).total_usd, "owned"
        per_hour = chips * per_chip_hour
        cost = {"mode": mode, "usd_per_chip_hour": per_chip_hour, "usd_per_hour": per_hour,
                "usd_per_step": per_hour * step / 3600,
                "usd_per_million_tokens": per_hour / 3600 * step / cfg.tokens_per_step * 1e6,
                "capex_usd": None if capex is None else chips * capex,
                "assumptions": {k: getattr(o, k) for k in ("electricity_usd_per_kwh", "pue", "years",
                                                           "hosting_usd_per_kw_month", "host_power_w_per_chip")}}
    except InfercastError as exc:
        cost = {"unavailable": str(exc)}
    return energy, cost


def _run(doc: dict[str, Any], tokens: float) -> dict[str, Any]:
    """A whole run of ``tokens`` tokens: steps, wall-clock, chip-hours, facility energy and cost."""
    steps = tokens / doc["workload"]["tokens_per_step"]
    seconds = steps * doc["step_time_s"]
    chips = doc["parallel"]["num_chips"]
    out = {"tokens": tokens, "steps": steps, "time_s": seconds, "days": seconds / SECONDS_PER_DAY,
           "chip_hours": chips * seconds / 3600, "gpu_hours": chips * seconds / 3600,
           "model_flops": doc["model_flops_per_token"] * tokens}
    e = doc["energy"]
    if e is not None:
        chip_j = e["joules_per_step"] * steps
        out.update({"chip_energy_mwh": chip_j / 3.6e9, "facility_energy_mwh": chip_j * e["pue"] / 3.6e9})
    c = doc["cost"]
    if c is not None and "usd_per_hour" in c:
        out["cost_usd"] = c["usd_per_hour"] * seconds / 3600
    return out


# --- the fastest plan that fits ---------------------------------------------------------------------


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def auto(model, hardware=None, *, num_chips: int | None = None, system=None, nodes: int | None = None,
         seq_len: int, global_batch: int, tokens: float | None = None, **kw: Any) -> TrainResult:
    """The fastest plan that fits on the given chips: tp (within a node) x pp x cp x dp, the micro-batch (powers
    of two to 16), ZeRO stage 1 or 3, and the least recomputation that fits (none, selective, full: each
    is slower than the one before, so the first that fits is the fastest of them). Keywords among tp, pp, cp,
    dp, micro_batch, zero_stage and recompute fix that choice; the others are ``train``'s."""
    from infercast.model import load_model
    from infercast.system import load_system

    spec = model if not isinstance(model, str) else load_model(model)
    if system is not None:
        sys_ = load_system(system) if isinstance(system, str) else system
        chips = num_chips or sys_.chips_per_node * (nodes or sys_.nodes)
        per_node = sys_.chips_per_node
    elif num_chips is None:
        raise InfercastError("--auto needs the chips to plan over: --num-chips N, or --system S [--nodes K]")
    else:
        chips, per_node = num_chips, min(num_chips, 8)
    fixed = {k: kw.pop(k) for k in ("tp", "pp", "cp", "dp", "micro_batch", "zero_stage", "recompute") if k in kw}
    fixed = {k: v for k, v in fixed.items() if v is not None}
    where = dict(system=system, nodes=nodes, num_chips=num_chips) if system is not None else dict(
        hardware=hardware, num_chips=chips)
    best: tuple[float, TrainScenario] | None = None
    tried = fitting = 0

    def allowed(name: str, values):
        return [v for v in values if fixed.get(name, v) == v]

    for tp in allowed("tp", [d for d in _divisors(chips) if d <= per_node]):
        for pp in allowed("pp", [d for d in _divisors(chips // tp) if d <= spec.num_layers]):
            cps = [d for d in _divisors(chips // (tp * pp)) if d == 1 or (d <= 8 and seq_len % (2 * d) == 0)]
            for cp in allowed("cp", cps):
                dp = chips // (tp * pp * cp)
                if fixed.get("dp", dp) != dp or global_batch % dp:
                    continue
                for mb in allowed("micro_batch", [x for x in (1, 2, 4, 8, 16) if (global_batch // dp) % x == 0]):
                    for zero in allowed("zero_stage", (1, 3)):
                        for rec in allowed("recompute", ("none", "selective", "full")):
                            tried += 1
                            try:
                                ts = resolve_training(spec, seq_len=seq_len, global_batch=global_batch, tp=tp, pp=pp,
                                                      cp=cp, dp=dp, micro_batch=mb, zero_stage=zero, recompute=rec,
                                                      **where, **kw)
                                if not train_memory(ts).fits:
                                    continue
                                fitting += 1
                                t = float(step_time(ts).step_s)
                            except InfercastError:
                                continue
                            if best is None or t < best[0]:
                                best = (t, ts)
                            break  # more recomputation only slows a plan that fits
    if best is None:
        raise InfercastError(f"--auto: no plan of {chips} chips fits {spec.name} at seq_len {seq_len} and global "
                             f"batch {global_batch} ({tried} tried); add chips or shorten the sequence")
    doc = document(best[1], tokens)
    doc["auto"] = {"candidates": tried, "fitting": fitting}
    return TrainResult(best[1], doc)


@dataclass(frozen=True)
class MinChips:
    """The fewest chips whose memory holds a training run, and the plan."""

    chips: int
    tp: int
    pp: int
    dp: int
    memory: Any
    """``training.TrainMemory`` of the fullest chip of that plan."""


def min_chips_to_train(model, hardware, *, seq_len: int, micro_batch: int = 1, recompute: str = "full",
                       zero_stage: int = 3, framework: str = "fsdp", dtype: str = "bf16", max_tp: int = 8,
                       max_chips: int = 1 << 16, **kw: Any) -> MinChips:
    """The fewest chips of ``hardware`` whose memory holds a training step of one micro-batch per replica:
    over tp (up to ``max_tp``) and pp (divisors of the layers), the smallest data-parallel degree whose
    ZeRO sharding brings the fullest chip under capacity (memory only falls as dp grows), then the plan of
    fewest chips in all."""
    from infercast.model import load_model

    spec = model if not isinstance(model, str) else load_model(model)
    best: MinChips | None = None
    L = spec.num_layers
    for tp in [t for t in (1, 2, 4, 8, 16) if t <= max_tp]:
        for pp in [p for p in range(1, L + 1) if L % p == 0]:
            if best is not None and tp * pp >= best.chips:
                continue

            def memory(dp: int):
                ts = resolve_training(spec, hardware, seq_len=seq_len, global_batch=dp * micro_batch,
                                      micro_batch=micro_batch, tp=tp, pp=pp, dp=dp, recompute=recompute,
                                      zero_stage=zero_stage, framework=framework, dtype=dtype, num_chips=tp * pp * dp,
                                      **kw)
                return train_memory(ts)

            try:
                if memory(1).fits:
                    dp = 1
                else:
                    hi = 1
                    while not memory(hi).fits:
                        hi *= 2
                        if tp * pp * hi > max_chips:
                            raise InfercastError("too many chips")
                    lo = hi // 2  # memory(lo) does not fit
                    while hi - lo > 1:
                        mid = (lo + hi) // 2
                        lo, hi = (lo, mid) if memory(mid).fits else (mid, hi)
                    dp = hi
            except InfercastError:
                continue
            chips = tp * pp * dp
            if best is None or chips < best.chips:
                best = MinChips(chips, tp, pp, dp, memory(dp))
    if best is None:
        raise InfercastError(f"no plan of at most {max_chips} chips of {getattr(hardware, 'id', hardware)} holds a "
                             f"training step of {spec.name}")
    return best


__all__ = ["ADAM_FLOPS", "MinChips", "TrainResult", "auto", "document", "min_chips_to_train", "train"]
