"""``infercast simulate``: a vLLM benchmark run on the simulator, with vLLM's flags and metric names."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import click

from infercast.errors import InfercastError
from infercast.options import DEPLOYMENT, PRICES, SAMPLING, click_options, resolve_kwargs

# infercast.cli registers this command at its end, so its helpers are imported when the command runs

DISTRIBUTIONS = click.Choice(["fixed", "uniform", "normal", "lognormal"])


SIMULATE = tuple(o for o in DEPLOYMENT if o not in PRICES and o.name not in ("max_num_batched_tokens", "micro_batches"))
"""The deployment's options (``infercast.options``), less prices and the token budget (an engine flag here)."""


def _options(f):
    options = [
        # the workload, as vLLM's benchmark_serving.py
        click.option("--request-rate", type=float, help="Mean requests per second (Poisson, or gamma with "
                                                        "--burstiness) [inf: all at once]."),
        click.option("--offline", is_flag=True, help="Send every request at t = 0 (the default without --request-rate)."),
        click.option("--num-prompts", type=int, default=1000, show_default=True, help="Requests to send."),
        click.option("--isl", type=int, default=1024, show_default=True, help="Mean prompt tokens."),
        click.option("--osl", type=int, default=128, show_default=True, help="Mean output tokens."),
        click.option("--isl-dist", type=DISTRIBUTIONS, default="fixed", show_default=True,
                     help="Distribution of prompt lengths around --isl."),
        click.option("--osl-dist", type=DISTRIBUTIONS, default="fixed", show_default=True,
                     help="Distribution of output lengths around --osl."),
        click.option("--length-spread", type=float, default=0.25, show_default=True,
                     help="Relative spread: uniform +-s, normal sd s x mean, lognormal sigma s."),
        click.option("--lengths", "lengths", metavar="FILE.csv", help="Draw (isl, osl) pairs from a CSV with "
                                                                      "columns isl,osl."),
        click.option("--trace", metavar="FILE.csv", help="Replay a CSV of arrival_s,isl,osl (replaces the synthetic "
                                                         "workload)."),
        click.option("--burstiness", type=float, default=1.0, show_default=True,
                     help="Gamma shape of the gaps (1 = Poisson)."),
        click.option("--max-concurrency", type=int, help="Most requests in flight (a closed-loop client)."),
        click.option("--prefix-len", type=int, default=0, show_default=True,
                     help="Leading prompt tokens every request shares."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random draw."),
        # the engine, as vLLM's engine arguments
        click.option("--max-num-seqs", type=int, help="Most requests running at once [the framework's: 256 for "
                                                      "vLLM and generic]."),
        click.option("--max-num-batched-tokens", type=int,
                     help="Token budget of a step [the framework's; vLLM V1: 8192 with chunked prefill, else "
                          "max(max-model-len, 2048)]."),
        click.option("--no-chunked-prefill", is_flag=True, help="Prefill-first scheduling (vLLM V0) instead of "
                                                                "chunked prefill (V1) [the framework's]."),
        click.option("--admission", type=click.Choice(["optimistic", "reserve"]),
                     help="Admit a request on its prompt's KV blocks and preempt when the cache runs out (vLLM, "
                          "SGLang), or only when its whole prompt and output fit (TensorRT-LLM's "
                          "GUARANTEED_NO_EVICT) [the framework's]."),
        click.option("--enable-prefix-caching", is_flag=True, help="Share the blocks of the common prompt prefix."),
        click.option("--block-size", type=int, default=16, show_default=True, help="Tokens per KV-cache block."),
        click.option("--max-model-len", type=int, help="Longest request [the model's context]."),
        click.option("--num-gpu-blocks-override", type=int,
                     help="KV-cache blocks per replica [from the memory model]."),
        click.option("--routing", type=click.Choice(["round-robin", "least-outstanding"]), default="round-robin",
                     show_default=True, help="How arrivals are spread over --dp replicas."),
        # what to report
        click.option("--goodput", multiple=True, metavar="METRIC:MS",
                     help="SLOs for goodput: ttft, tpot, e2el in ms, e.g. --goodput ttft:500 tpot:50."),
        click.option("--find-max-rate", is_flag=True, help="Bisect the highest --request-rate meeting --slo."),
        click.option("--slo", default="ttft_p99:2000,tpot_p99:200", show_default=True,
                     help="SLOs for --find-max-rate (MLPerf Llama-2-70B Server by default)."),
        click.option("--tolerance", type=float, default=0.01, show_default=True,
                     help="Relative width at which --find-max-rate stops."),
        click.option("--timeline-csv", metavar="FILE", help="Write every step (queue, batch, KV usage) as CSV."),
        click.option("--force", is_flag=True, help="Let --timeline-csv replace an existing file."),
        click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True),
    ]
    for option in reversed(options):
        f = option(f)
    return click_options((*SIMULATE, *SAMPLING))(f)


