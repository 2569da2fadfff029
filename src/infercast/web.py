"""``infercast web``: the JSON API and the page that draws it (FastAPI and uvicorn: the ``web`` extra).

Every ``/api/<command>`` answers the document ``infercast <command> --output json`` prints for the same flags,
byte for byte: a request body is JSON whose keys are the command's flags in snake_case (typed by
``infercast.options.request_model`` and, for a command's own flags, by their click types), and the same functions
build the document (``infercast.views``). ``/api/view/<command>`` adds the figures the page draws.

The web API reads no files on the server: models, chips and systems are catalog ids (a model may also be a
pasted config.json, the body's ``config``), and the flags that name files (--calibration, --trace, --lengths)
are refused. Answers: 404 for an unknown id, 422 for a bad value, 413 for work above ``LIMITS``, 504 past the
time budget, each with the CLI's one-line message in ``detail``. Simulations, searches and frontiers run in a
process of their own, killed at their budget; the server answers other requests meanwhile.
"""


import asyncio
import functools
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from infercast.errors import InfercastError, UnknownName, one_line

LIGHT_BUDGET_S = 10.0
"""Seconds an estimate, a comparison or a catalog listing may take."""
HEAVY_BUDGET_S = 60.0
"""Seconds a simulation, a search or a frontier may take (its process is killed then)."""
CLAIMS_BUDGET_S = 300.0
"""Seconds the seed claims may take the first time (they are kept after)."""
LIMITS = {
    "simulated_requests": 1_000_000,
    "compare_systems": 8,
}
"""Work a request may ask for: requests simulated in all (num_prompts, times the probes of --find-max-rate or
the simulations of a search), systems compared. Above them: 413, before any work starts."""
PROBES = 11
"""Simulations of --find-max-rate besides its bisection: an offline run, the first probe, up to 8 doublings,
one more; the bisection adds log2(1 / tolerance)."""
SEARCH_SIMULATIONS = 3
"""Simulations a search runs per confirmed candidate at most (top_k of them)."""
CACHED = 512
"""Documents of estimates and comparisons kept, by request: a shared link asks again for the same."""
FILE_FLAGS = ("calibration", "trace", "lengths")
OUTPUT_ONLY = ("output", "breakdown", "timeline_csv", "force", "out", "more_goodput", "show_pareto")
"""Flags that choose how a command prints or where it writes: the API has no such flags."""
HEAVY_MODULES = ["infercast.views", "infercast.serving", "infercast.search", "infercast.estimate",
                 "infercast.evaluation", "infercast.plots", "infercast.serving.cli"]


class Refused(Exception):
    """An answer other than 200: its status and its one line."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, one_line(detail)


def needs_web():
    """FastAPI, or one line naming the extra to install."""
    try:
        import fastapi
        import uvicorn  # noqa: F401
    except ImportError:
        raise InfercastError('infercast web needs FastAPI and uvicorn: pip install "infercast[web]"') from None
    return fastapi


# --- request bodies: the commands' flags -------------------------------------------------------------


def flag_name(p: click.Parameter) -> str:
    """A flag's key in a request body: the long flag in snake_case (``--usd-per-chip-hour``)."""
    longest = max((o for o in p.opts if o.startswith("--")), key=len, default=p.name)
    return longest.removeprefix("--").replace("-", "_")


def _click_type(p: click.Parameter) -> tuple[Any, Any]:
    from typing import Literal

    if getattr(p, "is_flag", False):
        return bool, False
    t = p.type
    kind: Any = (Literal[tuple(t.choices)] if isinstance(t, click.Choice) else  # type: ignore[misc]
                 int if isinstance(t, click.types.IntParamType) else
                 float if isinstance(t, click.types.FloatParamType) else str)
    if p.multiple:
        return list[kind] | None, None
    default = p.default if isinstance(p.default, (int, float, str)) else None
    if p.required:
        return kind, ...
    return (kind if default is not None else kind | None), default


