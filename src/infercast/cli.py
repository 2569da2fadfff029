"""The ``infercast`` command line. Bad input prints one line naming the field and exits 2."""

from __future__ import annotations

import csv
import io
import json
import sys
from typing import Any

import click

from infercast.errors import InfercastError

OUTPUT = click.Choice(["table", "json", "csv"])
DTYPE_HELP = "fp32, tf32, bf16, fp16, fp8 (fp8_e4m3, fp8_e5m2), int8, fp6, int4, fp4, mxfp4, nvfp4, mxfp6"
SCHEME_HELP = "q4_0, q4_k_m, q8_0, gptq, awq, w4a16, fp8, w8a8, mxfp4, nvfp4 or mxfp6"


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        elif not isinstance(value, list):
            out[f"{prefix}{key}"] = value
    return out


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _key_values(pairs: tuple[str, ...], option: str) -> dict[str, float]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise InfercastError(f"{option} {pair!r}: expected KEY=NUMBER, e.g. {option} bandwidth=0.8")
    return out


def _fmt(x: float | None, unit: str = "", scale: float = 1.0) -> str:
    """3 significant figures, with thousands separators instead of exponents for large numbers."""
    if x is None:
        return "-"
    v = x / scale
    return f"{v:,.0f}{unit}" if abs(v) >= 1000 else f"{v:.3g}{unit}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="infercast")
def cli() -> None:
    """How a generative model runs on given hardware: fit, latency, throughput, bottleneck."""


def _stages(value: str | None) -> tuple[int, ...] | None:
    if not value:
        return None
    try:
        return tuple(int(x) for x in value.split(","))
    except ValueError:
        raise InfercastError(f"--pp-stages {value!r}: expected layer counts such as 41,39") from None