def _split(kw: dict[str, Any], given: set[str]) -> dict[str, Any]:
    """simulate() keyword options from the parsed flags. Only the workload flags the user gave (``given``)
    reach the library (the others keep their defaults there), so that it can refuse those --trace, --lengths
    or --find-max-rate would ignore."""
    from infercast.serving.workload import Workload

    kw = {**resolve_kwargs(kw, SIMULATE), **kw}
    for key in [k for k in kw if k in Workload.model_fields]:
        if key not in given:
            del kw[key]
    rate, offline = kw.pop("request_rate", None), kw.pop("offline")
    if rate is not None and offline:
        raise InfercastError("--offline sends every request at once; drop --request-rate (or --offline)")
    if offline or rate is not None:
        kw["request_rate"] = math.inf if offline else rate  # inf is offline too, as in vLLM
    if kw.pop("no_chunked_prefill"):
        kw["chunked_prefill"] = False
    for key in ("max_num_seqs", "max_num_batched_tokens", "admission"):  # unset: the framework's default
        if kw.get(key) is None:
            kw.pop(key, None)
    return kw


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@_options
@click.argument("more_goodput", nargs=-1, metavar="")
def simulate(output: str, goodput: tuple[str, ...], more_goodput: tuple[str, ...], find_max_rate: bool, slo: str,
             tolerance: float, timeline_csv: str | None, force: bool, **kw: Any) -> None:
    """Simulate a vLLM-style server under load: TTFT, TPOT, ITL, E2E latency, throughput, goodput."""
    from click.core import ParameterSource

    from infercast.files import check_writable

    if more_goodput and not goodput:
        raise InfercastError(f"unexpected argument {more_goodput[0]!r} (see 'infercast simulate --help')")
    if timeline_csv is not None:  # before the run, not after minutes of it
        check_writable(timeline_csv, force, "--timeline-csv")

    def say(line: str) -> None:  # progress goes to stderr: stdout stays the JSON document
        click.echo(line, err=True)

    ctx = click.get_current_context()
    given = {k for k in kw if ctx.get_parameter_source(k) is not ParameterSource.DEFAULT}
    result = run_simulation(kw, given, goodput=goodput + more_goodput, find_max_rate=find_max_rate, slo=slo,
                            tolerance=tolerance, progress=say)
    if find_max_rate:
        if timeline_csv is not None:
            if result.at_max is not None:
                result.at_max.write_timeline(timeline_csv, force=force)
            else:
                say(f"--timeline-csv {timeline_csv}: not written, no rate met the SLOs")
        if output == "json":
            click.echo(json.dumps(result.to_dict(), indent=2, allow_nan=False))
        else:
            _search_table(result.to_dict())
        return
    if timeline_csv is not None:
        result.write_timeline(timeline_csv, force=force)
    if output == "json":
        click.echo(json.dumps(result.to_dict(), indent=2, allow_nan=False))
    else:
        _table(result.to_dict())


def run_simulation(kw: dict[str, Any], given: set[str], *, goodput: tuple[str, ...] = (), find_max_rate: bool = False,
                   slo: str = "ttft_p99:2000,tpot_p99:200", tolerance: float = 0.01,
                   progress: Callable[[str], None] | None = None):
    """simulate's work from its flags' values (``kw``: the deployment, workload and engine flags; ``given``:
    those the user set): the run's ``SimResult``, or with ``find_max_rate`` the ``RateSearch``. The command
    line and the web API both call it."""
    from infercast.serving import simulate as run
    from infercast.serving.metrics import parse_slo
    from infercast.serving.search import find_max_rate as search

    slos = parse_slo(goodput, "--goodput", percentiles=False) if goodput else None
    kw = _split(dict(kw), given)
    if find_max_rate:
        if kw.pop("trace"):
            raise InfercastError("--find-max-rate draws Poisson arrivals; drop --trace")
        return search(slo_ms=parse_slo(slo, "--slo", percentiles=True), tolerance=tolerance, progress=progress,
                      **kw)
    return run(goodput=slos, progress=progress, **kw)


def _ms(stats: dict[str, float | None]) -> str:
    return "  ".join(f"{k} {v:,.1f}" if v is not None else f"{k} -" for k, v in stats.items())


