"""``infercast frameworks``: the inference framework profiles ``--framework`` picks, and what the calibration
fitted for each."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def frameworks() -> None:
    """The inference framework profiles (--framework NAME[@VERSION]): list, show."""


@frameworks.command("list")
@click.option("--output", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
def frameworks_list(output: str) -> None:
    """List the framework profiles and what each sets."""
    from infercast.cli import _print_rows
    from infercast.documents import frameworks_document

    _print_rows(frameworks_document(), output)


@frameworks.command("show")
@click.argument("name", metavar="NAME[@VERSION]")
@click.option("--calibration", metavar="PROFILE.yaml", help="Calibration profile [the shipped fit].")
@click.option("--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
def frameworks_show(name: str, calibration: str | None, output: str) -> None:
    """Show a framework's profile at a version, its sources, and its fitted values."""
    from infercast.cli import _json
    from infercast.documents import framework_document

    data = framework_document(name, calibration)
    if output == "json":
        _json(data)
    else:
        import yaml

        click.echo(yaml.safe_dump(data, sort_keys=False, width=110), nl=False)