def body_model(name: str, command: click.Command, options: tuple = (), *, config: bool = True, doc: str = ""):
    """The pydantic model of a request body: ``command``'s flags, less OUTPUT_ONLY; ``options`` (of
    ``infercast.options``) typed by ``request_model`` (KEY=VALUE pairs as objects), the rest by their click
    types. ``config``: the body may carry a pasted config.json in place of the model's file."""
    from pydantic import ConfigDict, Field, create_model

    from infercast.options import request_model

    base = request_model(f"{name}Options", options)
    fields: dict[str, Any] = {}
    for p in command.params:
        if p.name in OUTPUT_ONLY or isinstance(p, click.Argument) or p.name in base.model_fields:
            continue
        kind, default = _click_type(p)
        fields[flag_name(p)] = (kind, Field(default=default, description=p.help))
    if config:
        fields["config"] = (dict[str, Any] | None, Field(default=None, description=(
            "A Hugging Face config.json's content: the model to run, named 'model'.")))
    # JSON has no NaN or Infinity: refuse them where Python's parser lets them through
    strict = type(f"{name}Strict", (base,), {"__module__": __name__,
                                             "model_config": ConfigDict(extra="forbid", allow_inf_nan=False)})
    return create_model(name, __base__=strict, __doc__=doc or None, **fields)


def flags_of(body, command: click.Command) -> tuple[dict[str, Any], set[str]]:
    """A body as the keyword arguments click gives ``command``'s callback, and the flags the body set."""
    by_flag = {flag_name(p): p.name for p in command.params if p.name}
    values = body.model_dump()
    flags = {by_flag.get(k, k): v for k, v in values.items() if k != "config"}
    for p in command.params:  # click's values for what a body leaves out: () for repeatable flags
        if p.multiple and flags.get(p.name) is None and p.name in flags:
            flags[p.name] = ()
    given = {by_flag.get(k, k) for k in body.model_fields_set}
    if getattr(body, "config", None) is not None:
        from infercast.model import normalise

        flags["model"] = normalise(body.config, body.model)
    return flags, given


# --- names: catalog ids only -------------------------------------------------------------------------


@functools.cache
def _known(kind: str) -> frozenset[str]:
    """The catalog's ids of a kind (package data: read once)."""
    if kind == "model":
        from infercast.model import model_ids
        from infercast.networks import network_ids

        return frozenset({*model_ids(), *network_ids()})
    if kind == "system":
        from infercast.system import system_ids

        return frozenset(system_ids())
    from infercast.design import design_ids
    from infercast.hardware import _catalog_files

    return frozenset({*_catalog_files(), *design_ids()})


def check_name(field: str, kind: str, value: Any, prefix: str = "") -> None:
    """A catalog id passes; a path is refused (422); any other name is unknown (404, with its loader's message
    after ``prefix``, as the command prints it). No file on the server is read."""
    if not isinstance(value, str) or value in _known(kind):
        return
    pathlike = any(c in value for c in "/\\~") or value.startswith(".") or value.endswith((".yaml", ".yml", ".json"))
    if pathlike or os.path.exists(value):
        what = "preset ids (GET /api/models), or a config.json's content in 'config'" if kind == "model" else \
            f"catalog ids (GET /api/{'systems' if kind == 'system' else 'hardware'})"
        raise Refused(422, f"{field}: the web API takes {what}, not paths; got {value!r}")
    try:  # neither a catalog id nor a file: the loader says so, as on the command line
        LOADERS[kind](value)
    except UnknownName as exc:
        raise UnknownName(f"{prefix}{exc}") from None


def _load(module: str, name: str) -> Callable[[str], Any]:
    def load(value: str) -> Any:
        import importlib

        return getattr(importlib.import_module(module), name)(value)

    return load


LOADERS = {"model": _load("infercast.model", "load_model"), "system": _load("infercast.system", "load_system"),
           "hardware": _load("infercast.design", "load_hardware")}