def _table(r: dict[str, Any]) -> None:
    from infercast.display import console as make_console
    from infercast.display import table

    console = make_console()
    w, e, par, x = r["workload"], r["engine"], r["parallel"], r["workload"]["realised"]
    rate = "offline (all at t = 0)" if w["request_rate"] is None else f"{w['request_rate']:g} req/s"
    realised = (f"isl mean {x['isl_mean']:,.1f} ({x['isl_min']:,}-{x['isl_max']:,}), osl mean {x['osl_mean']:,.1f} "
                f"({x['osl_min']:,}-{x['osl_max']:,})")
    if w.get("trace"):
        rate = "all at t = 0" if w["request_rate"] is None else f"mean {w['request_rate']:.4g} req/s"
        work = f"trace {w['trace']}: {w['num_prompts']:,} prompts over {w['arrival_span_s']:,.1f} s, {rate}, {realised}"
    elif w.get("lengths"):
        work = f"{w['num_prompts']:,} prompts, {rate}, lengths drawn from {w['lengths']}: {realised}"
    else:
        work = (f"{w['num_prompts']:,} prompts, {rate}, isl {w['isl']} ({w['isl_dist']}), osl {w['osl']} "
                f"({w['osl_dist']})")
        if w["isl_dist"] != "fixed" or w["osl_dist"] != "fixed":
            work += f"; realised {realised}"
    if w["clipped"]:
        work += f"; {w['clipped']:,} clipped to [1, max-model-len]"
    console.print(f"[bold]{r['model']}[/bold] on [bold]{r['hardware']}[/bold] ({r['system']}): tp {par['tp']} x pp "
                  f"{par['pp']}, {par['dp']} replica(s); {work}")
    window = (f"; each running request also holds {e['window_blocks']} for its windowed layers"
              if e["window_blocks"] else "")
    console.print(f"engine: max-num-seqs {e['max_num_seqs']}, max-num-batched-tokens {e['max_num_batched_tokens']}, "
                  f"{'chunked prefill' if e['chunked_prefill'] else 'prefill-first'}, "
                  f"{e['admission']} admission, {e['num_gpu_blocks']:,} KV blocks of {e['block_size']} "
                  f"({e['kv_cache_tokens']:,} tokens) per replica{window}")
    t = table("", "", show_header=False, box=None)
    t.add_row("completed", f"{r['completed']:,} in {r['duration_s']:,.1f} s")
    t.add_row("throughput", f"{r['request_throughput']:,.3g} req/s, {r['output_throughput']:,.0f} output tokens/s, "
                            f"{r['total_token_throughput']:,.0f} tokens/s in total")
    for key, label in (("ttft_ms", "TTFT ms"), ("tpot_ms", "TPOT ms"), ("itl_ms", "ITL ms"), ("e2el_ms", "E2EL ms")):
        t.add_row(label, _ms(r[key]))
    if r["goodput"]:
        g = r["goodput"]
        t.add_row("goodput", f"{g['request_goodput']:,.3g} req/s ({100 * g['fraction_good']:.1f}% of requests meet "
                             + ", ".join(f"{k} <= {v:g} ms" for k, v in g["slo_ms"].items()) + ")")
    kv, q = r["kv_cache"], r["queue"]
    t.add_row("KV cache", f"mean {100 * kv['mean_usage']:.1f}%, max {100 * kv['max_usage']:.1f}% used; "
                          f"{r['preemptions']:,} preemptions")
    t.add_row("queue", f"mean {q['mean_waiting']:.2f} waiting (max {q['max_waiting']:,}), "
                       f"{q['mean_running']:.1f} running; {r['steps']:,} steps")
    console.print(t)


def _search_table(r: dict[str, Any]) -> None:
    from infercast.display import console as make_console
    from infercast.display import table

    console = make_console()
    slo = ", ".join(f"{k} <= {v:g} ms" for k, v in r["slo_ms"].items())
    console.print(f"max request rate meeting {slo}: [bold]{r['max_request_rate']:.4g} req/s[/bold] "
                  f"({r['max_output_throughput']:,.0f} output tokens/s); offline capacity "
                  f"{r['offline']['request_throughput']:.4g} req/s ({r['offline']['output_throughput']:,.0f} "
                  f"output tokens/s)")
    if r["reason"]:
        console.print(f"[yellow]{r['reason']}[/yellow]")
    t = table("request rate", *[f"{k} ms" for k in r["slo_ms"]], "meets")
    for p in r["probes"]:
        t.add_row(f"{p['request_rate']:.4g}", *[f"{p[f'{k}_ms']:,.1f}" for k in r["slo_ms"]], "yes" if p["meets"]
                  else "no")
    console.print(t)
