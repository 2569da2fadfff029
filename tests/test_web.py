"""The web API as a client uses it (httpx against a running server): each /api/<command> answers what
``infercast <command> --output json`` prints for the same flags, byte for byte; unknown ids 404, bad values
422, oversized work 413, work past its budget 504, each with the CLI's one line; the page and its assets."""

from __future__ import annotations

import asyncio
import json
import threading

import click
import httpx
import pytest
from click.testing import CliRunner

from infercast.cli import cli
from infercast.errors import InfercastError

pytest.importorskip("fastapi", reason="the web extra")  # installed by .[dev]: the suite runs these


def run_cli(*args: str) -> tuple[int, str, str]:
    out = CliRunner().invoke(cli, list(args))
    return out.exit_code, out.stdout, out.stderr


def cli_json(*args: str) -> bytes:
    code, stdout, stderr = run_cli(*args, "--output", "json")
    assert code == 0, stderr
    return stdout.encode()


def cli_error(*args: str) -> str:
    """The line the command prints after 'error: ' (``cli.main`` prints the InfercastError's message)."""
    out = CliRunner().invoke(cli, list(args))
    assert isinstance(out.exception, InfercastError), out.output
    return str(out.exception)


def post(url: str, path: str, body: dict, timeout: float = 120) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=timeout)


def argv(endpoint: str, body: dict) -> list[str]:
    """The command line of a request body: each key a flag (repeated for a list, KEY=VALUE for an object)."""
    args = [endpoint]
    for key, value in body.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif isinstance(value, list):
            args += [a for v in value for a in (flag, str(v))]
        elif isinstance(value, dict):
            args += [a for k, v in value.items() for a in (flag, f"{k}={v}")]
        else:
            args += [flag, str(value)]
    return args


SAME = [
    ("estimate", {"model": "llama-3-70b", "system": "hgx-h100", "tp": 4, "batch": 8, "isl": 1024, "osl": 128}),
    ("estimate", {"model": "llama-3-8b", "hardware": "h100-sxm", "dtype": "fp8", "efficiency": {"bandwidth": 0.8},
                  "cost": {"pue": 1.3}, "usd_per_chip_hour": 2.5, "batch": 4}),
    ("estimate", {"model": "sdxl-base-1.0", "hardware": "h100-sxm", "steps": 20}),
    ("compare", {"model": "llama-3-70b", "systems": "h100-sxm,b200,mi300x", "num_chips": 4, "tp": 4, "batch": 8}),
    ("simulate", {"model": "llama-3-8b", "hardware": "h100-sxm", "request_rate": 6, "num_prompts": 300, "isl": 512,
                  "osl": 64, "goodput": ["ttft:500", "tpot:50"]}),
    ("simulate", {"model": "llama-3-8b", "hardware": "h100-sxm", "find_max_rate": True, "num_prompts": 200,
                  "isl": 512, "osl": 64, "tolerance": 0.05}),
    ("search", {"model": "llama-3-8b", "isl": 512, "osl": 128, "qps": 4, "slo": "ttft_p99:2000,tpot_p99:200",
                "hardware": "h100-sxm,b200", "top_k": 2, "num_prompts": 200, "usd_per_chip_hour": ["h100-sxm=2.5"]}),
    ("pareto", {"model": "llama-3-8b", "isl": 512, "osl": 128, "hardware": "h100-sxm,b200", "tp": "1,2"}),
    ("search", {"model": "llama-3-8b", "isl": 512, "osl": 128, "qps": 4, "slo": "ttft_p99:2000,tpot_p99:200",
                "hardware": "h100-sxm,mi300x", "framework": "vllm,trtllm", "top_k": 1, "num_prompts": 200,
                "usd_per_chip_hour": ["h100-sxm=2.5", "mi300x=2"]}),
    ("pareto", {"model": "llama-3-8b", "isl": 512, "osl": 128, "hardware": "h100-sxm,mi300x", "tp": "1",
                "framework": "all", "group_by": "framework"}),
]


