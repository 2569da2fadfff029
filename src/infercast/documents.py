"""The JSON documents of the commands, built once for the command line and the web API alike.

Each function takes ``resolve()``-style keywords (``infercast.options``) and returns plain data:
what ``infercast <command> --output json`` prints and what ``/api/<command>`` answers.
"""

from __future__ import annotations

from typing import Any

from infercast.errors import InfercastError


def estimate_document(**kw: Any) -> dict[str, Any]:
    """``infercast estimate``: the estimate's document (DESIGN.md's contract); for a non-decoder model
    (``infercast.networks``) the document of its passes (``passes.network_document``)."""
    from infercast.model import is_network_preset

    image = {k: kw.pop(k, None) for k in ("resolution", "steps", "cfg", "seq_len")}
    if kw.pop("eager", False):
        image["eager"] = True
    if is_network_preset(kw.get("model")):
        from infercast.passes import network_document

        for flag, default in (("isl", 128), ("osl", 128), ("auto", False), ("beam_width", 1), ("n", 1)):
            if kw.pop(flag, default) not in (default, None):
                raise InfercastError(f"--{flag.replace('_', '-')} applies to decoders; {kw['model']} takes --batch, "
                                     f"--resolution, --steps, --cfg or --seq-len")
        return network_document(**kw, **{k: v for k, v in image.items() if v is not None})
    given = [k for k, v in image.items() if v is not None]
    if given:
        flag = "no-cfg" if given[0] == "cfg" and image["cfg"] is False else given[0].replace("_", "-")
        raise InfercastError(f"--{flag} applies to encoders, CNNs and diffusion pipelines; "
                             f"{kw.get('model')} is a decoder: give --isl and --osl")
    from infercast.estimate import estimate

    return estimate(**kw).to_dict()


def train_document(*, auto: bool = False, no_sequence_parallel: bool = False, flops_convention: str = "palm",
                   **kw: Any) -> dict[str, Any]:
    """``infercast train``: a training run's step time, memory, MFU, energy and cost (and a whole run's with
    ``tokens``); ``auto`` searches the plans of the chips for the fastest that fits."""
    from infercast.train import auto as auto_plan
    from infercast.train import train

    if no_sequence_parallel:
        kw["sequence_parallel"] = False
    kw["convention"] = flops_convention
    return (auto_plan(**kw) if auto else train(**kw)).to_dict()


def compare_document(systems: list[str], *, num_chips: int | None = None, **kw: Any) -> list[dict[str, Any]]:
    """``infercast compare``: one model and workload on two or more systems or chips; one row each."""
    from infercast.estimate import estimate
    from infercast.system import system_ids

    names = [x.strip() for x in systems if x.strip()]
    if len(names) < 2:
        raise InfercastError("--systems: name at least two systems or chips, separated by commas")
    seen = [n for i, n in enumerate(names) if n in names[:i]]
    if seen:
        raise InfercastError(f"--systems: {seen[0]} is named twice; name each system or chip once")
    rows = []
    for name in names:
        named_system = name in system_ids() or name.endswith((".yaml", ".yml"))
        where = {"system": name} if named_system else {"hardware": name, "num_chips": num_chips}
        r = estimate(**where, **kw)
        d = r.to_dict()
        rows.append({
            "system": d["system"], "chip": d["hardware"],
            "plan": f"tp{r.plan.tp} pp{r.plan.pp} ep{r.plan.ep} dp{r.plan.dp}",
            "fits": d["memory"]["fits"], "per_chip_gb": d["memory"]["total_per_chip_bytes"] / 1e9,
            "ttft_s": d["ttft_s"], "tpot_s": d["decode"]["tpot_s"], "e2e_latency_s": d["e2e_latency_s"],
            "throughput_tokens_per_s": d["throughput_tokens_per_s"], "prefill_bound": d["prefill"]["bound"],
            "decode_bound": d["decode"]["bound"], "decode_comm_share": d["communication_share"]["decode"],
            "prefill_comm_share": d["communication_share"]["prefill"],
            "usd_per_million_tokens": d["cost"]["usd_per_million_tokens"] if d["cost"] else None,
            "joules_per_token": d["energy"]["joules_per_token"] if d["energy"] else None,
        })
    return rows


def whatif_document(vary: list[str], **kw: Any) -> dict[str, Any]:
    """``infercast whatif``: a chip's or design's figures swept, what binds at each point, and the tornado."""
    from infercast.whatif import whatif

    if kw.get("hardware") is None:
        raise InfercastError("whatif varies a chip: give --hardware (a catalog chip, a chip YAML or a design)")
    model, hardware = kw.pop("model"), kw.pop("hardware")
    return whatif(model, hardware, list(vary), **kw)


