"""The ``infercast`` command line. Bad input prints one line naming the field and exits 2."""

from __future__ import annotations

import csv
import io
import json
import sys
from typing import Any

import click

from infercast.errors import InfercastError

from infercast.options import AUTO, DEPLOYMENT, EFFICIENCY, WORKLOAD, click_options, resolve_kwargs

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
@click_options((*DEPLOYMENT, *WORKLOAD, AUTO))
@click.option("--output", type=OUTPUT, default="table", show_default=True)
@click.option("--breakdown", is_flag=True, help="Show the per-operator table (op, phase, FLOPs, bytes, time, bound).")
def estimate(output: str, breakdown: bool, **kw: Any) -> None:
    """Estimate memory, TTFT, TPOT, throughput, energy and cost of a model on a chip or a system."""
    from infercast.documents import estimate_document

    result = estimate_document(**resolve_kwargs(kw), **kw)
    if output == "json":
        _json(result)
    elif output == "csv":
        click.echo(_csv(result["breakdown"]) if breakdown else _csv([_flatten(result)]), nl=False)
    else:
        _estimate_table(result, breakdown)


_COMPARE = tuple(o for o in DEPLOYMENT if o.name not in ("hardware", "num_chips", "system", "nodes"))


@cli.command()
@click_options((*_COMPARE, *WORKLOAD))
@click.option("--systems", required=True, help="Comma-separated systems or chips (chip ids use --num-chips).")
@click.option("--num-chips", type=int, help="Chips for entries that name a chip rather than a system.")
@click.option("--output", type=OUTPUT, default="table", show_default=True)
def compare(systems: str, num_chips: int | None, output: str, **kw: Any) -> None:
    """Run one model and workload on two or more systems, side by side."""
    from infercast.documents import compare_document

    rows = compare_document(systems.split(","), num_chips=num_chips, **resolve_kwargs(kw, _COMPARE), **kw)
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


@hardware.command("show")
@click.argument("name")
@click.option("--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
def hardware_show(name: str, output: str) -> None:
    """Show one chip's catalog entry with every source."""
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
    """Predict every row of a measured CSV; report signed errors and median/p90 error by group."""
    from infercast.validate import summarize
    from infercast.validate import validate as run

    results = run(data, resolve_kwargs({"efficiency": efficiency}, EFFICIENCY)["efficiency"], calibration)
    rows = [r.to_dict() for r in results]
    summary = summarize(results)
    if output == "json":
        _json({"rows": rows, "summary": summary})
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

    if out_file:  # fail before a long fit, not after it
        check_writable(out_file, force)
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