def check_body(body: dict[str, Any], command: str) -> None:
    """Refuse file flags and paths before any work (the web API reads no files on the server)."""
    for key in FILE_FLAGS:
        if body.get(key):
            raise Refused(422, f"{key}: the web API reads no files on the server; run infercast {command} "
                               f"--{key.replace('_', '-')} on the command line")
    if body.get("config") is None:
        check_name("model", "model", body.get("model"))
    check_name("system", "system", body.get("system"))
    names = body.get("hardware")
    if command in ("search", "pareto") and isinstance(names, str):
        for name in (n.strip() for n in names.split(",")):
            if name and name != "all":
                check_name("hardware", "hardware", name, prefix="--hardware: ")
    else:
        check_name("hardware", "hardware", names)
    if command == "compare":
        systems = body["systems"]
        entries = [s.strip() for s in systems.split(",") if s.strip()]
        if len(entries) > LIMITS["compare_systems"]:
            raise Refused(413, f"systems: {len(entries)} named; the web API compares at most "
                               f"{LIMITS['compare_systems']} at once")
        from infercast.system import system_ids

        for s in entries:
            check_name("systems", "system" if s in system_ids() else "hardware", s)


def simulated_requests(body: dict[str, Any], command: str) -> int:
    """Requests a simulate or search body asks the simulator for, at most."""
    n = body.get("num_prompts") or 0
    if command == "search":
        return n * (body.get("top_k") or 0) * SEARCH_SIMULATIONS
    if body.get("find_max_rate"):
        tolerance = body.get("tolerance") or 0.01
        return n * (PROBES + math.ceil(math.log2(1 / tolerance))) if 0 < tolerance < 1 else n * PROBES
    return n


def check_limits(body: dict[str, Any], command: str) -> None:
    n = simulated_requests(body, command)
    if n > LIMITS["simulated_requests"]:
        what = "num_prompts x top_k x 3" if command == "search" else (
            "num_prompts x the probes of find_max_rate" if body.get("find_max_rate") else "num_prompts")
        raise Refused(413, f"num_prompts: {what} = {n:,} requests to simulate; the web API simulates at most "
                           f"{LIMITS['simulated_requests']:,} a call (infercast {command} on the command line has no "
                           f"limit)")


# --- the work: in a thread (light) or a process of its own (heavy) ------------------------------------


def dumps(doc: Any, *, pretty: bool = True) -> bytes:
    """A document as the CLI prints it (``--output json``): strict JSON, indented, one newline after."""
    if pretty:
        return (json.dumps(doc, indent=2, allow_nan=False) + "\n").encode()
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


def answer(fn: Callable[[], Any], pretty: bool = True) -> tuple[int, bytes]:
    """``fn``'s document as (200, JSON), or its refusal as (status, JSON with the one line)."""
    try:
        return 200, dumps(fn(), pretty=pretty)
    except Refused as exc:
        return exc.status, dumps({"detail": exc.detail})
    except UnknownName as exc:
        return 404, dumps({"detail": str(exc)})
    except InfercastError as exc:
        return 422, dumps({"detail": str(exc)})
    except ValueError as exc:  # a NaN or an infinity in a document: a figure overflowed
        return 422, dumps({"detail": f"the inputs overflow the model's arithmetic ({one_line(str(exc))}); check "
                                     f"their sizes"})


def _child(conn, job: str, args: tuple) -> None:
    """A heavy job's process: run it, send (status, JSON) back."""
    conn.send(answer(functools.partial(JOBS[job], *args), pretty=not job.endswith("_view")))
    conn.close()


def _claims() -> Any:
    from infercast.documents import claims_document

    return claims_document()


def _run(name: str) -> Callable[..., Any]:
    def run(*args: Any) -> Any:
        from infercast import views

        return getattr(views, name)(*args)

    return run


JOBS: dict[str, Callable[..., Any]] = {
    **{n: _run(n) for n in ("estimate_document", "estimate_view", "compare_document", "compare_view",
                            "search_document", "pareto_document", "pareto_view", "simulate_view")},
    "simulate_document": lambda flags, given: _run("simulation")(flags, given).to_dict(),
    "claims": _claims,
}


