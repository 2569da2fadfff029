"""``infercast sweep | query | search | pareto``: many configurations at once.

The sweep's flags are ``resolve()``'s options (``infercast.options``) taking lists and ranges; the
search's are the question a capacity planner asks. The commands only parse and print: the work is
in ``infercast.sweep``, ``infercast.query`` and ``infercast.search``.
"""

from __future__ import annotations

import json
from typing import Any

import click

from infercast.errors import InfercastError
from infercast.options import DEPLOYMENT

OUTPUT = click.Choice(["table", "json", "csv"])
_LISTS = tuple(o for o in DEPLOYMENT if not o.pairs and o.type is not bool and o.name not in ("pp_stages", "calibration"))
_FIXED = tuple(o for o in DEPLOYMENT if o not in _LISTS and o.name not in ("efficiency", "cost"))


def _json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, allow_nan=False))


def _sweep_options(f):
    """The grid's flags: every categorical option as a list, the numeric axes, the what-ifs, the fixed options."""
    for o in reversed(_FIXED):
        if o.type is bool:
            f = click.option(o.flag, o.name, is_flag=True, default=None, help=o.help)(f)
        elif o.pairs:
            f = click.option(o.flag, o.name, multiple=True, metavar=o.metavar, help=o.help)(f)
        else:
            f = click.option(o.flag, o.name, metavar=o.metavar, help=o.help)(f)
    for group, what in (("cost", "CostOptions"), ("efficiency", "Efficiency"), ("rates", "ChipRates")):
        f = click.option(f"--{group}", group, multiple=True, metavar="KEY=LIST",
                         help=f"What-if axis over a {what} field, e.g. --{group} "
                              f"{ {'rates': 'peak_scale=0.5,1,2', 'efficiency': 'bandwidth=0.6..0.9:0.1', 'cost': 'pue=1.1,1.4'}[group] }"
                              f" (broadcast, repeatable).")(f)
    for name, text in (("osl", "Output tokens per sequence [128]."), ("isl", "Prompt tokens per sequence [128]."),
                       ("batch", "Sequences processed together (all replicas) [1].")):
        f = click.option(f"--{name}", name, metavar="LIST", help=f"{text} A list or range: 1,2,4 or 1..512:x2.")(f)
    for o in reversed(_LISTS):
        f = click.option(o.flag, o.name, metavar="LIST", help=f"{o.help} A comma list (or a range: 1..8:x2).")(f)
    return f


@click.command()
@_sweep_options
@click.option("--spec", metavar="SPEC.yaml", help="The grid as YAML: option names as keys (snake_case), lists or "
                                                   "ranges as values; flags given beside it replace its keys.")
@click.option("--out", required=True, metavar="RESULT.parquet|RESULT.csv",
              help="Dataset folder to write (part files; Parquet unless it ends in .csv).")
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), help="Part format [from --out].")
@click.option("--executor", type=click.Choice(["serial", "process", "ray"]), default="serial", show_default=True,
              help="Who computes the chunks: this process, a process pool, or Ray (extra [ray]).")
