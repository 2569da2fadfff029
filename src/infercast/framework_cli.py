"""``infercast frameworks``: the inference framework profiles ``--framework`` picks, and what the calibration
fitted for each."""

from __future__ import annotations

from typing import Any

import click


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
                     "gpu_memory_utilization": e.gpu_memory_utilization.value})
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
            "description": fw.description, "profile": ref.profile.model_dump(exclude_none=True),
            "versions": [v.model_dump() for v in fw.versions],
            "fitted": {"framework": profile.frameworks.get(ref.name, {}), "by_family": cells}}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def frameworks() -> None:
    """The inference framework profiles (--framework NAME[@VERSION]): list, show."""


@frameworks.command("list")
@click.option("--output", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
def frameworks_list(output: str) -> None:
    """List the framework profiles and what each sets."""
    from infercast.cli import _print_rows

    _print_rows(frameworks_document(), output)


@frameworks.command("show")
@click.argument("name", metavar="NAME[@VERSION]")
@click.option("--calibration", metavar="PROFILE.yaml", help="Calibration profile [the shipped fit].")
@click.option("--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
def frameworks_show(name: str, calibration: str | None, output: str) -> None:
    """Show a framework's profile at a version, its sources, and its fitted values."""
    from infercast.cli import _json

    data = framework_document(name, calibration)
    if output == "json":
        _json(data)
    else:
        import yaml

        click.echo(yaml.safe_dump(data, sort_keys=False, width=110), nl=False)