class Worker:
    """Heavy jobs, each in a process forked from a server process that has imported the engine (a fork costs
    milliseconds), at most ``slots`` at once; a job past its budget is killed."""

    def __init__(self, slots: int) -> None:
        import multiprocessing

        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(HEAVY_MODULES)
        self.slots = slots
        self._free: asyncio.Semaphore | None = None

    async def run(self, job: str, args: tuple, budget_s: float) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget_s
        if self._free is None:
            self._free = asyncio.Semaphore(self.slots)
        try:
            await asyncio.wait_for(self._free.acquire(), budget_s)
        except TimeoutError:
            raise Refused(504, f"the server is busy: no worker was free within the time budget of {budget_s:g} s; "
                               f"try again") from None
        try:
            receive, send = self.context.Pipe(duplex=False)
            process = self.context.Process(target=_child, args=(send, job, args), daemon=True)
            await asyncio.to_thread(process.start)
            send.close()
            ready = await asyncio.to_thread(receive.poll, max(0.0, deadline - loop.time()))
            if not ready:
                process.kill()
                await asyncio.to_thread(process.join)
                raise Refused(504, f"the work ran past its time budget of {budget_s:g} s; ask for less (fewer "
                                   f"num_prompts, chips or precisions), or run it on the command line")
            try:
                result = await asyncio.to_thread(receive.recv)
            except EOFError:
                result = (500, dumps({"detail": f"the worker process ended without an answer (exit code "
                                                f"{process.exitcode})"}))
            await asyncio.to_thread(process.join)
            return result
        finally:
            self._free.release()


# --- the app -----------------------------------------------------------------------------------------