@click.option("--workers", type=int, help="Processes or Ray CPUs [the machine's cores].")
@click.option("--ray-address", metavar="ADDRESS", help="An existing Ray cluster [a local runtime].")
@click.option("--resume", is_flag=True, help="Finish a sweep that was stopped (the same flags, the same --out).")
@click.option("--force", is_flag=True, help="Replace the sweep already at --out.")
@click.option("--max-configs", type=int, help="Refuse a larger grid without --yes [10^8].")
@click.option("--yes", is_flag=True, help="Run a grid above --max-configs.")
@click.option("--chunk-rows", type=int, help="Rows per part file [1,000,000].")
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
@click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="The summary's format.")
def sweep(spec: str | None, out: str, fmt: str | None, executor: str, workers: int | None, ray_address: str | None,
          resume: bool, force: bool, max_configs: int | None, yes: bool, chunk_rows: int | None, no_progress: bool,
          output: str, **flags: Any) -> None:
    """Evaluate a grid of deployments and workloads into a Parquet (or CSV) dataset, one row per configuration."""
    from infercast import sweep as sw

    values = sw.load_spec(spec) if spec else {}
    from_spec = frozenset(values)
    given = {k: v for k, v in flags.items() if v is not None and v != ()}
    values.update(given)
    grid = sw.make_grid(values, chunk_rows=chunk_rows or sw.DEFAULT_CHUNK_ROWS, spec=spec,
                        from_spec=from_spec - given.keys())
    ex = sw.make_executor(executor, workers=workers, ray_address=ray_address)
    kw = dict(fmt=fmt, executor=ex, resume=resume, force=force, max_configs=max_configs or sw.MAX_CONFIGS, yes=yes)
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:  # started once the checks have passed: a refused sweep prints no bar
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            bar = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("configurations"),
                           TimeRemainingColumn(), console=Console(stderr=True))
            bar.start()
            bar.add_task("sweep", total=total)
        bar.update(bar.task_ids[0], completed=done)

    try:
        result = sw.run_sweep(grid, out, progress=None if no_progress else progress, **kw)
    finally:
        if bar is not None:
            bar.stop()
    doc = result.to_dict()
    if output == "json":
        _json(doc)
        return
    click.echo(f"wrote {doc['rows']:,} rows of {doc['configurations']:,} configurations to {out} "
               f"({doc['bytes'] / 1e6:,.1f} MB in {doc['chunks']} part {'file' if doc['chunks'] == 1 else 'files'}) in {doc['elapsed_s']:.1f} s"
               + (f", {doc['rows_per_s']:,.0f} rows/s" if doc["rows_per_s"] else "")
               + (f"; {doc['resumed_chunks']} parts were already there" if doc["resumed_chunks"] else ""))
    for why, n in doc["skipped"].items():
        click.echo(f"skipped {n:,}: {why}")