def fleet_document(qps: float, *, target_utilization: float = 1.0, slo: str | None = None, num_prompts: int = 2000,
                   **kw: Any) -> dict[str, Any]:
    """``infercast fleet``: replicas of one deployment for a load, and their cost over the years."""
    from infercast.estimate import estimate
    from infercast.fleet import check_load, replica_rate_within, size_fleet
    from infercast.model import is_network_preset

    if is_network_preset(kw.get("model")):
        raise InfercastError(f"fleet sizes replicas of a language model; {kw['model']} is not a decoder (infercast "
                             f"estimate gives its samples or images per second)")
    check_load(qps, target_utilization)
    est = estimate(**kw)
    rate, basis = replica_rate_within(slo, num_prompts=num_prompts, **kw) if slo else (None, "static batch")
    f = size_fleet(est, qps, target_utilization=target_utilization, replica_rate=rate, basis=basis).to_dict()
    return {"model": est.model, "hardware": est.hardware, "system": est.system,
            "parallel": {"tp": est.plan.tp, "pp": est.plan.pp, "ep": est.plan.ep, "dp": est.plan.dp},
            "e2e_latency_s": est.e2e_latency_s, "tpot_s": est.tpot_s, **f, "assumptions": est.cost.assumptions,
            "energy": {"idle_w": est.energy.idle_w, "tdp_w": est.energy.tdp_w,
                       "chip_overhead": est.energy.chip_overhead}}


def chips_document() -> list[dict[str, Any]]:
    """``infercast hardware list``: every chip with its headline figures (SI units in the names)."""
    from infercast.hardware import chip_ids, load_chip

    rows = []
    for cid in chip_ids():
        c = load_chip(cid)
        bf16 = next((f for f in (c.peak_flops.bf16, c.peak_flops.fp16) if f is not None and f.value), None)
        rows.append({
            "id": c.id, "name": c.name, "family": c.family,
            "bf16_tflops": bf16.value / 1e12 if bf16 and bf16.value else None,
            "memory_gb": c.memory.capacity_bytes.value / 1e9 if c.memory.capacity_bytes.value else None,
            # the vendor's figure: memory is sold in binary gigabytes (an H100's 80 GB is 80 GiB, 85.9e9 bytes)
            "memory_gib": c.memory.capacity_bytes.value / 2**30 if c.memory.capacity_bytes.value else None,
            "bandwidth_gb_per_s": (c.memory.bandwidth_bytes_per_s.value / 1e9
                                   if c.memory.bandwidth_bytes_per_s.value else None),
            "tdp_w": c.tdp_w.value,
        })
    return rows


def systems_document() -> list[dict[str, Any]]:
    """``infercast hardware systems``: the named systems, chips per node and the links between them."""
    from infercast.system import load_system, system_ids

    def tier(t) -> str:
        return f"{t.name}: {t.bandwidth_bytes_per_s_per_direction.value / 1e9:g} GB/s" if t else "-"

    rows = []
    for sid in system_ids():
        s = load_system(sid)
        rows.append({"id": s.id, "chip": s.chip, "chips_per_node": s.chips_per_node, "nodes": s.nodes,
                     "intra_node": tier(s.intra_node), "inter_node": tier(s.inter_node)})
    return rows


def chip_document(name: str) -> dict[str, Any]:
    """``infercast hardware show``: one chip's catalog entry with every source (a design's derived chip)."""
    from infercast.design import load_hardware

    return load_hardware(name).model_dump(exclude_defaults=True)


def designs_document() -> list[dict[str, Any]]:
    """``infercast hardware designs``: the shipped designs with the figures derived from them."""
    from infercast.design import area_mm2, derive_chip, design_ids, load_design

    rows = []
    for name in design_ids():
        d = load_design(name)
        c = derive_chip(d)

        def tf(fmt: str, c=c) -> float | None:
            figure = getattr(c.peak_flops, fmt)
            return figure.value / 1e12 if figure is not None and figure.value else None

        rows.append({"id": name, "process_nm": d.process_nm, "units": d.compute.units,
                     "clock_ghz": d.compute.clock_hz / 1e9, "bf16_tflops": tf("bf16"), "fp8_tflops": tf("fp8"),
                     "fp4_tflops": tf("fp4"), "memory_gb": c.memory.capacity_bytes.value / 1e9,
                     "bandwidth_gb_per_s": c.memory.bandwidth_bytes_per_s.value / 1e9,
                     "sram_mb": c.on_chip_sram_bytes.value / 1e6, "area_mm2": float(area_mm2(d)),
                     "price_usd": c.price_usd.value, "tdp_w": c.tdp_w.value})
    return rows