def create_app(*, light_budget_s: float = LIGHT_BUDGET_S, heavy_budget_s: float = HEAVY_BUDGET_S,
               slots: int | None = None):
    """The FastAPI app: the API, its OpenAPI docs at /docs, and the page at /."""
    fastapi = needs_web()
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, Response
    from fastapi.staticfiles import StaticFiles
    from pydantic import BaseModel

    from infercast.cli import COMPARE, compare, estimate
    from infercast.errors import pydantic_error_line
    from infercast.options import AUTO, DEPLOYMENT, NETWORK_WORKLOAD, WORKLOAD
    from infercast.serving.cli import SIMULATE, simulate
    from infercast.sweep_cli import pareto, search

    plotly_js = _plotly_js()
    static = Path(__file__).parent / "static"
    worker = Worker(slots or max(1, (os.cpu_count() or 2) - 1))

    class Problem(BaseModel):
        detail: str
        """One line naming the field and the fix."""

    problems = {status: {"model": Problem, "description": text} for status, text in (
        (404, "An unknown model, chip or system id."), (413, "Work above the documented limits."),
        (422, "A bad value, named with its fix."), (504, "The time budget ran out."))}

    app = fastapi.FastAPI(title="infercast", version=_version(), description=(
        "How a generative model runs on given hardware. Each /api/<command> answers the JSON document of "
        "`infercast <command> --output json` for the same flags (snake_case keys)."))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        line = pydantic_error_line(_Located(exc.errors()))
        return Response(dumps({"detail": line}), status_code=422, media_type="application/json")

    def respond(status_body: tuple[int, bytes]) -> Response:
        status, body = status_body
        return Response(body, status_code=status, media_type="application/json")

    async def light(work: Callable[[], tuple[int, bytes]]) -> Response:
        try:
            return respond(await asyncio.wait_for(asyncio.to_thread(work), light_budget_s))
        except TimeoutError:
            return respond((504, dumps({"detail": f"the work ran past its time budget of {light_budget_s:g} s"})))

    async def heavy(job: str, args: tuple, budget_s: float | None = None) -> Response:
        try:
            return respond(await worker.run(job, args, budget_s or heavy_budget_s))
        except Refused as exc:
            return respond((exc.status, dumps({"detail": exc.detail})))

    def prepared(body, command: click.Command, name: str) -> tuple[dict[str, Any], set[str]] | Response:
        raw = body.model_dump()
        try:
            check_body(raw, name)
            check_limits(raw, name)
            return flags_of(body, command)
        except Refused as exc:
            return respond((exc.status, dumps({"detail": exc.detail})))
        except UnknownName as exc:
            return respond((404, dumps({"detail": str(exc)})))
        except InfercastError as exc:
            return respond((422, dumps({"detail": str(exc)})))

    # bodies: each command's flags
    Estimate = body_model("EstimateRequest", estimate, (*DEPLOYMENT, *WORKLOAD, *NETWORK_WORKLOAD, AUTO),
                          doc="infercast estimate's flags.")
    Compare = body_model("CompareRequest", compare, (*COMPARE, *WORKLOAD), doc="infercast compare's flags.")
    Simulate = body_model("SimulateRequest", simulate, SIMULATE, doc="infercast simulate's flags.")
    Search = body_model("SearchRequest", search, config=False, doc="infercast search's flags.")
    Pareto = body_model("ParetoRequest", pareto, config=False, doc="infercast pareto's flags.")
    obj, arr = {"type": "object"}, {"type": "array", "items": {"type": "object"}}

    def documented(schema: dict[str, Any]) -> dict[int | str, Any]:
        return {200: {"content": {"application/json": {"schema": schema}}, "description": "The document."},
                **problems}

    def post(path: str, model, command: click.Command, name: str, job: str, schema: dict[str, Any], *,
             in_process: bool, pretty: bool = True, summary: str = "") -> None:
        async def endpoint(body: model) -> Response:  # type: ignore[valid-type]
            ready = prepared(body, command, name)
            if isinstance(ready, Response):
                return ready
            flags, given = ready
            args = (flags, given) if name == "simulate" else (flags,)
            if in_process:
                return await light(functools.partial(answered, job, *args, pretty))
            return await heavy(job, args)

        app.post(path, responses=documented(schema), summary=summary)(endpoint)

    for name, model, command, schema in (("estimate", Estimate, estimate, obj), ("compare", Compare, compare, arr)):
        post(f"/api/{name}", model, command, name, f"{name}_document", schema, in_process=True,
             summary=f"infercast {name} --output json")
        post(f"/api/view/{name}", model, command, name, f"{name}_view", obj, in_process=True, pretty=False,
             summary=f"the {name} document and its figures (Plotly JSON)")
    for name, model, command in (("simulate", Simulate, simulate), ("search", Search, search),
                                 ("pareto", Pareto, pareto)):
        post(f"/api/{name}", model, command, name, f"{name}_document", obj, in_process=False,
             summary=f"infercast {name} --output json")
    for name, model, command in (("simulate", Simulate, simulate), ("pareto", Pareto, pareto)):
        post(f"/api/view/{name}", model, command, name, f"{name}_view", obj, in_process=False, pretty=False,
             summary=f"the {name} document and its figures (Plotly JSON)")

    def listing(path: str, build: Callable[[], Any], summary: str) -> None:
        async def endpoint() -> Response:
            return await light(functools.partial(answer, build))

        app.get(path, responses=documented(arr), summary=summary)(endpoint)

    from infercast import documents

    listing("/api/models", documents.models_document, "infercast models list --output json")
    listing("/api/hardware", documents.chips_document, "infercast hardware list --output json")
    listing("/api/systems", documents.systems_document, "infercast hardware systems --output json")
    listing("/api/frameworks", documents.frameworks_document, "infercast frameworks list --output json")

    @app.get("/api/models/{name}", responses=documented(obj), summary="infercast models show NAME --output json")
    async def model_show(name: str) -> Response:
        return await light(functools.partial(_shown, "model", name, documents.model_document))

    @app.get("/api/hardware/{name}", responses=documented(obj), summary="infercast hardware show NAME --output json")
    async def hardware_show(name: str) -> Response:
        return await light(functools.partial(_shown, "hardware", name, documents.chip_document))

    claims_cache: dict[str, tuple[int, bytes]] = {}
    claims_lock = asyncio.Lock()

    @app.get("/api/claims", responses=documented(arr), summary="infercast claims --output json")
    async def claims() -> Response:
        async with claims_lock:  # computed once, in a worker, then kept
            if "doc" not in claims_cache:
                result = await heavy("claims", (), CLAIMS_BUDGET_S)
                if result.status_code != 200:
                    return result
                claims_cache["doc"] = (200, result.body)
        return respond(claims_cache["doc"])

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse((static / "index.html").read_text(encoding="utf-8"))

    @app.get("/static/plotly.min.js", include_in_schema=False)
    async def plotly() -> FileResponse:
        return FileResponse(plotly_js, media_type="text/javascript")

    app.mount("/static", StaticFiles(directory=static), name="static")
    app.state.worker, app.state.heavy_budget_s = worker, heavy_budget_s
    return app