@click.command()
@click.argument("result", metavar="RESULT")
@click.argument("sql", metavar="SQL")
@click.option("--output", type=OUTPUT, default="table", show_default=True)
@click.option("--limit", type=int, default=50, show_default=True, help="Rows a table shows (json and csv: all).")
def query(result: str, sql: str, output: str, limit: int) -> None:
    """Run SQL (DuckDB) over a sweep's dataset, the view 'result': "SELECT hardware, min(\\"decode.tpot_s\\")
    FROM result GROUP BY 1"."""
    from infercast.query import plain, run_query

    names, rows = run_query(result, sql)
    records = [{n: plain(v) for n, v in zip(names, row, strict=True)} for row in rows]
    if output == "json":
        _json(records)
    elif output == "csv":
        import csv
        import io

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([["" if v is None else v for v in r.values()] for r in records])
        click.echo(buf.getvalue(), nl=False)
    else:
        from rich.table import Table

        table = Table(*names)
        for r in records[:limit]:
            table.add_row(*("-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()))
        _console().print(table)
        if len(records) > limit:
            click.echo(f"({len(records) - limit:,} more rows: raise --limit or use --output csv)")


def _console():
    """A console for wide tables: the terminal's width, or 200 columns when the output is a file or a pipe."""
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


def _table(rows: list[dict[str, Any]], title: str | None = None) -> None:
    from rich.table import Table

    table = Table(*(rows[0].keys() if rows else ()), title=title)
    for r in rows:
        table.add_row(*("-" if v is None else f"{v:,.4g}" if isinstance(v, float) else str(v) for v in r.values()))
    _console().print(table)


def _fmt_ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:,.4g}"


def _short(r: dict[str, Any]) -> dict[str, Any]:
    """A ranked entry as a table row: milliseconds, the plan in one cell."""
    ep = f" ep{r['ep']}" if r["ep"] > 1 else ""
    return {"chip": r["hardware"], "framework": r["framework"], "chips": r["num_chips"],
            "plan": f"tp{r['tp']} pp{r['pp']}{ep} x{r['dp']}",
            "w/a/kv": f"{r['weight_dtype']}/{r['act_dtype']}/{r['kv_dtype']}", "conc.": r["concurrency"],
            "TTFT p99 ms": _fmt_ms(r["ttft_p99_s"]), "TPOT p99 ms": _fmt_ms(r["tpot_p99_s"]),
            "tok/s/chip": r["output_tokens_per_s_per_chip"], "tok/s/user": r["output_tokens_per_s_per_user"],
            "USD/Mtok": r["usd_per_million_tokens"], "TCO USD": r["tco_usd"], "J/tok": r["joules_per_token"],
            "binding": r["binding"], "sim": "yes" if r["simulated"] else "no"}


@click.command()
@click.option("--model", required=True, help="Preset id or config.json path.")
@click.option("--isl", type=int, required=True, help="Prompt tokens per request.")
@click.option("--osl", type=int, required=True, help="Output tokens per request.")
@click.option("--qps", type=float, help="Requests per second to serve (Poisson arrivals).")
@click.option("--concurrency", type=int, help="Requests in flight (a closed-loop client), instead of --qps.")
@click.option("--slo", required=True, metavar="ttft_p99:MS,tpot_p99:MS", help="Latency targets in milliseconds.")
@click.option("--hardware", default="all", show_default=True, metavar="LIST|all", help="Chips to consider.")
@click.option("--dtype", metavar="LIST", help="Precisions (weights and activations; FP4 keeps an FP8 KV cache) "
                                              "[bf16,fp8,fp4, where the chip has the units].")
@click.option("--framework", metavar="LIST|all", help="Serving engines to search over, NAME[@VERSION] each (vllm, "
                                                     "sglang, trtllm, atom, ...; 'all': every one, on the chips it "
                                                     "runs on) [generic: no framework's graphs or kernels].")
@click.option("--max-chips", type=int, default=4096, show_default=True, help="Most chips in the deployment.")
@click.option("--objective", type=click.Choice(["usd_per_mtok", "tco_usd", "chips", "joules_per_token"]),
              default="usd_per_mtok", show_default=True, help="What the ranking minimises.")
@click.option("--usd-per-chip-hour", "prices", metavar="CHIP=P,...", multiple=True,
              help="Cloud price per chip-hour; chips without one are priced as owned hardware at their catalog "
                   "price, or rejected when they have none.")
@click.option("--top-k", type=int, default=5, show_default=True, help="Candidates confirmed by the simulator.")
@click.option("--num-prompts", type=int, default=1000, show_default=True, help="Requests per simulation.")
@click.option("--pareto", "show_pareto", is_flag=True, help="Show the trade-off frontier of the qualifying "
                                                            "deployments (objective vs tokens/s per user) too.")
@click.option("--output", type=OUTPUT, default="table", show_default=True)
def search(model: str, isl: int, osl: int, qps: float | None, concurrency: int | None, slo: str, hardware: str,
           dtype: str | None, framework: str | None, max_chips: int, objective: str, prices: tuple[str, ...],
           top_k: int, num_prompts: int, show_pareto: bool, output: str) -> None:
    """The cheapest deployments of a model that serve a load within latency SLOs, confirmed by the simulator."""
    from infercast.documents import search_document

    doc = search_document(model=model, isl=isl, osl=osl, qps=qps, concurrency=concurrency, slo=slo,
                          hardware=hardware, dtype=dtype, framework=framework, max_chips=max_chips,
                          objective=objective, usd_per_chip_hour=prices or None, top_k=top_k, num_prompts=num_prompts)
    if output == "json":
        _json(doc)
        return
    if output == "csv":
        _csv(doc["ranked"] + ([{**r, "pareto": True} for r in doc["pareto"]] if show_pareto else []))
        return
    load = f"{qps:g} requests/s (Poisson)" if qps is not None else f"{concurrency} requests in flight"
    slos = ", ".join(f"{k.removesuffix('_s')} {v * 1e3:g} ms" for k, v in doc["slo"].items())
    click.echo(f"{doc['model']}: isl {isl}, osl {osl}, {load}; SLO {slos}; objective {objective}; "
               f"{doc['candidates_evaluated']:,} candidates (chip x framework x plan x precision)")
    if doc["ranked"]:
        _table([{"#": i + 1, **_short(r)} for i, r in enumerate(doc["ranked"])])
    if show_pareto and doc["pareto"]:
        _table([_short(r) for r in doc["pareto"]], title=f"frontier: {objective} against tokens/s per user "
                                                          f"(analytic)")
    for why, n in doc["rejected"].items():
        click.echo(f"rejected {n:,}: {why}")
    for note in doc["notes"]:
        click.echo(f"note: {note}")


def _csv(rows: list[dict[str, Any]]) -> None:
    import csv
    import io

    buf = io.StringIO()
    names = list(dict.fromkeys(k for r in rows for k in r))
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    click.echo(buf.getvalue(), nl=False)


@click.command()
@click.option("--model", required=True, help="Preset id or config.json path.")
@click.option("--isl", type=int, required=True, help="Prompt tokens per request.")
@click.option("--osl", type=int, required=True, help="Output tokens per request.")
@click.option("--hardware", default="all", show_default=True, metavar="LIST|all", help="Chips to consider.")
@click.option("--dtype", metavar="LIST", help="Precisions [bf16,fp8,fp4, where the chip has the units].")
@click.option("--tp", metavar="LIST", help="Tensor-parallel degrees to keep [1,2,4,8].")
@click.option("--framework", metavar="LIST|all", help="Serving engines, NAME[@VERSION] each ('all': every one, on "
                                                     "the chips it runs on) [generic].")
@click.option("--usd-per-chip-hour", "prices", metavar="CHIP=P,...", multiple=True,
              help="Cloud price per chip-hour (else owned hardware at the catalog price, or no cost).")
@click.option("--group-by", type=click.Choice(["hardware", "precision", "framework", "deployment"]),
              default="hardware", show_default=True, help="One frontier per chip, per chip and precision, per chip "
                                                          "and framework, or per chip, plan, precision and framework.")
@click.option("--out", metavar="FILE.parquet|FILE.csv|FILE.json", help="Write the points to a file (by its "
                                                                        "extension) instead of printing them.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@click.option("--output", type=OUTPUT, default="table", show_default=True)
def pareto(model: str, isl: int, osl: int, hardware: str, dtype: str | None, tp: str | None, framework: str | None,
           prices: tuple[str, ...], group_by: str, out: str | None, force: bool, output: str) -> None:
    """Frontiers of output tokens/s per chip, and of USD per million tokens, against tokens/s per user."""
    from infercast.documents import pareto_document, pareto_rows

    if out:
        from infercast.files import check_writable

        check_writable(out, force, "--out")
    tps = None
    if tp:
        from infercast.sweep import parse_values

        tps = list(parse_values("--tp", tp, int))
    doc = pareto_document(model=model, isl=isl, osl=osl, hardware=hardware, dtype=dtype, tp=tps, framework=framework,
                          usd_per_chip_hour=prices or None, group_by=group_by)
    rows = pareto_rows(doc)
    if out:
        _write_points(out, doc, rows, force)
        click.echo(f"wrote {len(rows):,} frontier points of {len(doc['frontiers'])} frontiers to {out}", err=True)
        return
    if output == "json":
        _json(doc)
    elif output == "csv":
        _csv(rows)
    else:
        summary = []
        for f in doc["frontiers"]:
            pts, metric = f["points"], f["metric"]
            best = max(pts, key=lambda p: p[metric]) if metric.endswith("per_chip") else min(pts, key=lambda p: p[metric])
            summary.append({"group": f["group"], "metric": metric, "points": len(pts),
                            "tok/s/user range": f"{pts[0]['output_tokens_per_s_per_user']:,.3g}.."
                                                f"{pts[-1]['output_tokens_per_s_per_user']:,.3g}",
                            "best": best[metric], "at tok/s/user": best["output_tokens_per_s_per_user"],
                            "plan": f"tp{best['tp']} pp{best['pp']} {best['weight_dtype']} {best['framework']} "
                                    f"c{best['concurrency']}"})
        _table(summary, title=f"{doc['model']}, isl {isl}, osl {osl}: frontiers (use --output csv|json or --out for "
                              f"the points)")


def _write_points(out: str, doc: dict[str, Any], rows: list[dict[str, Any]], force: bool) -> None:
    from infercast.files import write_new

    suffix = out.lower().rsplit(".", 1)[-1]
    if suffix == "json":
        write_new(out, json.dumps(doc, indent=1, allow_nan=False) + "\n", force=force, flag="--out")
    elif suffix == "csv":
        import csv
        import io

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for r in rows for k in r)), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_new(out, buf.getvalue(), force=force, flag="--out")
    elif suffix == "parquet":
        import os
        import tempfile
        from pathlib import Path

        from infercast.sweep import require_pyarrow

        pa = require_pyarrow()
        import pyarrow.parquet as pq

        target = Path(out)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        try:
            pq.write_table(pa.Table.from_pylist(rows), tmp)
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    else:
        raise InfercastError(f"--out {out}: give a .parquet, .csv or .json file")


def _umask() -> int:
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    return mask
