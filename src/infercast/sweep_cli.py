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
        from rich.console import Console
        from rich.table import Table

        table = Table(*names)
        for r in records[:limit]:
            table.add_row(*("-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()))
        Console().print(table)
        if len(records) > limit:
            click.echo(f"({len(records) - limit:,} more rows: raise --limit or use --output csv)")
