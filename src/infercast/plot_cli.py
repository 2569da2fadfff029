"""``infercast plot KIND ... --out FILE.png|svg|html``: a figure of a command's result, for reports and papers.

Each kind takes the flags of the command whose result it draws (``plot roofline`` takes estimate's,
``plot timeline`` simulate's, ``plot pareto`` pareto's), so a plot is its command line with ``plot KIND``
in front and ``--out`` behind. The figures are ``infercast.plots``'; the files ``infercast.render``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from infercast.cli import compare, estimate, validate
from infercast.render import write_figure
from infercast.serving.cli import simulate
from infercast.sweep_cli import pareto

OUT = click.Option(["--out"], required=True, metavar="FILE.png|FILE.svg|FILE.html",
                   help="The file to write: PNG or SVG (matplotlib), or HTML (Plotly, interactive, offline).")
FORCE = click.Option(["--force"], is_flag=True, help="Replace --out if it exists.")
NOT_INPUTS = ("output", "breakdown", "out", "force", "timeline_csv")
"""The source command's flags that choose its printing or its files, not its result."""


def _params(source: click.Command) -> list[click.Parameter]:
    return [p for p in source.params if p.name not in NOT_INPUTS] + [OUT, FORCE]


def _kind(name: str, source: click.Command, help: str, draw: Callable[..., dict[str, Any]]) -> None:
    """A ``plot`` subcommand taking ``source``'s flags; ``draw(flags, ctx)`` returns the figure."""

    def run(out: str, force: bool, **flags: Any) -> None:
        figure = draw(flags, click.get_current_context())
        write_figure(figure, out, force=force)
        click.echo(f"wrote {out}", err=True)

    plot.add_command(click.Command(name, callback=run, help=help, params=_params(source)))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def plot() -> None:
    """Draw a command's result to a PNG, SVG or HTML file: roofline, breakdown, memory, energy, compare,
    timeline, latency, pareto, validation."""


def _estimate_figure(key: str) -> Callable[..., dict[str, Any]]:
    def draw(flags: dict[str, Any], ctx: click.Context) -> dict[str, Any]:
        from infercast.views import estimate_view

        figures = estimate_view(flags)["figures"]
        if key not in figures:
            from infercast.errors import InfercastError

            raise InfercastError(f"plot {key}: the estimate has no {key} figure (the chip's power is unknown)")
        return figures[key]

    return draw


for _name, _help in (("roofline", "Every operator of prefill and decode on the chip's roofline, sized by its time."),
                     ("breakdown", "Time per chip by operator and phase (stacked bars)."),
                     ("memory", "Memory per chip (weights, KV cache, activations, runtime) against capacity."),
                     ("energy", "Energy per output token: DRAM, SRAM, arithmetic, links, static, chip overhead.")):
    _kind(_name, estimate, f"{_help} Takes estimate's flags.", _estimate_figure(_name))


def _draw_compare(flags: dict[str, Any], ctx: click.Context) -> dict[str, Any]:
    from infercast.views import compare_view

    return compare_view(flags)["figures"]["compare"]


_kind("compare", compare, "One model on two or more systems side by side: TTFT, TPOT, throughput, cost, energy, "
                           "memory. Takes compare's flags.", _draw_compare)


def _simulation_figure(key: str) -> Callable[..., dict[str, Any]]:
    def draw(flags: dict[str, Any], ctx: click.Context) -> dict[str, Any]:
        from click.core import ParameterSource

        from infercast.views import simulate_view

        more = flags.pop("more_goodput", ())
        flags["goodput"] = tuple(flags.get("goodput") or ()) + tuple(more)
        given = {k for k in flags if ctx.get_parameter_source(k) not in (ParameterSource.DEFAULT, None)}
        figures = simulate_view(flags, given)["figures"]
        if key not in figures:
            from infercast.errors import InfercastError

            raise InfercastError(f"plot {key}: no rate met the SLOs, so there is no run to draw")
        return figures[key]

    return draw


_kind("timeline", simulate, "Queue length, running batch and KV-cache use over a simulated run. Takes simulate's "
                             "flags.", _simulation_figure("timeline"))
_kind("latency", simulate, "The TTFT and TPOT distributions of a simulated run. Takes simulate's flags.",
      _simulation_figure("latency"))


def _draw_pareto(flags: dict[str, Any], ctx: click.Context) -> dict[str, Any]:
    from infercast.views import pareto_view

    return pareto_view(flags)["figures"]["pareto"]


_kind("pareto", pareto, "Tokens/s per chip and USD per million tokens against tokens/s per user, with InferenceX's "
                         "measured points. Takes pareto's flags.", _draw_pareto)


def _draw_validation(flags: dict[str, Any], ctx: click.Context) -> dict[str, Any]:
    from infercast.views import validation_view

    return validation_view(flags)["figures"]["validation"]


_kind("validation", validate, "Predicted against measured (log-log), coloured by source, with the ideal roofline's "
                               "predictions. Takes validate's flags.", _draw_validation)
