"""The ``infercast`` command line. Bad input prints one line naming the field and exits 2."""

from __future__ import annotations

import csv
import io
import json
import sys
from typing import Any

import click

from infercast.errors import InfercastError

from infercast.options import (AUTO, DEPLOYMENT, EFFICIENCY, NETWORK_WORKLOAD, TRAIN_DEPLOYMENT, TRAINING, WORKLOAD,
                               click_options, resolve_kwargs)

OUTPUT = click.Choice(["table", "json", "csv"])


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


def _json(doc: Any) -> None:
    """Strict JSON: no NaN or Infinity (a non-finite number would be a bug, and is one)."""
    click.echo(json.dumps(doc, indent=2, allow_nan=False))


def _fmt(x: float | None, unit: str = "", scale: float = 1.0) -> str:
    """3 significant figures, with thousands separators instead of exponents for large numbers."""
    if x is None:
        return "-"
    v = x / scale
    return f"{v:,.0f}{unit}" if abs(v) >= 1000 else f"{v:.3g}{unit}"


class _Commands(click.Group):
    """The command group; commands kept in other modules are imported when they run (a fast ``--help``).

    ``LAZY`` maps a command to where it lives and its one-line help (a test holds the line to the
    command's own), so listing the commands imports none of them."""

    LAZY = {
        "simulate": ("infercast.serving.cli:simulate",
                     "Simulate a vLLM-style server under load: TTFT, TPOT, ITL, E2E latency, throughput, goodput."),
        "sweep": ("infercast.sweep_cli:sweep", "Evaluate a grid of deployments and workloads into a Parquet (or "
                  "CSV) dataset, one row per configuration."),
        "query": ("infercast.sweep_cli:query", "Run SQL (DuckDB) over a sweep's dataset, the view 'result': "
                  "\"SELECT hardware, min(\\\"decode.tpot_s\\\") FROM result GROUP BY 1\"."),
        "search": ("infercast.sweep_cli:search", "The cheapest deployments of a model that serve a load within "
                   "latency SLOs, confirmed by the simulator."),
        "pareto": ("infercast.sweep_cli:pareto", "Frontiers of output tokens/s per chip, and of USD per million "
                   "tokens, against tokens/s per user."),
        "plot": ("infercast.plot_cli:plot", "Draw a command's result to a PNG, SVG or HTML file: roofline, "
                 "breakdown, memory, energy, compare, timeline, latency, pareto, validation."),
        "web": ("infercast.web:web", "Serve the JSON API and the page that draws the estimates, comparisons, "
                "simulations and frontiers."),
        "frameworks": ("infercast.framework_cli:frameworks",
                       "The inference framework profiles (--framework NAME[@VERSION]): list, show."),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.LAZY:
            import importlib

            module, attr = self.LAZY[name][0].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = [(name, click.Command(name, help=self.LAZY[name][1]).get_short_help_str(limit) if name in self.LAZY else
                 self.commands[name].get_short_help_str(limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="infercast")
def cli() -> None:
    """How a generative model runs on given hardware: fit, latency, throughput, bottleneck, energy, cost."""


@cli.command()
@click_options((*DEPLOYMENT, *WORKLOAD, *NETWORK_WORKLOAD, AUTO))
@click.option("--output", type=OUTPUT, default="table", show_default=True)
@click.option("--breakdown", is_flag=True, help="Show the per-operator table (op, phase, FLOPs, bytes, time, bound).")
def estimate(output: str, breakdown: bool, **kw: Any) -> None:
    """Estimate memory, latency, throughput, energy and cost of a model on a chip or a system: a decoder's TTFT
    and TPOT, or an encoder's, CNN's or diffusion pipeline's seconds per sample or image."""
    from infercast.documents import estimate_document

    result = estimate_document(**resolve_kwargs(kw), **kw)
    if output == "json":
        _json(result)
    elif output == "csv":
        click.echo(_csv(result["breakdown"]) if breakdown else _csv([_flatten(result)]), nl=False)
    elif "kind" in result:
        _network_table(result, breakdown)
    else:
        _estimate_table(result, breakdown)


@cli.command()
@click_options((*TRAIN_DEPLOYMENT, *TRAINING, AUTO))
@click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--breakdown", is_flag=True, help="Show the slowest stage's operators over a step.")
def train(output: str, breakdown: bool, **kw: Any) -> None:
    """Train a model on a cluster: step time, tokens/s, MFU, memory per chip, energy and cost per step and run."""
    from infercast.documents import train_document

    if kw.get("auto"):  # search what the command line leaves open
        ctx = click.get_current_context()
        for name in ("tp", "pp", "cp", "dp", "micro_batch", "zero_stage", "recompute"):
            if ctx.get_parameter_source(name) != click.core.ParameterSource.COMMANDLINE:
                kw.pop(name, None)
    doc = train_document(**resolve_kwargs(kw, TRAIN_DEPLOYMENT), **kw)
    if output == "json":
        _json(doc)
    else:
        _train_table(doc, breakdown)


def _train_table(r: dict[str, Any], breakdown: bool) -> None:
    from infercast.display import console as make_console
    from infercast.display import table

    console = make_console()
    w, par, m = r["workload"], r["parallel"], r["memory"]
    console.print(f"[bold]{r['model']}[/bold] training on [bold]{r['system']}[/bold] ({w['framework']}): seq "
                  f"{w['seq_len']}, global batch {w['global_batch']}, micro-batch {w['micro_batch']}, {w['dtype']}, "
                  f"recompute {w['recompute']}")
    console.print(f"plan: tp {par['tp']} x pp {par['pp']} x cp {par['cp']} x dp {par['dp']} = {par['num_chips']} "
                  f"chips, ZeRO {par['zero_stage']}, {par['micro_batches']} micro-batches per replica"
                  + (f", {par['virtual_stages']} virtual stages" if par["virtual_stages"] > 1 else "")
                  + (", sequence parallel" if par["sequence_parallel"] else "")
                  + (f"  [--auto: {r['auto']['fitting']} of {r['auto']['candidates']} plans fit]" if "auto" in r
                     else ""))
    t = table("", "", show_header=False, box=None)
    fits = "[green]fits[/green]" if m["fits"] else "[red]does not fit[/red]"
    gb = 1e9
    t.add_row("memory", f"{fits}: {m['allocated_per_chip_bytes'] / gb:.1f} GB of {m['capacity_per_chip_bytes'] / gb:.0f} "
                        f"GB per chip (stage {m['fullest_stage']}); {m['total_per_chip_bytes'] / gb:.1f} GB with the "
                        f"allocator's cache (torch's max reserved)")
    t.add_row("", f"weights {m['weights_bytes'] / gb:.2f}, gradients {m['gradients_bytes'] / gb:.2f}, optimizer "
                  f"{m['optimizer_bytes'] / gb:.2f} (master {m['master_weights_bytes'] / gb:.2f}, moments "
                  f"{m['moments_bytes'] / gb:.2f}), gathered {m['gathered_bytes'] / gb:.2f} GB")
    t.add_row("", f"activations {m['activation_bytes'] / gb:.2f} GB ({m['in_flight_micro_batches']:g} micro-batches "
                  f"in flight), logits {m['logits_bytes'] / gb:.2f}, workspace {m['workspace_bytes'] / gb:.2f}, "
                  f"allocator reserve {m['reserve_bytes'] / gb:.2f} GB")
    if m["max_micro_batch"]:
        t.add_row("", f"largest micro-batch {m['max_micro_batch']} at this sequence; longest sequence "
                      f"{m['max_seq_len']:,} at this micro-batch")
    else:
        t.add_row("", "not one sequence of this length fits beside the model states: shard them more (--zero-stage, "
                      "--tp, --pp, more --dp) or recompute (--recompute full)")
    t.add_row("step", f"{_fmt(r['step_time_s'], ' s')}, {_fmt(r['tokens_per_s'], ' tokens/s')} "
                      f"({_fmt(r['tokens_per_s_per_chip'])} per chip), {r['bound']}-bound")
    t.add_row("MFU", f"{100 * r['mfu']:.1f}% ({r['flops_convention']}: {r['model_flops_per_token'] / 1e9:,.1f} GFLOP "
                     f"per token, {_fmt(r['achieved_tflops_per_chip'])} TFLOP/s per chip of "
                     f"{r['peak_flops_per_chip'] / 1e12:,.0f}); HFU {100 * r['hfu']:.1f}%")
    tm = r["time"]
    t.add_row("time", ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {_fmt(v, ' s')}" for k, v in tm.items()
                                if k != "bubble_fraction" and v > 0)
              + f"; bubble {100 * tm['bubble_fraction']:.1f}%")
    e, c = r["energy"], r["cost"]
    if e is not None:
        t.add_row("energy", f"{_fmt(e['joules_per_step'] / 1e6, ' MJ')} per step, {_fmt(e['joules_per_token'], ' J')} "
                            f"per token, {_fmt(e['average_power_w_per_chip'], ' W')} per chip"
                  + (" [yellow](capped at TDP)[/yellow]" if e["power_capped"] else ""))
    if c is not None and "usd_per_hour" in c:
        t.add_row("cost", f"USD {_fmt(c['usd_per_step'])} per step, USD {_fmt(c['usd_per_million_tokens'])} per million "
                          f"tokens, USD {_fmt(c['usd_per_hour'])} per hour ({c['mode']})")
    elif c is not None:
        t.add_row("cost", f"unknown: {c['unavailable']}")
    run = r.get("run")
    if run:
        t.add_row("run", f"{run['tokens']:.3g} tokens: {run['steps']:,.0f} steps, {run['days']:,.1f} days, "
                         f"{run['gpu_hours']:,.0f} GPU-hours"
                  + (f", {run['facility_energy_mwh']:,.0f} MWh (facility)" if "facility_energy_mwh" in run else "")
                  + (f", USD {run['cost_usd']:,.0f}" if "cost_usd" in run else ""))
    console.print(t)
    if not m["fits"]:
        console.print("[yellow]The step is timed as if the plan fit; it needs more memory per chip than it has."
                      "[/yellow]")
    for warning in r["warnings"]:
        console.print(f"[yellow]{warning}[/yellow]")
    if breakdown:
        b = table("op", "part", "GFLOPs", "MB", "time ms", title="slowest stage, one chip, over a step")
        for row in r["breakdown"]:
            b.add_row(row["op"], row["part"], f"{row['flops'] / 1e9:.4g}", f"{row['bytes'] / 1e6:.4g}",
                      f"{row['time_s'] * 1e3:.4g}")
        console.print(b)


def _network_table(r: dict[str, Any], breakdown: bool) -> None:
    """The table of a non-decoder model's estimate (``passes.network_document``)."""
    from infercast.display import console as make_console
    from infercast.display import table

    console = make_console()
    w, m = r["workload"], r["memory"]
    shape = f"{w['resolution']}, {w['steps']} steps{', CFG' if w['cfg'] else ''}" if r["kind"] == "diffusion" else (
        f"{w['resolution']}" if r["kind"] == "cnn" else f"{w['seq_len']} tokens")
    run = ", eager" if w["eager"] else ""
    run += ", materialised attention" if w["attention"] == "materialized" else ""
    console.print(f"[bold]{r['model']}[/bold] ({r['kind']}) on [bold]{r['hardware']}[/bold] x {r['parallel']['dp']}: "
                  f"batch {w['batch']} per chip, {shape}, weights {w['weight_dtype']}, act {w['act_dtype']}{run}")
    t = table("", "", show_header=False, box=None)
    fits = "[green]fits[/green]" if m["fits"] else "[red]does not fit[/red]"
    t.add_row("memory", f"{fits}: {m['total_per_chip_bytes'] / 1e9:.2f} GB of {m['usable_per_chip_bytes'] / 1e9:.1f} GB "
                        f"usable (weights {m['weights_bytes'] / 1e9:.2f} GB, activations {m['activation_bytes'] / 1e9:.3g} "
                        f"GB); max batch {m['max_batch']}")
    for p in r["passes"]:
        t.add_row(p["name"], f"{_fmt(p['latency_s'], ' s')} ({p['repeats']:g} x), {_fmt(p['flops'] / 1e12)} TFLOPs")
    if r["kind"] == "diffusion":
        t.add_row("per image", f"{_fmt(r['seconds_per_image'], ' s')}, {_fmt(r['images_per_s'])} images/s, "
                               f"{_fmt(r['denoiser_it_per_s'])} denoiser it/s, {_fmt(r['flops_per_image'] / 1e12)} "
                               f"TFLOPs per image")
    else:
        t.add_row("throughput", f"{_fmt(r['samples_per_s'])} samples/s, {_fmt(r['flops_per_sample'] / 1e9)} GFLOPs "
                                f"per sample")
    t.add_row("bound", f"{r['bound']}, {_fmt(100 * r['utilization']['compute'], '%')} of peak compute")
    e, c = r.get("energy"), r.get("cost")
    unit = "image" if r["kind"] == "diffusion" else "sample"
    if e:
        t.add_row("energy", f"{_fmt(e[f'joules_per_{unit}'], ' J')} per {unit}, {_fmt(e['average_power_w'], ' W')} per chip")
    if c:
        per = f"USD {c['usd_per_image']:.3g} per image" if unit == "image" else \
            f"USD {_fmt(c['usd_per_million_samples'])} per million samples"
        t.add_row("cost", f"{per} ({c['mode']}, USD {_fmt(c['usd_per_hour'])} per hour)")
    console.print(t)
    if breakdown:
        b = table("op", "pass", "GFLOPs", "MB", "time ms", "bound", title="per operator (one chip)")
        for row in r["breakdown"]:
            b.add_row(row["op"], row["phase"], f"{row['flops'] / 1e9:.4g}", f"{row['bytes'] / 1e6:.4g}",
                      f"{row['time_s'] * 1e3:.4g}", row["bound"])
        console.print(b)


COMPARE = tuple(o for o in DEPLOYMENT if o.name not in ("hardware", "num_chips", "system", "nodes"))


@cli.command()
@click_options((*COMPARE, *WORKLOAD))
@click.option("--systems", required=True, help="Comma-separated systems or chips (chip ids use --num-chips).")
@click.option("--num-chips", type=int, help="Chips for entries that name a chip rather than a system.")
@click.option("--output", type=OUTPUT, default="table", show_default=True)
def compare(systems: str, num_chips: int | None, output: str, **kw: Any) -> None:
    """Run one model and workload on two or more systems, side by side."""
    from infercast.documents import compare_document

    rows = compare_document(systems.split(","), num_chips=num_chips, **resolve_kwargs(kw, COMPARE), **kw)
    if output != "table":
        _print_rows(rows, output)
        return
    # side by side: one column per system
    _print_rows([{"": key, **{r["system"]: r[key] for r in rows}} for key in rows[0] if key != "system"], "table")


def _estimate_table(r: dict[str, Any], breakdown: bool) -> None:
    from infercast.display import console as make_console
    from infercast.display import table

    console = make_console()
    m, w = r["memory"], r["workload"]
    fits = "[green]fits[/green]" if m["fits"] else "[red]does not fit[/red]"
    console.print(f"[bold]{r['model']}[/bold] on [bold]{r['hardware']}[/bold]: batch {w['batch']}, "
                  f"isl {w['isl']}, osl {w['osl']}, weights {w['weight_dtype']}, act {w['act_dtype']}, "
                  f"KV {w['kv_dtype']}")
    console.print(f"params {r['params']['total'] / 1e9:.2f} B total, {r['params']['active'] / 1e9:.2f} B active")
    par = r["parallel"]
    console.print(f"system {r['system']}: tp {par['tp']} x pp {par['pp']} x dp {par['dp']} = {par['num_chips']} "
                  f"chips, ep {par['ep']}" + (f", {par['micro_batches']} micro-batches" if par["pp"] > 1 else ""))
    t = table("", "", show_header=False, box=None)
    t.add_row("memory", f"{fits}: {m['reason']}")
    t.add_row("", f"weights {m['weights_bytes'] / 1e9:.2f} GB, KV cache {m['kv_cache_bytes'] / 1e9:.3g} GB "
                  f"(if MHA {m['kv_cache_bytes_if_mha'] / 1e9:.3g} GB), activations "
                  f"{m['activation_bytes'] / 1e9:.3g} GB, runtime {m['overhead_bytes'] / 1e9:.3g} GB")
    plan = m["min_plan"]
    split = f" ({plan['dp']} replicas of tp {plan['tp']} x pp {plan['pp']})" if plan and plan["dp"] > 1 else ""
    t.add_row("", f"min chips {m['min_chips']}{split}, max batch {m['max_batch']} (bound by the "
                  f"{m['binding'].replace('_', ' ')})")
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
        need = f"at least {m['min_chips']} chips" if m["min_chips"] else "more memory than any plan of this chip has"
        console.print("[yellow]Latencies are for one chip as if it had the memory; "
                      f"the model needs {need}.[/yellow]")
    for warning in r.get("warnings", []):
        console.print(f"[yellow]note: {warning}[/yellow]")
    if breakdown:
        b = table("op", "phase", "GFLOPs", "MB", "time ms", "bound", "link", title="per operator (one chip)")
        for row in r["breakdown"]:
            b.add_row(row["op"], row["phase"], f"{row['flops'] / 1e9:.4g}", f"{row['bytes'] / 1e6:.4g}",
                      f"{row['time_s'] * 1e3:.4g}", row["bound"], row["tier"] or "")
        console.print(b)


@cli.command()
@click_options((*DEPLOYMENT, *WORKLOAD, AUTO))
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
    from infercast.documents import fleet_document

    doc = fleet_document(qps, target_utilization=target_utilization, slo=slo, num_prompts=num_prompts,
                         **resolve_kwargs(kw), **kw)
    if output == "json":
        _json(doc)
        return
    if output == "csv":
        click.echo(_csv([_flatten(doc)]), nl=False)
        return
    f, par = doc, doc["parallel"]
    served = (f"E2E {doc['e2e_latency_s']:.3g} s at batch {doc['batch']}" if slo is None else f["basis"])
    click.echo(f"{doc['model']} on {doc['system']} (tp {par['tp']} x pp {par['pp']} x dp {par['dp']}), isl "
               f"{doc['isl']}, osl {doc['osl']}: one replica of {f['chips_per_replica']} chips serves "
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
    a, e = doc["assumptions"], doc["energy"]
    click.echo("assumptions: " + ", ".join(f"{k}={v}" for k, v in a.items() if v is not None)
               + f"; idle {e['idle_w']:g} W and TDP {e['tdp_w']:g} W per chip, chip_overhead "
                 f"{e['chip_overhead']:.3g} (see --energy)")


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


@cli.command()
@click_options((*DEPLOYMENT, *WORKLOAD))
@click.option("--vary", "vary", multiple=True, metavar="KEY=VALUES",
              help="An axis: KEY=A..B (doubling), A..B:N (N geometric steps) or a,b,c; values absolute (SI) or "
                   "ratios to the base (2x). Keys: dram_bandwidth, dram_capacity, sram_bytes, sram_bandwidth, clock, "
                   "compute, compute_units, tdp, price, process_nm, fp4_units, batch, isl, osl (repeatable).")
@click.option("--plot", metavar="FILE.png", help="Write a tornado chart (needs the plotting extra).")
@click.option("--output", type=OUTPUT, default="table", show_default=True)
def whatif(vary: tuple[str, ...], plot: str | None, output: str, **kw: Any) -> None:
    """Sweep a chip's or design's figures: tokens/s, TPOT, TTFT, J/token, USD/Mtok and what binds, and a tornado."""
    from infercast.documents import whatif_document

    if plot:
        from infercast.files import check_writable
        from infercast.whatif import pyplot

        pyplot()  # a missing extra or an unwritable file fails before the sweep, not after it
        check_writable(plot, force=True, flag="--plot")
    doc = whatif_document(list(vary), **resolve_kwargs(kw), **kw)
    if plot:
        from infercast.whatif import plot_tornado

        plot_tornado(doc, plot)
    if output == "json":
        _json(doc)
        return
    if output == "csv":
        click.echo(_csv(doc["points"]), nl=False)
        return
    _whatif_tables(doc)


def _whatif_tables(doc: dict[str, Any]) -> None:
    w, b = doc["workload"], doc["base"]
    click.echo(f"{doc['model']} on {doc['hardware']}{' (design)' if doc['design'] else ''}: batch {w['batch']}, "
               f"isl {w['isl']}, osl {w['osl']}; base: {_fmt(b['tokens_per_s'], ' tokens/s')}, TPOT "
               f"{_fmt(b['tpot_s'], ' ms', 1e-3)}, TTFT {_fmt(b['ttft_s'], ' ms', 1e-3)}, "
               f"{_fmt(b['joules_per_token'], ' J/token')}, USD {_fmt(b['usd_per_million_tokens'])}/Mtok, "
               f"{b['binding']}-bound")
    names = [a["name"] for a in doc["axes"]]
    shown = doc["points"][:200]
    _print_rows([{**{n: p[n] for n in names}, "tokens/s": p["tokens_per_s"], "TPOT ms": _ms(p["tpot_s"]),
                  "TTFT ms": _ms(p["ttft_s"]), "J/token": p["joules_per_token"],
                  "USD/Mtok": p["usd_per_million_tokens"], "binds": p["binding"],
                  "decode": p["decode_bound"], "prefill": p["prefill_bound"]} for p in shown], "table")
    if len(doc["points"]) > len(shown):
        click.echo(f"{len(shown)} of {len(doc['points'])} points shown; --output csv gives all")

    def pct(x):
        return "-" if x is None else f"{100 * x:+.0f}%"

    rows = []
    for t in doc["tornado"]:
        row = {"axis": t["axis"], "range": f"{t['low']} .. {t['high']}"}
        for m, label in (("tpot_s", "TPOT"), ("ttft_s", "TTFT"), ("joules_per_token", "J/token"),
                         ("usd_per_million_tokens", "USD/Mtok")):
            e = t[f"{m}_elasticity"]
            row[label] = f"{pct(t[f'{m}_change_low'])} / {pct(t[f'{m}_change_high'])}" + (
                f" (e {e:+.2f})" if e is not None else "")
        row["binds"] = f"{t['binding_low']} / {t['binding_high']}"
        rows.append(row)
    click.echo("sensitivity (one axis at a time, the others at the base): change at the low / high end, "
               "elasticity e = d ln metric / d ln axis")
    _print_rows(rows, "table")


def _ms(x: float | None) -> float | None:
    return None if x is None else x * 1e3


@cli.group()
def hardware() -> None:
    """The chip catalog."""


@hardware.command("list")
@click.option("--output", type=OUTPUT, default="table", show_default=True)
def hardware_list(output: str) -> None:
    """List the chips with their headline figures."""
    from infercast.documents import chips_document

    _print_rows(chips_document(), output)


@hardware.command("systems")
@click.option("--output", type=OUTPUT, default="table", show_default=True)
def hardware_systems(output: str) -> None:
    """List the named systems: chips per node and the links between them."""
    from infercast.documents import systems_document

    _print_rows(systems_document(), output)


@hardware.command("designs")
@click.option("--output", type=OUTPUT, default="table", show_default=True)
def hardware_designs(output: str) -> None:
    """List the shipped chip designs with the figures derived from them (peaks, area, price, TDP)."""
    from infercast.documents import designs_document

    _print_rows(designs_document(), output)


@hardware.command("show")
@click.argument("name")
@click.option("--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
def hardware_show(name: str, output: str) -> None:
    """Show one chip's catalog entry with every source (or the chip a design derives)."""
    from infercast.documents import chip_document

    data = chip_document(name)
    if output == "json":
        _json(data)
    else:
        import yaml

        click.echo(yaml.safe_dump(data, sort_keys=False), nl=False)


@cli.group()
def models() -> None:
    """The model presets."""


@models.command("list")
@click.option("--output", type=OUTPUT, default="table", show_default=True)
def models_list(output: str) -> None:
    """List the presets with their size."""
    from infercast.documents import models_document

    _print_rows(models_document(), output)


@models.command("show")
@click.argument("name")
@click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def models_show(name: str, output: str) -> None:
    """Show a model's normalised spec, parameter counts and KV bytes per token."""
    from infercast.documents import model_document

    data = model_document(name)
    if output == "json":
        _json(data)
    else:
        _print_rows([{"field": k, "value": v} for k, v in data.items()], "table")


@cli.command()
@click.option("--output", type=OUTPUT, default="table", show_default=True)
def claims(output: str) -> None:
    """Each seed claim C1-C20: the tool's computed figures and a verdict."""
    from infercast.documents import claims_document

    rows = claims_document()
    if output == "json":
        _json(rows)
    else:
        _print_rows([{**r, "figures": "; ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                for k, v in r["figures"].items())} for r in rows], output)


@cli.command()
@click.option("--data", default="public", show_default=True, metavar="FILE.csv",
              help="Measured-data CSV (format: docs/data-formats.md); 'public' is the bundled copy of measured-public.csv "
                   "(770 rows).")
@click.option("--efficiency", "efficiency", multiple=True, metavar="KEY=VALUE",
              help="Override an efficiency parameter for every chip (repeatable).")
@click.option("--calibration", metavar="PROFILE.yaml", help="Calibration profile [the shipped fit].")
@click.option("--output", type=OUTPUT, default="table", show_default=True)
def validate(data: str, efficiency: tuple[str, ...], calibration: str | None, output: str) -> None:
    """Predict every row of a measured CSV; report signed errors and median/p90 error by group.

    Recognises the serving, training, vision/encoder (measured-vision-encoder.csv) and offload
    (measured-offload.csv) formats. A training CSV ('training' is the bundled measured-training.csv) is
    predicted by the training model, under the shipped training fit or a --calibration profile of
    ``calibrate --fit`` on one."""
    from infercast.validate import summarize
    from infercast.validate import validate as run
    from infercast.validate_training import is_training_data

    overrides = resolve_kwargs({"efficiency": efficiency}, EFFICIENCY)["efficiency"]
    if is_training_data(data):
        from infercast.training import load_training_calibration
        from infercast.validate_training import validate as run_training

        profile = load_training_calibration(calibration) if calibration else None
        results = run_training(data, overrides, profile)
    else:
        from infercast.validate import read_table
        from infercast.validate_offload import HEADER as OFFLOAD
        from infercast.validate_vision import HEADER as VISION

        _, names, lines = read_table(data)
        columns = set(names)
        if VISION <= columns or OFFLOAD <= columns:
            _validate_beyond([row for _, row in lines], VISION <= columns, output)
            return
        results = run(data, overrides, calibration)
    rows = [r.to_dict() for r in results]
    summary = summarize(results)
    if _emitted(rows, summary, output):
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


def _emitted(rows: list[dict[str, Any]], summary: dict[str, Any], output: str) -> bool:
    """validate's rows and summary as JSON, or its rows as CSV; False for a table (the caller's)."""
    if output == "json":
        _json({"rows": rows, "summary": summary})
    elif output == "csv":
        click.echo(_csv(rows), nl=False)
    return output != "table"


def _validate_beyond(rows: list[dict[str, Any]], vision: bool, output: str) -> None:
    """validate on measured-vision-encoder.csv or measured-offload.csv."""
    from infercast.validate import summarize

    if vision:
        from infercast.validate_vision import summarize_vision, validate_vision

        results = validate_vision(rows)
        summary = summarize_vision(rows, results)
    else:
        from infercast.validate_offload import summarize_offload, validate_offload

        results = validate_offload(rows)
        summary = summarize_offload(rows, results)
    table = [r.to_dict() for r in results]
    if _emitted(table, summary, output):
        return
    _print_rows([{"id": r["id"], "metric": r["metric"], "measured": r["measured"], "predicted": r["predicted"],
                  "error": r["error"], "skipped / note": r["skipped_reason"] or r["note"] or ""} for r in table], "table")
    if vision:
        groups = [(f"{kind} {g}", s) for kind in ("by_group", "by_group_source", "by_group_chip")
                  for g, s in summary[kind].items()]
        _print_rows([{"group": g, "n": s["in_sample"]["count"], "median |err|": s["in_sample"]["median_ape"],
                      "median err": s["in_sample"]["median_signed"],
                      "source left out": s["leave_one_source_out"]["median_ape"],
                      "chip left out": s["leave_one_chip_out"]["median_ape"]} for g, s in groups], "table")
        click.echo(f"Network profile: MLPerf BERT tokens per sample {summary['mlperf_bert_tokens']:.1f}, eager "
                   f"kernel dispatch {summary['eager_launch_s'] * 1e6:.3g} us (docs/vision.md)")
    else:
        groups = [("all", summary["all"])] + [(f"{k[3:]}={g}", s) for k in ("by_source", "by_framework", "by_hardware")
                                              for g, s in summary[k].items()]
        _print_rows([{"group": g, "n": s["count"], "median |err|": s["median_ape"], "median err": s["median_signed"]}
                     for g, s in groups], "table")
    done = sum(1 for r in results if r.predicted is not None)
    click.echo(f"{done} of {len(results)} rows predicted; skipped: " + "; ".join(
        f"{n} x {why}" for why, n in summary["skipped_reasons"].items()))


@cli.command()
@click.option("--fit", "fit", metavar="FILE.csv",
              help="Fit the efficiency parameters to a measured CSV ('public': the bundled one).")
@click.option("--local", is_flag=True, help="Measure this machine, write a chip YAML, run a reference transformer.")
@click.option("--start", default="prior", show_default=True,
              help="Profile the fit starts from and shrinks towards: prior, default or a profile YAML.")
@click.option("--no-loso", is_flag=True, help="Skip the held-out fits (leave one source, chip or framework out): "
                                             "much faster.")
@click.option("--iterations", type=click.IntRange(1, 1000), default=60, show_default=True,
              help="Most steps of the full fit (SciPy's max_nfev; each step's Jacobian re-prices the rows once per "
                   "group of parameters besides).")
@click.option("--fold-evaluations", type=click.IntRange(0, 100), default=0, show_default=True,
              help="Refit each held-out fold for this many least-squares iterations after its Gauss-Newton step.")
@click.option("--quick", is_flag=True, help="With --local: a run under two minutes.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="With --local: the device to measure [cuda if any].")
@click.option("--output", "out_file", metavar="FILE.yaml",
              help="Where to write the profile (--fit) or the chip YAML (--local); never over a file without --force.")
@click.option("--force", is_flag=True, help="Replace --output if it exists.")
@click.option("--report", type=click.Choice(["table", "json"]), default="table", show_default=True)
def calibrate(fit: str | None, local: bool, start: str, no_loso: bool, iterations: int, fold_evaluations: int,
              quick: bool, device: str | None, out_file: str | None, force: bool, report: str) -> None:
    """Fit efficiency parameters to measurements (--fit), or measure this machine (--local)."""
    if bool(fit) == local:
        raise InfercastError("calibrate: give exactly one of --fit FILE.csv or --local")
    if local:
        from infercast.localbench import run_local

        result = run_local(quick=quick, output=out_file, force=force, device=device,
                           progress=lambda m: click.echo(m, err=True))
        if report == "json":
            _json(result.to_dict())
        else:
            _print_rows(result.to_dict()["rows"], "table")
        return
    from infercast.calibrate import calibrate as run
    from infercast.files import check_writable, write_new
    from infercast.validate_training import is_training_data

    if out_file:  # fail before a long fit, not after it
        check_writable(out_file, force)
    if is_training_data(fit):
        from infercast.validate_training import calibrate as fit_training
        from infercast.validate_training import to_yaml

        profile, _ = fit_training(fit, progress=lambda m: click.echo(m, err=True))
        if out_file:
            write_new(out_file, to_yaml(profile), force=force)
            click.echo(f"wrote {out_file}", err=True)
        record = profile.fit
        if report == "json":
            _json(record)
            return
        _print_rows([{"errors": kind, "group": g, "n": st["count"], "median |err|": st["median_ape"],
                      "p90 |err|": st["p90_ape"]}
                     for kind in ("in_sample", "leave_one_source_out")
                     for g, st in {"all": record[kind]["all"], **{f"metric={k}": v for k, v in
                                                                   record[kind]["by_metric"].items()},
                                   **{f"source={k}": v for k, v in record[kind]["by_group"].items()},
                                   **{f"chip={k}": v for k, v in record[kind]["by_hardware"].items()}}.items()],
                    "table")
        return
    result = run(fit, start=start, loso=not no_loso, max_nfev=iterations, fold_evaluations=fold_evaluations,
                 progress=lambda m: click.echo(m, err=True))
    if out_file:
        write_new(out_file, result.profile.to_yaml(), force=force)
        click.echo(f"wrote {out_file}", err=True)
    record = result.profile.fit
    if report == "json":
        _json(record)
        return
    rows = []
    for kind in ("in_sample", "leave_one_source_out", "leave_one_chip_out", "leave_one_framework_out"):
        if kind not in record:
            continue
        groups = {"all": record[kind]["all"], **{f"{by}={k}": v for by in ("metric", "source", "framework", "vendor")
                                                 for k, v in record[kind][f"by_{by}"].items()}}
        rows += [{"errors": kind, "group": g, "n": s["count"], "median |err|": s["median_ape"],
                  "p90 |err|": s["p90_ape"]} for g, s in groups.items()]
    _print_rows(rows, "table")


def _print_rows(rows: list[dict[str, Any]], output: str) -> None:
    if output == "json":
        _json(rows)
    elif output == "csv":
        click.echo(_csv(rows), nl=False)
    else:
        from infercast.display import console, table

        t = table(*rows[0].keys()) if rows else table()
        for row in rows:
            t.add_row(*("-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)
                        for v in row.values()))
        console().print(t)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except BrokenPipeError:  # the reader left (| head): stop quietly, as a command-line tool does
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
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