@pytest.mark.parametrize("endpoint, body", SAME, ids=[f"{e}-{i}" for i, (e, _) in enumerate(SAME)])
def test_the_api_answers_the_cli_document_byte_for_byte(web_url, endpoint, body):
    response = post(web_url, f"/api/{endpoint}", body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.content == cli_json(*argv(endpoint, body))


@pytest.mark.parametrize("path, args", [
    ("/api/models", ["models", "list"]), ("/api/hardware", ["hardware", "list"]),
    ("/api/systems", ["hardware", "systems"]), ("/api/models/mixtral-8x7b", ["models", "show", "mixtral-8x7b"]),
    ("/api/hardware/mi300x", ["hardware", "show", "mi300x"]), ("/api/frameworks", ["frameworks", "list"]),
])
def test_the_catalog_answers_the_cli_listings(web_url, path, args):
    response = httpx.get(web_url + path, timeout=60)
    assert response.status_code == 200
    assert response.content == cli_json(*args)


def test_the_claims_are_the_cli_claims(web_url):
    answers = {}
    # the server computes them in a worker process while this process computes the CLI's
    thread = threading.Thread(target=lambda: answers.update(api=httpx.get(web_url + "/api/claims", timeout=600)))
    thread.start()
    expected = cli_json("claims")
    thread.join()
    assert answers["api"].status_code == 200
    assert answers["api"].content == expected
    assert len(json.loads(expected)) == 20


def test_a_pasted_config_json_runs_as_the_file_does(web_url, tmp_path):
    from infercast.model import preset_config

    config = preset_config("llama-3-8b")
    (tmp_path / "config.json").write_text(json.dumps(config))
    response = post(web_url, "/api/estimate", {"model": "my-llama", "config": config, "hardware": "h100-sxm",
                                               "batch": 8})
    assert response.status_code == 200, response.text
    api = response.json()
    cli_doc = json.loads(cli_json("estimate", "--model", str(tmp_path / "config.json"), "--hardware", "h100-sxm",
                                  "--batch", "8"))
    assert api["model"] == "my-llama"
    assert {k: v for k, v in api.items() if k != "model"} == {k: v for k, v in cli_doc.items() if k != "model"}
    # the preset's own figures: the pasted config is that model
    preset = post(web_url, "/api/estimate", {"model": "llama-3-8b", "hardware": "h100-sxm", "batch": 8}).json()
    assert api["decode"]["tpot_s"] == preset["decode"]["tpot_s"]


def test_a_bad_pasted_config_is_one_line(web_url):
    response = post(web_url, "/api/estimate", {"model": "m", "config": {"model_type": "llama", "hidden_size": -4},
                                               "hardware": "h100-sxm"})
    assert response.status_code == 422
    assert "hidden_size" in response.json()["detail"]


@pytest.mark.parametrize("status, endpoint, body", [
    (404, "estimate", {"model": "llama-3-7b", "hardware": "h100-sxm"}),
    (404, "estimate", {"model": "llama-3-8b", "hardware": "h100-sxmm"}),
    (404, "estimate", {"model": "llama-3-8b", "system": "hgx-h10"}),
    (404, "compare", {"model": "llama-3-8b", "systems": "h100-sxm,b2000"}),
    (404, "simulate", {"model": "mistral-8b", "hardware": "h100-sxm"}),
    (404, "pareto", {"model": "llama-3-8b", "isl": 128, "osl": 128, "hardware": "h100-sxm,h300"}),
    (422, "estimate", {"model": "llama-3-8b", "hardware": "h100-sxm", "batch": 0}),
    (422, "estimate", {"model": "llama-3-8b", "hardware": "h100-sxm", "tp": 3}),
    (422, "estimate", {"model": "llama-3-8b", "hardware": "h100-sxm", "dtype": "fp7"}),
    (422, "estimate", {"model": "llama-3-8b", "hardware": "h100-sxm", "efficiency": {"bandwidth": 2}}),
    (422, "simulate", {"model": "llama-3-8b", "hardware": "h100-sxm", "request_rate": -1}),
    (422, "search", {"model": "llama-3-8b", "isl": 128, "osl": 128, "slo": "ttft_p99:2000"}),
])
def test_an_unknown_id_is_404_and_a_bad_value_422_with_the_cli_message(web_url, status, endpoint, body):
    response = post(web_url, f"/api/{endpoint}", body)
    assert response.status_code == status
    assert response.json() == {"detail": cli_error(*argv(endpoint, body))}


def test_an_unknown_catalog_entry_is_404(web_url):
    response = httpx.get(web_url + "/api/hardware/h100-sx")
    assert response.status_code == 404
    assert response.json()["detail"] == cli_error("hardware", "show", "h100-sx")
    assert httpx.get(web_url + "/api/models/llama-9").status_code == 404


@pytest.mark.parametrize("body, names", [
    ({"model": "llama-3-8b", "hardware": "h100-sxm", "batch": "eight"}, "batch: Input should be a valid integer"),
    ({"model": "llama-3-8b", "hardware": "h100-sxm", "bacth": 8}, "bacth: unknown key; remove it or check its spelling"),
    ({"hardware": "h100-sxm"}, "model: required key is missing"),
    ({"model": "llama-3-8b", "hardware": "h100-sxm", "attention": "paged"}, "attention: Input should be 'flash', 'flash-per-head' or"),
    ({"model": "/etc/hostname", "hardware": "h100-sxm"}, "model: the web API takes preset ids"),
    ({"model": "llama-3-8b", "hardware": "../chip.yaml"}, "hardware: the web API takes catalog ids"),
    ({"model": "llama-3-8b", "hardware": "h100-sxm", "calibration": "fit.yaml"},
     "calibration: the web API reads no files on the server"),
])
def test_a_malformed_body_is_422_naming_the_field(web_url, body, names):
    response = post(web_url, "/api/estimate", body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith(names) and "\n" not in detail


def test_non_finite_numbers_and_broken_json_are_422(web_url):
    for text in ('{"model": "llama-3-8b", "hardware": "h100-sxm", "moe_imbalance": NaN}',
                 '{"model": "llama-3-8b", "hardware": "h100-sxm", "efficiency": {"bandwidth": Infinity}}',
                 '{"model": "llama-3-8b", '):
        response = httpx.post(web_url + "/api/estimate", content=text, headers={"content-type": "application/json"})
        assert response.status_code == 422, text
        assert response.json()["detail"]


@pytest.mark.parametrize("endpoint, body, names", [
    ("simulate", {"model": "llama-3-8b", "hardware": "h100-sxm", "num_prompts": 1_000_001},
     "num_prompts: num_prompts = 1,000,001 requests to simulate"),
    ("simulate", {"model": "llama-3-8b", "hardware": "h100-sxm", "num_prompts": 60_000, "find_max_rate": True},
     "num_prompts: num_prompts x the probes of find_max_rate = 1,080,000"),
    ("view/simulate", {"model": "llama-3-8b", "hardware": "h100-sxm", "num_prompts": 5_000_000},
     "num_prompts: num_prompts = 5,000,000"),
    ("search", {"model": "llama-3-8b", "isl": 128, "osl": 128, "qps": 1, "slo": "ttft_p99:2000", "top_k": 10,
                "num_prompts": 40_000}, "num_prompts: num_prompts x top_k x 3 = 1,200,000"),
    ("compare", {"model": "llama-3-8b",
                 "systems": "h100-sxm,b200,a100-sxm-80gb,h200-sxm,mi300x,l40s,gaudi3,tpu-v5e,rtx-4090"},
     "systems: 9 named; the web API compares at most 8"),
])
def test_work_above_the_limits_is_413_before_it_starts(web_url, endpoint, body, names):
    response = post(web_url, f"/api/{endpoint}", body)
    assert response.status_code == 413
    assert response.json()["detail"].startswith(names)


def test_work_past_its_budget_is_504():
    from infercast.web import create_app

    async def ask(app, path, body):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://web") as client:
            return await client.post(path, json=body, timeout=60)

    slow = create_app(heavy_budget_s=0.05, light_budget_s=30)
    response = asyncio.run(ask(slow, "/api/simulate", {"model": "llama-3-70b", "hardware": "h100-sxm", "tp": 4,
                                                       "num_prompts": 400_000, "request_rate": 50}))
    assert response.status_code == 504
    assert response.json()["detail"].startswith("the work ran past its time budget of 0.05 s")
    hurried = create_app(light_budget_s=1e-6)
    response = asyncio.run(ask(hurried, "/api/estimate", {"model": "llama-3-8b", "hardware": "a100-sxm-40gb",
                                                          "batch": 3}))
    assert response.status_code == 504


def test_an_estimate_is_answered_while_a_long_simulation_runs(web_url):
    """The simulation runs in a process of its own: an estimate sent after it starts comes back before it."""
    order = []
    long_run = {"model": "llama-3-70b", "hardware": "h100-sxm", "tp": 4, "num_prompts": 400_000, "request_rate": 40}

    def simulate():
        response = post(web_url, "/api/simulate", long_run)
        order.append(("simulate", response.status_code))

    thread = threading.Thread(target=simulate)
    thread.start()
    for _ in range(5):
        response = post(web_url, "/api/estimate", {"model": "llama-3-8b", "hardware": "h100-sxm", "batch": 5})
        order.append(("estimate", response.status_code))
    thread.join()
    assert order[:5] == [("estimate", 200)] * 5
    assert order[5] == ("simulate", 200)


def test_the_views_carry_the_documents_and_figures(web_url):
    body = {"model": "llama-3-70b", "system": "hgx-h100", "tp": 4, "batch": 8, "isl": 1024, "osl": 128}
    view = post(web_url, "/api/view/estimate", body).json()
    assert view["document"] == post(web_url, "/api/estimate", body).json()
    assert set(view["figures"]) == {"memory", "roofline", "breakdown", "energy"}
    sim = post(web_url, "/api/view/simulate", {"model": "llama-3-8b", "hardware": "h100-sxm", "num_prompts": 100,
                                               "request_rate": 5}).json()
    assert set(sim["figures"]) == {"timeline", "latency"}
    assert sim["document"]["completed"] == 100


def test_request_bodies_are_the_commands_flags():
    """No drift: a body's keys are the command's flags in snake_case (less those that choose the printing)."""
    from infercast.cli import compare, estimate
    from infercast.serving.cli import simulate
    from infercast.sweep_cli import pareto, search
    from infercast.web import OUTPUT_ONLY, body_model, flag_name

    for command, extra in ((estimate, {"config"}), (compare, {"config"}), (simulate, {"config"}), (search, set()),
                           (pareto, set())):
        model = body_model("Body", command, config=bool(extra))
        flags = {flag_name(p) for p in command.params
                 if p.name not in OUTPUT_ONLY and not isinstance(p, click.Argument)}
        assert set(model.model_fields) == flags | extra, command.name


def test_the_page_its_assets_and_the_docs_are_served(web_url):
    page = httpx.get(web_url + "/")
    assert page.status_code == 200 and '<script src="/static/plotly.min.js">' in page.text
    js = httpx.get(web_url + "/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000  # the bundle, served offline
    assert httpx.get(web_url + "/static/app.js").status_code == 200
    assert httpx.get(web_url + "/docs").status_code == 200
    paths = httpx.get(web_url + "/openapi.json").json()["paths"]
    assert {"/api/estimate", "/api/compare", "/api/simulate", "/api/search", "/api/pareto", "/api/models",
            "/api/hardware", "/api/claims"} <= set(paths)
    assert set(paths["/api/estimate"]["post"]["responses"]) >= {"200", "404", "413", "422", "504"}


def test_web_help_and_a_bad_budget():
    code, stdout, _ = run_cli("web", "--help")
    assert code == 0 and "--port" in stdout and "--host" in stdout
    assert cli_error("web", "--budget", "0") == "--budget must be a positive number of seconds, got 0.0"


def test_web_names_its_extra_when_fastapi_is_missing(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if not installed: import fastapi fails
    assert cli_error("web") == 'infercast web needs FastAPI and uvicorn: pip install "infercast[web]"'


def test_bad_workers_and_each_worker_process_takes_the_commands_settings(monkeypatch):
    from infercast.web import SETTINGS, served_app

    assert cli_error("web", "--workers", "0") == "--workers must be a whole number from 1, got 0"
    monkeypatch.setenv(SETTINGS, '{"budget": 12.5, "slots": 3}')
    app = served_app()
    assert app.state.worker.slots == 3 and app.state.heavy_budget_s == 12.5