class _Located:
    """A request's validation errors as ``pydantic_error_line`` reads them: locations without 'body'."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self._errors = [{**e, "loc": tuple(e.get("loc", ()))[1:] if tuple(e.get("loc", ()))[:1] == ("body",)
                         else tuple(e.get("loc", ()))} for e in errors]

    def errors(self) -> list[dict[str, Any]]:
        return self._errors


@functools.lru_cache(maxsize=CACHED)
def _kept(job: str, key: str, pretty: bool) -> tuple[int, bytes]:
    return answer(functools.partial(JOBS[job], json.loads(key)), pretty)


def answered(job: str, flags: dict[str, Any], pretty: bool = True) -> tuple[int, bytes]:
    """A light job's answer, kept by its flags: a shared link, or a page reloaded, asks again for the same
    (a model from a pasted config.json is not kept)."""
    if not isinstance(flags.get("model"), str):
        return answer(functools.partial(JOBS[job], flags), pretty)
    return _kept(job, json.dumps(flags, sort_keys=True, default=list), pretty)


def _shown(kind: str, name: str, build: Callable[[str], Any]) -> tuple[int, bytes]:
    def document() -> Any:
        check_name("name", kind, name)
        return build(name)

    return answer(document)


def _plotly_js() -> Path:
    try:
        import plotly
    except ImportError:
        raise InfercastError('infercast web draws with plotly: pip install "infercast[web]"') from None
    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("infercast")
    except PackageNotFoundError:
        return "0"


SETTINGS = "INFERCAST_WEB"
"""The environment variable through which ``infercast web --workers N`` gives each server process its settings."""


def served_app():
    """The app of one of ``infercast web --workers N``'s processes (uvicorn imports it by name and calls it)."""
    settings = json.loads(os.environ.get(SETTINGS, "{}"))
    return create_app(heavy_budget_s=settings.get("budget", HEAVY_BUDGET_S), slots=settings.get("slots"))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every "
                                                                      "interface).")
@click.option("--port", type=int, default=8000, show_default=True, help="Port to listen on.")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Server processes: each answers estimates on a core of its own (a Python process answers one "
                   "at a time).")
@click.option("--budget", type=float, default=HEAVY_BUDGET_S, show_default=True,
              help="Seconds a simulation, search or frontier may run before it is stopped (504).")
def web(host: str, port: int, workers: int, budget: float) -> None:
    """Serve the JSON API and the page that draws the estimates, comparisons, simulations and frontiers."""
    if not budget > 0 or not math.isfinite(budget):
        raise InfercastError(f"--budget must be a positive number of seconds, got {budget}")
    if workers < 1:
        raise InfercastError(f"--workers must be a whole number from 1, got {workers}")
    needs_web()
    import uvicorn

    click.echo(f"infercast: the page at http://{host}:{port}/ and the API's docs at http://{host}:{port}/docs "
               f"(Ctrl+C stops)", err=True)
    if workers == 1:
        uvicorn.run(create_app(heavy_budget_s=budget), host=host, port=port, log_level="warning")
        return
    # several processes: uvicorn starts each from the app's import path; the heavy jobs' cores are shared out
    slots = max(1, ((os.cpu_count() or 2) - workers) // workers)
    os.environ[SETTINGS] = json.dumps({"budget": budget, "slots": slots})
    uvicorn.run("infercast.web:served_app", factory=True, workers=workers, host=host, port=port,
                log_level="warning")