def models_document() -> list[dict[str, Any]]:
    """``infercast models list``: every preset with its kind (decoder, encoder, cnn, diffusion) and size; the
    decoder's shape columns are empty for the other kinds."""
    from infercast.model import load_model, model_ids
    from infercast.networks import load_network, network_ids

    rows = []
    for mid in model_ids():
        s = load_model(mid)
        total, active = s.params()
        rows.append({"id": mid, "kind": "decoder", "architecture": s.architecture, "layers": s.num_layers,
                     "hidden": s.hidden_size, "heads": s.num_heads, "kv_heads": s.num_kv_heads,
                     "params_b": round(total / 1e9, 2), "active_b": round(active / 1e9, 2),
                     "context": s.max_position_embeddings})
    for mid in network_ids():
        net = load_network(mid)
        total = sum(net.params().values())
        rows.append({"id": mid, "kind": net.kind, "architecture": net.architecture, "layers": None, "hidden": None,
                     "heads": None, "kv_heads": None, "params_b": round(total / 1e9, 3),
                     "active_b": round(total / 1e9, 3), "context": None})
    return sorted(rows, key=lambda r: r["id"])


def model_document(name: str) -> dict[str, Any]:
    """``infercast models show``: a decoder's normalised spec, parameter counts and KV bytes per token; an
    encoder's, CNN's or diffusion pipeline's kind, components with their parameters, default workload and
    source."""
    from infercast.model import is_network_preset, load_model

    if is_network_preset(name):
        from infercast.networks import load_network

        net = load_network(name)
        params = net.params()
        return {"id": net.id, "kind": net.kind, "architecture": net.architecture, "params_total": sum(params.values()),
                "params_by_component": params, "defaults": dict(net.defaults), "source": net.source,
                "notes": net.notes}
    s = load_model(name)
    total, active = s.params()
    return {**s.model_dump(), "kind": "decoder", "params_total": total, "params_active": active,
            "kv_bytes_per_token_fp16": s.kv_elements_per_token() * 2}


def claims_document() -> list[dict[str, Any]]:
    """``infercast claims``: each seed claim C1-C20 recomputed, with a verdict."""
    from infercast.claims import all_claims

    return [c.to_dict() for c in all_claims()]


def frameworks_document() -> list[dict[str, Any]]:
    """One row per framework profile: its latest version and what it sets."""
    from infercast.framework import framework_names, load_framework

    rows = []
    for name in framework_names():
        fw = load_framework(name)
        p = fw.at(None)
        e = p.engine
        rows.append({"framework": name, "title": fw.title, "latest": fw.latest or "",
                     "versions": ", ".join(v.since for v in fw.versions), "cuda_graphs": p.cuda_graphs.value,
                     "prefill_graphs": p.prefill_graphs.value, "attention": p.attention.value,
                     "allreduce": p.allreduce.implementation, "max_num_seqs": int(e.max_num_seqs.value),
                     "max_num_batched_tokens": int(e.max_num_batched_tokens.value),
                     "chunked_prefill": e.chunked_prefill.value,
                     "admission": e.admission.value if e.admission is not None else "optimistic",
                     "gpu_memory_utilization": e.gpu_memory_utilization.value,
                     "runs_on": ", ".join(fw.runs_on.vendors) if fw.runs_on else "any chip"})
    return rows


def framework_document(value: str, calibration: str | None = None) -> dict[str, Any]:
    """One framework at a version (``NAME[@VERSION]``): its profile with every source, and the calibration's
    fitted values for it (its own entry and one per chip family it was fitted on)."""
    from infercast.calibration import resolve
    from infercast.framework import load_framework, resolve_framework

    ref = resolve_framework(value)
    fw = load_framework(ref.name)
    profile = resolve(calibration)
    cells = {k.partition("/")[0]: v for k, v in profile.cells.items() if k.partition("/")[2] == ref.name}
    return {"framework": ref.name, "version": ref.version or fw.latest, "title": fw.title,
            "description": fw.description,
            "runs_on": fw.runs_on.model_dump() if fw.runs_on else None,
            "profile": ref.profile.model_dump(exclude_none=True),
            "versions": [v.model_dump() for v in fw.versions],
            "fitted": {"framework": profile.frameworks.get(ref.name, {}), "by_family": cells}}


def search_document(**kw: Any) -> dict[str, Any]:
    """``infercast search``: the ranked deployments for a load and SLOs, the frontier, the rejections."""
    from infercast.search import search

    return search(**kw)


def pareto_document(**kw: Any) -> dict[str, Any]:
    """``infercast pareto``: frontiers of tokens/s per chip and USD per million tokens against tokens/s per user."""
    from infercast.search import pareto

    return pareto(**kw)


def pareto_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The frontiers' points as flat rows (group and metric first): what CSV and Parquet hold."""
    return [{"group": f["group"], "metric": f["metric"], **p} for f in doc["frontiers"] for p in f["points"]]