def _engine_options(f):
    """The options every command that runs the engine shares (estimate, compare)."""
    options = [
        click.option("--model", required=True,
                     help="Preset id (infercast models list) or a config.json path or folder."),
        click.option("--batch", type=int, default=1, show_default=True,
                     help="Sequences processed together (all replicas)."),
        click.option("--isl", type=int, default=128, show_default=True, help="Input (prompt) tokens per sequence."),
        click.option("--osl", type=int, default=128, show_default=True, help="Output tokens per sequence."),
        click.option("--dtype", help=f"Format of weights, activations and KV cache: {DTYPE_HELP} [default: fp16]."),
        click.option("--weight-dtype", help="Weight format (overrides --dtype)."),
        click.option("--act-dtype", help="Activation format (overrides --dtype)."),
        click.option("--kv-cache-dtype", help="KV-cache format (overrides --dtype)."),
        click.option("--quantization", help=f"Named weight quantization scheme: {SCHEME_HELP}."),
        click.option("--weight-sparsity", type=float,
                     help="Fraction of zero weights in the decoder's linear layers, e.g. 0.5 [0]."),
        click.option("--sparsity-pattern", help="unstructured, or N:M such as 2:4 (sets the sparsity) [unstructured]."),
        click.option("--activation-sparsity", type=float,
                     help="Fraction of zero inputs to the linear layers (after ReLU, ...) [0]."),
        click.option("--sparse-storage", type=click.Choice(["dense", "compressed"]),
                     help="Store sparse weights with their zeros, or as non-zeros plus an index "
                          "[compressed for unstructured on chips that read it, else dense]."),
        click.option("--moe-imbalance", type=float, default=1.0, show_default=True,
                     help="Tokens of an MoE layer's busiest expert over the mean (1 = uniform routing)."),
        click.option("--attention", type=click.Choice(["flash", "materialized"]), default="flash", show_default=True,
                     help="Fused FlashAttention-style kernel, or scores written to memory."),
        click.option("--efficiency", "efficiency", multiple=True, metavar="KEY=VALUE",
                     help="Override an efficiency parameter, e.g. bandwidth=0.8 or step_overhead_s=0.002."),
        click.option("--calibration", metavar="PROFILE.yaml",
                     help="Calibration profile (infercast calibrate --fit) [the shipped fit of the public data]."),
        click.option("--comm", "comm", multiple=True, metavar="KEY=VALUE",
                     help="Override a collective parameter, e.g. bandwidth=0.7 or overlap=0.5."),
        click.option("--gpu-memory-utilization", type=float,
                     help="Fraction of device memory the engine may use [0.9]."),
        click.option("--tp", type=int, default=1, show_default=True, help="Tensor-parallel degree."),
        click.option("--pp", type=int, default=1, show_default=True, help="Pipeline-parallel stages."),
        click.option("--ep", type=int, default=1, show_default=True, help="Expert-parallel degree (MoE models)."),
        click.option("--dp", type=int, default=1, show_default=True, help="Data-parallel replicas."),
        click.option("--pp-stages", help="Layers per pipeline stage, e.g. 41,39 (default: as even as possible)."),
        click.option("--sequence-parallel", is_flag=True, help="Reduce-scatter/all-gather instead of all-reduce."),
        click.option("--micro-batches", type=int, help="Micro-batches in flight with --pp [default: min(pp, batch)]."),
        click.option("--auto", is_flag=True, help="Pick the fastest valid tp x pp plan on the system's chips."),
        click.option("--usd-per-chip-hour", type=float,
                     help="Cloud price of a chip-hour; without it chips are priced as owned hardware."),
        click.option("--electricity-usd-per-kwh", type=float, help="Electricity price for owned hardware [0.08]."),
        click.option("--pue", type=float, help="Facility power over IT power [1.2]."),
        click.option("--years", type=float, help="Years to pay off owned hardware over (and a fleet's TCO) [5]."),
        click.option("--energy", "energy", multiple=True, metavar="KEY=VALUE",
                     help="Override an energy parameter, e.g. chip_overhead=1 or idle_fraction_of_tdp=0.15."),
        click.option("--cost", "cost", multiple=True, metavar="KEY=VALUE",
                     help="Override a cost parameter, e.g. chip_price_usd=25000 or hosting_usd_per_kw_month=100."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _deployment_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    """The engine's keyword options from the flags every engine command shares (estimate, simulate)."""
    memory = kw.pop("gpu_memory_utilization")
    kw["memory"] = {"gpu_memory_utilization": memory} if memory is not None else None
    kw["efficiency"] = _key_values(kw.pop("efficiency"), "--efficiency") or None
    kw["comm"] = _key_values(kw.pop("comm"), "--comm") or None
    kw["pp_stages"] = _stages(kw.pop("pp_stages"))
    return kw


def _run_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    kw = _deployment_kwargs(kw)
    kw["energy"] = _key_values(kw.pop("energy"), "--energy") or None
    cost = _key_values(kw.pop("cost"), "--cost")
    for name in ("electricity_usd_per_kwh", "pue", "years"):
        value = kw.pop(name)
        if value is not None:
            cost[name] = value
    kw["cost"] = cost or None
    return kw


@cli.command()
@_engine_options
@click.option("--hardware", help="Chip id (infercast hardware list) or a chip YAML path.")
@click.option("--num-chips", type=int, help="Chips of --hardware in a default system (NVLink or PCIe in a node).")
@click.option("--system", help="Named system (infercast hardware systems) or a system YAML path.")
@click.option("--nodes", type=int, help="Nodes of --system (scale out over its inter-node link).")
@click.option("--output", type=OUTPUT, default="table", show_default=True)
@click.option("--breakdown", is_flag=True, help="Show the per-operator table (op, phase, FLOPs, bytes, time, bound).")
def estimate(output: str, breakdown: bool, **kw: Any) -> None:
    """Estimate memory, TTFT, TPOT and throughput of a model on a chip or a system."""
    from infercast.estimate import estimate as run

    result = run(**_run_kwargs(kw)).to_dict()
    if output == "json":
        click.echo(json.dumps(result, indent=2))
    elif output == "csv":
        click.echo(_csv(result["breakdown"]) if breakdown else _csv([_flatten(result)]), nl=False)
    else:
        _estimate_table(result, breakdown)


@cli.command()
@_engine_options
@click.option("--systems", required=True, help="Comma-separated systems or chips (chip ids use --num-chips).")
@click.option("--num-chips", type=int, help="Chips for entries that name a chip rather than a system.")
@click.option("--output", type=OUTPUT, default="table", show_default=True)
def compare(systems: str, num_chips: int | None, output: str, **kw: Any) -> None:
    """Run one model and workload on two or more systems, side by side."""
    from infercast.estimate import estimate as run
    from infercast.system import system_ids

    kw = _run_kwargs(kw)
    rows = []
    for name in [x.strip() for x in systems.split(",") if x.strip()]:
        where = {"system": name} if name in system_ids() or name.endswith((".yaml", ".yml")) else {
            "hardware": name, "num_chips": num_chips}
        r = run(**where, **kw)
        d = r.to_dict()
        share = r.communication_share
        rows.append({
            "system": d["system"], "chip": d["hardware"], "plan": f"tp{r.plan.tp} pp{r.plan.pp} ep{r.plan.ep} "
                                                                  f"dp{r.plan.dp}",
            "fits": d["memory"]["fits"], "per_chip_gb": d["memory"]["total_per_chip_bytes"] / 1e9,
            "ttft_s": d["ttft_s"], "tpot_s": d["decode"]["tpot_s"], "e2e_latency_s": d["e2e_latency_s"],
            "throughput_tokens_per_s": d["throughput_tokens_per_s"], "prefill_bound": d["prefill"]["bound"],
            "decode_bound": d["decode"]["bound"], "decode_comm_share": share["decode"],
            "prefill_comm_share": share["prefill"],
        })
    if len(rows) < 2:
        raise InfercastError("--systems: name at least two systems or chips, separated by commas")
    if output != "table":
        _print_rows(rows, output)
        return
    # side by side: one column per system
    _print_rows([{"": key, **{r["system"]: r[key] for r in rows}} for key in rows[0] if key != "system"], "table")


def _estimate_table(r: dict[str, Any], breakdown: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    m, w = r["memory"], r["workload"]
    fits = "[green]fits[/green]" if m["fits"] else "[red]does not fit[/red]"
    console.print(f"[bold]{r['model']}[/bold] on [bold]{r['hardware']}[/bold]: batch {w['batch']}, "
                  f"isl {w['isl']}, osl {w['osl']}, weights {w['weight_dtype']}, act {w['act_dtype']}, "
                  f"KV {w['kv_dtype']}")
    console.print(f"params {r['params']['total'] / 1e9:.2f} B total, {r['params']['active'] / 1e9:.2f} B active")
    par = r["parallel"]
    console.print(f"system {r['system']}: tp {par['tp']} x pp {par['pp']} x dp {par['dp']} = {par['num_chips']} "
                  f"chips, ep {par['ep']}" + (f", {par['micro_batches']} micro-batches" if par["pp"] > 1 else ""))
    t = Table(show_header=False, box=None)
    t.add_row("memory", f"{fits}: {m['reason']}")
    t.add_row("", f"weights {m['weights_bytes'] / 1e9:.2f} GB, KV cache {m['kv_cache_bytes'] / 1e9:.3g} GB "
                  f"(if MHA {m['kv_cache_bytes_if_mha'] / 1e9:.3g} GB), activations "
                  f"{m['activation_bytes'] / 1e9:.3g} GB, runtime {m['overhead_bytes'] / 1e9:.3g} GB")
    t.add_row("", f"min chips {m['min_chips']}, max batch {m['max_batch']}")
    if r.get("sparsity"):
        s = r["sparsity"]
        t.add_row("sparsity", f"weights {s['weight_sparsity']:g} ({s['pattern']}, stored {s['storage']}, "
                              f"{s['weight_bytes_ratio']:.3g}x the dense bytes), activations "
                              f"{s['activation_sparsity']:g}: {s['reason']}")
    d, u = r["decode"], r["utilization"]
    t.add_row("TTFT", f"{_fmt(r['ttft_s'], ' ms', 1e-3)} ({r['prefill']['bound']}-bound, "
                      f"{_fmt(u['prefill_compute'] and 100 * u['prefill_compute'], '%')} of peak compute)")
    t.add_row("TPOT", f"{_fmt(d['tpot_s'], ' ms', 1e-3)} ({d['bound']}-bound, "
                      f"{_fmt(u['decode_bandwidth'] and 100 * u['decode_bandwidth'], '%')} of peak bandwidth)")
    t.add_row("decode", f"{_fmt(d['tokens_per_s'], ' tokens/s')} over the batch")
    t.add_row("end to end", f"{_fmt(r['e2e_latency_s'], ' s')}, {_fmt(r['throughput_tokens_per_s'], ' tokens/s')}")
    share = r["communication_share"]
    if par["num_chips"] > 1:
        t.add_row("communication", f"{100 * share['prefill']:.1f}% of prefill, {100 * share['decode']:.1f}% of decode")
    _energy_cost_rows(t, r)
    console.print(t)
    if not m["fits"]:
        console.print("[yellow]Latencies are for one chip as if it had the memory; "
                      f"the model needs at least {m['min_chips']} chips.[/yellow]")
    if breakdown:
        b = Table("op", "phase", "GFLOPs", "MB", "time ms", "bound", "link", title="per operator (one chip)")
        for row in r["breakdown"]:
            b.add_row(row["op"], row["phase"], f"{row['flops'] / 1e9:.4g}", f"{row['bytes'] / 1e6:.4g}",
                      f"{row['time_s'] * 1e3:.4g}", row["bound"], row["tier"] or "")
        console.print(b)


@cli.command()
@_engine_options
@click.option("--hardware", help="Chip id (infercast hardware list) or a chip YAML path.")
@click.option("--num-chips", type=int, help="Chips of --hardware in one replica.")
@click.option("--system", help="Named system (infercast hardware systems) or a system YAML path.")
@click.option("--nodes", type=int, help="Nodes of --system in one replica.")
@click.option("--qps", type=float, required=True, help="Queries per second the fleet must serve (isl + osl each).")
@click.option("--target-utilization", type=float, default=1.0, show_default=True,
              help="Fraction of the replicas' capacity the load may use (headroom for peaks).")
@click.option("--slo", metavar="ttft_p99:2000,tpot_p99:200",
              help="Size replicas by the highest rate each sustains within these SLOs (ms), simulated "
                   "(continuous batching) instead of the static batch's batch / E2E.")
@click.option("--num-prompts", type=int, default=2000, show_default=True,
              help="With --slo: Poisson requests per probe of the rate search.")
@click.option("--output", type=OUTPUT, default="table", show_default=True)
def fleet(qps: float, target_utilization: float, slo: str | None, num_prompts: int, output: str, **kw: Any) -> None:
    """Size a fleet of replicas of one deployment for a load: chips, capex, opex, TCO, energy, cost per query."""
    from infercast.estimate import estimate as run
    from infercast.fleet import check_load, replica_rate_within, size_fleet

    check_load(qps, target_utilization)
    kw = _run_kwargs(kw)
    est = run(**kw)
    rate, basis = replica_rate_within(slo, num_prompts=num_prompts, **kw) if slo else (None, "static batch")
    f = size_fleet(est, qps, target_utilization=target_utilization, replica_rate=rate, basis=basis).to_dict()
    doc = {"model": est.model, "hardware": est.hardware, "system": est.system,
           "parallel": {"tp": est.plan.tp, "pp": est.plan.pp, "ep": est.plan.ep, "dp": est.plan.dp},
           "e2e_latency_s": est.e2e_latency_s, "tpot_s": est.tpot_s, **f, "assumptions": est.cost.assumptions}
    if output == "json":
        click.echo(json.dumps(doc, indent=2))
        return
    if output == "csv":
        click.echo(_csv([_flatten(doc)]), nl=False)
        return
    served = (f"E2E {est.e2e_latency_s:.3g} s at batch {est.batch}" if slo is None else f['basis'])
    click.echo(f"{est.model} on {est.system} (tp {est.plan.tp} x pp {est.plan.pp} x dp {est.plan.dp}), isl "
               f"{est.isl}, osl {est.osl}: one replica of {f['chips_per_replica']} chips serves "
               f"{f['replica_qps']:.3g} queries/s ({served})")
    _print_rows([
        {"": "replicas", "value": f"{f['replicas']:,}"}, {"": "chips", "value": f"{f['chips']:,}"},
        {"": "load", "value": f"{100 * f['load']:.1f}% busy, {f['average_power_w_per_chip']:.0f} W per chip"},
        {"": "capex", "value": f"USD {f['capex_usd']:,.0f}"},
        {"": "opex per year", "value": f"USD {f['opex_usd_per_year']:,.0f}"},
        {"": f"TCO over {f['years']:g} years", "value": f"USD {f['tco_usd']:,.0f}"},
        {"": "energy per year", "value": f"{f['energy_kwh_per_year']:,.0f} kWh (facility)"},
        {"": "cost per query", "value": f"USD {f['usd_per_query']:.3g}"},
    ], "table")
    a = doc["assumptions"]
    click.echo("assumptions: " + ", ".join(f"{k}={v}" for k, v in a.items() if v is not None)
               + f"; idle {est.energy.idle_w:g} W and TDP {est.energy.tdp_w:g} W per chip, chip_overhead "
                 f"{est.energy.chip_overhead:g} (see --energy)")


def _energy_cost_rows(t, r: dict[str, Any]) -> None:
    e, c = r["energy"], r["cost"]
    if e is None:
        t.add_row("energy", f"unknown: {r.get('energy_unavailable', '')}")
    else:
        s, total = e["split"], e["total_j"]

        def pct(x: float) -> str:
            return f"{100 * x / total:.3g}%"

        t.add_row("energy", f"{_fmt(e['joules_per_token'], ' J')} per output token ({_fmt(e['tokens_per_joule'])} "
                            f"tokens/J), {_fmt(e['average_power_w'], ' W')} per chip (idle {_fmt(e['idle_w'])}, "
                            f"TDP {_fmt(e['tdp_w'])})" + (", [yellow]capped at TDP[/yellow]" if e["power_capped"] else ""))
        t.add_row("", f"memory {pct(s['memory_j'])} (DRAM {pct(s['dram_j'])}, SRAM {pct(s['sram_j'])}), arithmetic "
                      f"{pct(s['compute_j'])}, links {pct(s['interconnect_j'])}, static {pct(s['static_j'])}, chip "
                      f"overhead {pct(s['overhead_j'])}; {_fmt(e['w_per_delivered_pflops'], ' W')} per delivered PFLOP/s")
    if c is None:
        t.add_row("cost", f"unknown: {r.get('cost_unavailable', '')}")
    else:
        a = c["assumptions"]
        basis = (f"cloud, USD {_fmt(c['usd_per_chip_hour'])} per chip-hour" if c["mode"] == "cloud" else
                 f"owned: USD {_fmt(c['capex_usd'] / r['parallel']['num_chips'])} per chip over {a['years']:g} years, "
                 f"USD {a['electricity_usd_per_kwh']:g}/kWh, PUE {a['pue']:g}")
        t.add_row("cost", f"USD {_fmt(c['usd_per_million_tokens'])} per million output tokens, USD "
                          f"{c['usd_per_query']:.3g} per query, USD {_fmt(c['usd_per_hour'])} per hour ({basis})")


@cli.group()
def hardware() -> None:
    """The chip catalog."""


@hardware.command("list")
@click.option("--output", type=OUTPUT, default="table", show_default=True)
def hardware_list(output: str) -> None:
    """List the chips with their headline figures."""
    from infercast.hardware import chip_ids, load_chip

    rows = []
    for cid in chip_ids():
        c = load_chip(cid)
        bf16 = next((f for f in (c.peak_flops.bf16, c.peak_flops.fp16) if f is not None and f.value), None)
        rows.append({
            "id": c.id, "name": c.name, "family": c.family,
            "bf16_tflops": bf16.value / 1e12 if bf16 and bf16.value else None,
            "memory_gb": c.memory.capacity_bytes.value / 1e9 if c.memory.capacity_bytes.value else None,
            "bandwidth_gb_per_s": (c.memory.bandwidth_bytes_per_s.value / 1e9
                                   if c.memory.bandwidth_bytes_per_s.value else None),
            "tdp_w": c.tdp_w.value,
        })
    _print_rows(rows, output)


@hardware.command("systems")
@click.option("--output", type=OUTPUT, default="table", show_default=True)
def hardware_systems(output: str) -> None:
    """List the named systems: chips per node and the links between them."""
    from infercast.system import load_system, system_ids

    rows = []
    for sid in system_ids():
        s = load_system(sid)

        def tier(t):
            return f"{t.name}: {t.bandwidth_bytes_per_s_per_direction.value / 1e9:g} GB/s" if t else "-"

        rows.append({"id": s.id, "chip": s.chip, "chips_per_node": s.chips_per_node, "nodes": s.nodes,
                     "intra_node": tier(s.intra_node), "inter_node": tier(s.inter_node)})
    _print_rows(rows, output)


@hardware.command("show")
@click.argument("name")
@click.option("--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
def hardware_show(name: str, output: str) -> None:
    """Show one chip's catalog entry with every source."""
    import yaml

    from infercast.hardware import load_chip

    data = load_chip(name).model_dump(exclude_defaults=True)
    click.echo(json.dumps(data, indent=2) if output == "json" else yaml.safe_dump(data, sort_keys=False), nl=False)


@cli.group()
def models() -> None:
    """The model presets."""


@models.command("list")
@click.option("--output", type=OUTPUT, default="table", show_default=True)
def models_list(output: str) -> None:
    """List the presets with their size."""
    from infercast.model import load_model, model_ids

    rows = []
    for mid in model_ids():
        s = load_model(mid)
        total, active = s.params()
        rows.append({"id": mid, "architecture": s.architecture, "layers": s.num_layers, "hidden": s.hidden_size,
                     "heads": s.num_heads, "kv_heads": s.num_kv_heads, "params_b": round(total / 1e9, 2),
                     "active_b": round(active / 1e9, 2), "context": s.max_position_embeddings})
    _print_rows(rows, output)


@models.command("show")
@click.argument("name")
@click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def models_show(name: str, output: str) -> None:
    """Show a model's normalised spec, parameter counts and KV bytes per token."""
    from infercast.model import load_model

    s = load_model(name)
    total, active = s.params()
    data = {**s.model_dump(), "params_total": total, "params_active": active,
            "kv_bytes_per_token_fp16": s.kv_elements_per_token() * 2}
    if output == "json":
        click.echo(json.dumps(data, indent=2))
    else:
        _print_rows([{"field": k, "value": v} for k, v in data.items()], "table")


@cli.command()
@click.option("--output", type=OUTPUT, default="table", show_default=True)
def claims(output: str) -> None:
    """Each seed claim C1-C20: the tool's computed figures and a verdict."""
    from infercast.claims import all_claims

    rows = [c.to_dict() for c in all_claims()]
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        _print_rows([{**r, "figures": "; ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                for k, v in r["figures"].items())} for r in rows], output)


@cli.command()
@click.option("--data", required=True, metavar="FILE.csv",
              help="Measured-data CSV (format: docs/data-formats.md); 'public' is the bundled copy of measured-public.csv.")
@click.option("--efficiency", "efficiency", multiple=True, metavar="KEY=VALUE",
              help="Override an efficiency parameter for every chip (repeatable).")
@click.option("--calibration", metavar="PROFILE.yaml", help="Calibration profile [the shipped fit].")
@click.option("--output", type=OUTPUT, default="table", show_default=True)
def validate(data: str, efficiency: tuple[str, ...], calibration: str | None, output: str) -> None:
    """Predict every row of a measured CSV; report signed errors and median/p90 error by group."""
    from infercast.validate import summarize
    from infercast.validate import validate as run

    results = run(data, _key_values(efficiency, "--efficiency") or None, calibration)
    rows = [r.to_dict() for r in results]
    summary = summarize(results)
    if output == "json":
        click.echo(json.dumps({"rows": rows, "summary": summary}, indent=2))
        return
    if output == "csv":
        click.echo(_csv(rows), nl=False)
        return
    _print_rows([{"id": r["id"], "metric": r["metric"], "measured": r["measured"], "predicted": r["predicted"],
                  "error": r["error"], "ideal error": r["error_ideal"], "skipped": r["skipped_reason"] or ""}
                 for r in rows], "table")
    groups = [("all", summary["all"] | {"ideal": summary["all_ideal"]})]
    for key in ("by_metric", "by_hardware", "by_source"):
        groups += [(f"{key[3:]}={g}", s) for g, s in summary[key].items()]
    _print_rows([{"group": g, "n": s["count"], "median |err|": s["median_ape"], "p90 |err|": s["p90_ape"],
                  "median err": s["median_signed"], "ideal median |err|": s["ideal"]["median_ape"]}
                 for g, s in groups], "table")
    click.echo(f"{summary['predicted']} of {summary['rows']} rows predicted; skipped: "
               + "; ".join(f"{n} x {why}" for why, n in summary["skipped_reasons"].items()))


@cli.command()
@click.option("--fit", "fit", metavar="FILE.csv",
              help="Fit the efficiency parameters to a measured CSV ('public': the bundled one).")
@click.option("--local", is_flag=True, help="Measure this machine, write a chip YAML, run a reference transformer.")
@click.option("--start", default="prior", show_default=True,
              help="Profile the fit starts from and shrinks towards: prior, default or a profile YAML.")
@click.option("--no-loso", is_flag=True, help="Skip the leave-one-source-out cross-validation (faster).")
@click.option("--quick", is_flag=True, help="With --local: a run under two minutes.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="With --local: the device to measure [cuda if any].")
@click.option("--output", "out_file", metavar="FILE.yaml",
              help="Where to write the profile (--fit) or the chip YAML (--local); never over a file without --force.")
@click.option("--force", is_flag=True, help="Replace --output if it exists.")
@click.option("--report", type=click.Choice(["table", "json"]), default="table", show_default=True)
def calibrate(fit: str | None, local: bool, start: str, no_loso: bool, quick: bool, device: str | None,
              out_file: str | None, force: bool, report: str) -> None:
    """Fit efficiency parameters to measurements (--fit), or measure this machine (--local)."""
    if bool(fit) == local:
        raise InfercastError("calibrate: give exactly one of --fit FILE.csv or --local")
    if local:
        from infercast.localbench import run_local

        result = run_local(quick=quick, output=out_file, force=force, device=device,
                           progress=lambda m: click.echo(m, err=True))
        if report == "json":
            click.echo(json.dumps(result.to_dict(), indent=2))
        else:
            _print_rows(result.to_dict()["rows"], "table")
        return
    from infercast.calibrate import calibrate as run
    from infercast.files import check_writable, write_new

    if out_file:  # fail before a long fit, not after it
        check_writable(out_file, force)
    result = run(fit, start=start, loso=not no_loso, progress=lambda m: click.echo(m, err=True))
    if out_file:
        write_new(out_file, result.profile.to_yaml(), force=force)
        click.echo(f"wrote {out_file}", err=True)
    record = result.profile.fit
    if report == "json":
        click.echo(json.dumps(record, indent=2))
        return
    rows = []
    for kind in ("in_sample", "leave_one_source_out"):
        if kind not in record:
            continue
        groups = {"all": record[kind]["all"], **{f"metric={k}": v for k, v in record[kind]["by_metric"].items()},
                  **{f"source={k}": v for k, v in record[kind]["by_source"].items()}}
        rows += [{"errors": kind, "group": g, "n": s["count"], "median |err|": s["median_ape"],
                  "p90 |err|": s["p90_ape"]} for g, s in groups.items()]
    _print_rows(rows, "table")


def _print_rows(rows: list[dict[str, Any]], output: str) -> None:
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
    elif output == "csv":
        click.echo(_csv(rows), nl=False)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(*rows[0].keys()) if rows else Table()
        for row in rows:
            table.add_row(*("-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)
                            for v in row.values()))
        Console().print(table)


from infercast.serving.cli import simulate  # noqa: E402  (it builds on the helpers above)

cli.add_command(simulate)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except InfercastError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "infercast"
        click.echo(f"error: {exc.format_message()} (see '{command} --help')", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
