"""The command line: the JSON contract, every output format, and one-line errors from a real process."""

import csv
import io
import json
import math
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from infercast import chip_ids, estimate
from infercast.cli import cli

ANSI = re.compile(r"\x1b\[[0-9;]*m")
BOUNDS = {"compute", "memory", "communication", "overhead"}

# DESIGN.md, Contracts, "Catalog ids" (models): 22 from HF config.json files plus gpt-4-class-moe.
DESIGN_MODELS = (
    "llama-1-7b llama-1-13b llama-1-30b llama-2-7b llama-2-13b llama-2-70b llama-3-8b llama-3-70b llama-3.1-8b "
    "llama-3.1-70b llama-3.1-405b llama-3.3-70b mistral-7b mixtral-8x7b mixtral-8x22b qwen2.5-7b qwen2.5-72b "
    "deepseek-v3 gpt-2-xl gpt-j-6b gpt-3-175b bloom-176b gpt-4-class-moe gpt-oss-120b"
).split()


def run(*args: str) -> str:
    """Invoke the CLI in-process; wide terminal so rich never wraps a cell; stdout without colour codes."""
    result = CliRunner(env={"COLUMNS": "200"}).invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return ANSI.sub("", result.stdout)


def run_json(*args: str):
    return json.loads(run(*args, "--output", "json"))


def process(*args: str) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter through main(), which turns InfercastError into 'error: ...' and exit 2."""
    return subprocess.run([sys.executable, "-c", "from infercast.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=60)


LLAMA2_7B_A100 = ("estimate", "--model", "llama-2-7b", "--hardware", "a100-sxm-80gb",
                  "--batch", "1", "--isl", "128", "--osl", "128")


@pytest.fixture(scope="module")
def llama2_7b_json():
    return run_json(*LLAMA2_7B_A100)


def test_estimate_json_has_every_contract_key(llama2_7b_json):
    r = llama2_7b_json
    # DESIGN.md, Contracts, "estimate --output json" (more keys may be added, none renamed)
    assert {"model", "hardware", "parallel", "workload", "params", "memory", "prefill", "decode", "ttft_s",
            "e2e_latency_s", "throughput_tokens_per_s", "utilization", "energy", "cost", "breakdown"} <= set(r)
    assert {"tp", "pp", "ep", "dp", "num_chips"} <= set(r["parallel"])
    assert {"batch", "isl", "osl", "weight_dtype", "act_dtype", "kv_dtype"} <= set(r["workload"])
    assert {"total", "active"} <= set(r["params"])
    assert {"weights_bytes", "kv_cache_bytes", "kv_cache_bytes_if_mha", "activation_bytes", "overhead_bytes",
            "total_per_chip_bytes", "capacity_per_chip_bytes", "fits", "min_chips", "max_batch"} <= set(r["memory"])
    assert {"latency_s", "flops", "bytes", "bound"} <= set(r["prefill"])
    assert {"tpot_s", "tokens_per_s", "latency_s", "flops", "bytes", "bound"} <= set(r["decode"])
    assert {"prefill_compute", "decode_compute", "decode_bandwidth"} <= set(r["utilization"])
    assert r["breakdown"]
    for row in r["breakdown"]:
        # the contract's six keys, plus "tier" (added for collectives: which link they use) and
        # "weight_bytes" (the share of bytes that are weights: MoE experts touched, sparse storage)
        assert set(row) == {"op", "phase", "flops", "bytes", "weight_bytes", "time_s", "bound", "tier"}
        assert row["bound"] in BOUNDS
        assert row["phase"] in ("prefill", "decode")
    assert r["prefill"]["bound"] in BOUNDS and r["decode"]["bound"] in BOUNDS
    assert r["model"] == "llama-2-7b" and r["hardware"] == "a100-sxm-80gb"
    assert r["parallel"] == {"tp": 1, "pp": 1, "ep": 1, "dp": 1, "num_chips": 1, "pp_stages": [32],
                             "micro_batches": 1, "sequence_parallel": False}
    assert r["workload"] == {"batch": 1, "isl": 128, "osl": 128, "weight_dtype": "fp16", "act_dtype": "fp16",
                             "kv_dtype": "fp16", "weight_sparsity": 0.0, "sparsity_pattern": "unstructured",
                             "activation_sparsity": 0.0, "moe_imbalance": 1.0, "beam_width": 1, "n": 1}
    assert r["framework"] == "generic"
    assert r["sparsity"] is None  # dense: nothing declared


def test_estimate_json_golden_memory(llama2_7b_json):
    m = llama2_7b_json["memory"]
    # LLaMA-2-7B has 6,738,415,616 parameters (HF sum of numel); x 2 bytes (fp16) = 13,476,831,232 B
    assert llama2_7b_json["params"] == {"total": 6_738_415_616, "active": 6_738_415_616}
    assert m["weights_bytes"] == pytest.approx(13.48e9, rel=0.01)
    assert m["weights_bytes"] == 13_476_831_232
    # KV per token: 2 (K, V) x 32 layers x 32 kv heads x 128 head_dim x 2 bytes = 524,288 B;
    # batch 1 x (128 + 128) tokens = 256 tokens. MHA model: the if-MHA figure is the same.
    assert m["kv_cache_bytes"] == 256 * 524_288
    assert m["kv_cache_bytes_if_mha"] == 256 * 524_288
    assert m["capacity_per_chip_bytes"] == 80 * 2**30  # the A100's "80 GB" of HBM2e is 80 GiB
    assert m["fits"] is True
    assert m["min_chips"] == 1
    assert m["total_per_chip_bytes"] == pytest.approx(
        m["weights_bytes"] + m["kv_cache_bytes"] + m["activation_bytes"] + m["overhead_bytes"], rel=1e-12)


def test_estimate_json_metric_definitions(llama2_7b_json):
    r = llama2_7b_json
    batch, osl = 1, 128
    # breakdown rows are per chip and decode rows total all osl-1 steps, so they add up to E2E
    assert sum(row["time_s"] for row in r["breakdown"]) == pytest.approx(r["e2e_latency_s"], rel=1e-9)
    assert sum(row["time_s"] for row in r["breakdown"] if row["phase"] == "prefill") == pytest.approx(
        r["ttft_s"], rel=1e-9)
    # vLLM conventions (DESIGN.md): TTFT = prefill; TPOT = (E2E - TTFT) / (osl - 1)
    assert r["ttft_s"] == r["prefill"]["latency_s"]
    assert r["decode"]["tpot_s"] == pytest.approx((r["e2e_latency_s"] - r["ttft_s"]) / (osl - 1), rel=1e-9)
    assert r["decode"]["tokens_per_s"] == pytest.approx(batch * (osl - 1) / r["decode"]["latency_s"], rel=1e-9)
    assert r["throughput_tokens_per_s"] == pytest.approx(batch * osl / r["e2e_latency_s"], rel=1e-9)
    # a 7B model at batch 1: 128 prompt tokens sit at the A100's ridge (FLOPs and weight bytes take about
    # as long, 3-4 ms), where the generic engine's launches (356 kernels at the fit's 20 us each, 7 ms) can
    # outweigh both; decode is bandwidth-bound
    assert r["prefill"]["bound"] in ("compute", "memory", "overhead")
    assert r["decode"]["bound"] == "memory"
    for u in r["utilization"].values():
        assert 0 < u <= 1


def test_estimate_json_is_the_library_result(llama2_7b_json):
    # the CLI adds nothing and loses nothing: same dict as estimate().to_dict() through JSON
    lib = estimate("llama-2-7b", "a100-sxm-80gb", batch=1, isl=128, osl=128).to_dict()
    assert llama2_7b_json == json.loads(json.dumps(lib))


def test_llama2_70b_kv_cache_c1():
    r = run_json("estimate", "--model", "llama-2-70b", "--hardware", "h100-sxm", "--batch", "8",
                 "--isl", "4095", "--osl", "1", "--dtype", "fp16")
    m = r["memory"]
    # 8 sequences x (4095 + 1) = 32,768 tokens.
    # GQA: 2 x 80 layers x 8 kv heads x 128 head_dim x 2 B = 327,680 B/token; x 32,768 = 10,737,418,240 (10 GiB)
    assert m["kv_cache_bytes"] == 10_737_418_240
    # if all 64 heads had K/V: 2 x 80 x 64 x 128 x 2 = 2,621,440 B/token; x 32,768 = 85,899,345,920 (80 GiB)
    assert m["kv_cache_bytes_if_mha"] == 85_899_345_920
    # osl 1: the prefill yields the only token, so there is no TPOT and no decode row
    assert r["decode"]["tpot_s"] is None
    assert r["decode"]["latency_s"] == 0
    assert {row["phase"] for row in r["breakdown"]} == {"prefill"}
    assert r["e2e_latency_s"] == r["ttft_s"]


def test_llama2_70b_on_a_4090_is_an_answer_not_an_error():
    r = run_json("estimate", "--model", "llama-2-70b", "--hardware", "rtx-4090")
    m = r["memory"]
    assert m["fits"] is False
    # weights alone: 68,976,648,192 params x 2 B = 137.95 GB over 24 GB cards -> at least 6;
    # with vLLM's 0.9 utilisation and 1 GiB runtime per card, 21.6 - 1.07 = 20.53 GB free -> 7
    assert r["params"]["total"] == 68_976_648_192
    # 6 cards by weights alone; 8 as a valid plan: 7 chips allow only pp=7 (7 does not divide the
    # 64 heads), whose first stage (12 layers + embedding, 20.8 GB) exceeds 20.5 GB usable per card
    assert m["min_chips"] == 8
    assert m["max_batch"] == 0
    assert isinstance(m["reason"], str) and f"{m['min_chips']} chips" in m["reason"]


def test_dtype_and_memory_flags_reach_the_engine():
    r = run_json(*LLAMA2_7B_A100, "--kv-cache-dtype", "fp8", "--gpu-memory-utilization", "0.5",
                 "--efficiency", "bandwidth=0.5")
    assert r["workload"]["weight_dtype"] == "fp16" and r["workload"]["kv_dtype"] == "fp8"
    # fp8 KV: 1 byte per element, half of 256 x 524,288
    assert r["memory"]["kv_cache_bytes"] == 256 * 262_144
    assert r["memory"]["usable_per_chip_bytes"] == pytest.approx(0.5 * 80 * 2**30)
    assert r["efficiency"]["bandwidth"] == 0.5
    r = run_json(*LLAMA2_7B_A100, "--dtype", "fp8", "--weight-dtype", "int4")
    assert (r["workload"]["weight_dtype"], r["workload"]["act_dtype"], r["workload"]["kv_dtype"]) == (
        "int4", "fp8", "fp8")
    # int4 weights: 0.5 B per parameter
    assert r["memory"]["weights_bytes"] == 6_738_415_616 * 0.5


def test_estimate_table():
    out = run(*LLAMA2_7B_A100)
    assert "llama-2-7b" in out and "a100-sxm-80gb" in out
    assert "TTFT" in out and "TPOT" in out and " ms" in out
    assert "fits" in out
    assert "qkv_proj" not in out  # the per-operator table only with --breakdown
    out = run(*LLAMA2_7B_A100, "--breakdown")
    assert "TTFT" in out and "TPOT" in out
    for op in ("qkv_proj", "out_proj", "mlp_gate_up", "mlp_down", "lm_head"):
        assert op in out
    assert "prefill" in out and "decode" in out


def test_estimate_table_says_when_it_does_not_fit():
    out = run("estimate", "--model", "llama-2-70b", "--hardware", "rtx-4090")
    assert "does not fit" in out


def test_estimate_csv_is_a_header_and_one_row(llama2_7b_json):
    text = run(*LLAMA2_7B_A100, "--output", "csv")
    assert len(text.splitlines()) == 2
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 1
    row = rows[0]
    assert row["model"] == "llama-2-7b"
    assert float(row["memory.kv_cache_bytes"]) == 256 * 524_288
    assert float(row["ttft_s"]) == pytest.approx(llama2_7b_json["ttft_s"], rel=1e-12)
    assert float(row["decode.tpot_s"]) == pytest.approx(llama2_7b_json["decode"]["tpot_s"], rel=1e-12)


def test_estimate_breakdown_csv_is_one_row_per_operator(llama2_7b_json):
    text = run(*LLAMA2_7B_A100, "--output", "csv", "--breakdown")
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == ["op", "phase", "flops", "bytes", "time_s", "bound", "tier", "weight_bytes"]
    rows = list(reader)
    assert len(rows) == len(llama2_7b_json["breakdown"])
    assert sum(float(r["time_s"]) for r in rows) == pytest.approx(llama2_7b_json["e2e_latency_s"], rel=1e-9)
    assert {r["bound"] for r in rows} <= BOUNDS


def test_hardware_list_in_every_format():
    rows = run_json("hardware", "list")
    assert [r["id"] for r in rows] == chip_ids()
    assert len(rows) == 47  # DESIGN.md's hardware ids: 27 of the first round, 8 of the second, 11 older cards, rtx-a6000 (offload data)
    h100 = next(r for r in rows if r["id"] == "h100-sxm")
    assert h100["bf16_tflops"] == pytest.approx(989.4)
    # 80 GiB of HBM3: 85.9 GB in SI units, 80 in the vendor's (binary) gigabytes
    assert (h100["memory_gb"], h100["memory_gib"]) == pytest.approx((85.899345920, 80))
    assert h100["bandwidth_gb_per_s"] == pytest.approx(3350)
    assert h100["tdp_w"] == 700
    table = run("hardware", "list")
    for cid in ("h100-sxm", "mi300x", "tpu-v5p", "arc-pro-b60"):
        assert cid in table
    csv_rows = list(csv.DictReader(io.StringIO(run("hardware", "list", "--output", "csv"))))
    assert [r["id"] for r in csv_rows] == chip_ids()
    assert float(next(r for r in csv_rows if r["id"] == "a100-sxm-80gb")["bandwidth_gb_per_s"]) == pytest.approx(2039)


def test_hardware_show_has_sources():
    text = run("hardware", "show", "h100-sxm")
    assert "source" in text
    data = yaml.safe_load(text)
    assert data["id"] == "h100-sxm"
    assert data["peak_flops"]["bf16"]["value"] == pytest.approx(989.4e12)
    assert "source" in data["peak_flops"]["bf16"]
    # an alias shows the same chip, and JSON is available too
    assert run_json("hardware", "show", "h100") == json.loads(json.dumps(data))


def test_hardware_list_and_show_print_the_new_chips():
    # row b300 of shared/data/hardware-reference.csv: bf16 2250 dense, 270 GB, 7700 GB/s, 1100 W
    b300 = next(r for r in run_json("hardware", "list") if r["id"] == "b300")
    assert (b300["bf16_tflops"], b300["memory_gib"], b300["bandwidth_gb_per_s"], b300["tdp_w"]) == \
        pytest.approx((2250, 270, 7700, 1100))
    table = run("hardware", "list")
    for cid in ("b300", "mi355x", "tpu-v6e", "trainium2", "t4", "jetson-agx-orin"):
        assert cid in table
    data = yaml.safe_load(run("hardware", "show", "b300"))
    assert data["family"] == "nvidia-blackwell-ultra"
    assert data["peak_flops"]["fp4"]["value"] == pytest.approx(13500e12)  # HGX B300 108 PF dense / 8
    assert "source" in data["peak_flops"]["fp4"]


def test_models_list_has_every_design_preset():
    rows = run_json("models", "list")
    assert len(DESIGN_MODELS) == 24
    training = {r["id"] for r in rows if r["id"].startswith(("mpt-", "nemotron-", "megatron-", "mt-nlg-", "gpt-3-"))}
    assert len(training - {"gpt-3-175b"}) == 18  # the training data's models (tests/test_model.py TRAINING_PRESETS)
    # plus the OPT decoders the offload measurements use (measured-offload.csv)
    decoders = {r["id"] for r in rows if r["kind"] == "decoder"}
    assert decoders == set(DESIGN_MODELS) | training | {"opt-6.7b", "opt-30b", "opt-66b", "opt-175b"}
    row = next(r for r in rows if r["id"] == "llama-2-7b")
    assert row["params_b"] == 6.74 and row["kv_heads"] == 32 and row["context"] == 4096
    assert "mixtral-8x7b" in run("models", "list")


def test_models_show_llama2_70b():
    data = run_json("models", "show", "llama-2-70b")
    assert data["num_kv_heads"] == 8
    assert data["num_heads"] == 64 and data["num_layers"] == 80 and data["hidden_size"] == 8192
    assert data["params_total"] == 68_976_648_192
    # 2 x 80 layers x 8 kv heads x 128 head_dim x 2 B
    assert data["kv_bytes_per_token_fp16"] == 327_680
    assert "num_kv_heads" in run("models", "show", "llama-2-70b")


def test_claims_json():
    rows = run_json("claims")
    assert [r["id"] for r in rows] == [f"C{i}" for i in range(1, 21)]
    assert {r["verdict"] for r in rows} <= {"reproduced", "corrected", "refuted", "partial", "not_yet"}
    for r in rows[:4]:
        assert r["verdict"] != "not_yet", r["id"]
    for r in rows:
        assert r["title"] and r["explanation"]
    c1 = rows[0]["figures"]
    assert c1["kv_cache_bytes"] == 10_737_418_240 and c1["kv_cache_bytes_if_mha"] == 85_899_345_920


def _bundled_data_rows() -> int:
    text = (resources.files("infercast") / "catalog" / "measured" / "public.csv").read_text()
    return len(list(csv.DictReader(io.StringIO(text))))


def test_validate_public_json():
    out = run_json("validate", "--data", "public")
    assert set(out) == {"rows", "summary"}
    rows = out["rows"]
    assert len(rows) == _bundled_data_rows() > 100
    for r in rows:
        predicted, reason = r["predicted"], r["skipped_reason"]
        if predicted is None:
            assert isinstance(reason, str) and reason.strip(), r["id"]
        else:
            assert isinstance(predicted, float) and math.isfinite(predicted) and predicted > 0, r["id"]
            assert reason is None
    s = out["summary"]
    assert s["rows"] == len(rows)
    assert s["predicted"] == sum(r["predicted"] is not None for r in rows) > 0
    assert s["predicted"] + s["skipped"] == s["rows"]
    assert sum(s["skipped_reasons"].values()) == s["skipped"]


def test_validate_table_and_csv():
    table = run("validate", "--data", "public")
    assert "rows predicted; skipped:" in table
    rows = list(csv.DictReader(io.StringIO(run("validate", "--data", "public", "--output", "csv"))))
    assert len(rows) == _bundled_data_rows()


def test_validate_a_user_csv(tmp_path):
    text = (resources.files("infercast") / "catalog" / "measured" / "public.csv").read_text()
    header, *lines = text.splitlines()
    first = next(line for line in lines if line.startswith("trtllm-"))
    path = tmp_path / "mine.csv"
    path.write_text(f"{header}\n{first}\n")
    out = run_json("validate", "--data", str(path))
    assert len(out["rows"]) == 1 and out["summary"]["rows"] == 1


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    yield prefix
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name)


COMMANDS = list(_commands(cli))


def test_the_contract_commands_exist():
    assert {("estimate",), ("hardware", "list"), ("hardware", "show"), ("models", "list"), ("models", "show"),
            ("claims",), ("validate",)} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "infercast")
def test_help(command):
    out = run(*command, "--help")
    assert "Usage:" in out


def test_version():
    assert "0.1.0" in run("--version")


# --- real processes ---------------------------------------------------------------------------


def _console_script() -> Path:
    exe = Path(sys.executable).parent / ("infercast.exe" if sys.platform == "win32" else "infercast")
    assert exe.is_file(), f"console script not installed next to {sys.executable}; run pip install -e ."
    return exe


def test_console_script_estimate_json(llama2_7b_json):
    done = subprocess.run([str(_console_script()), *LLAMA2_7B_A100, "--output", "json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert json.loads(done.stdout) == llama2_7b_json


def test_console_script_bad_input():
    done = subprocess.run([str(_console_script()), "estimate", "--model", "llama-2-7b", "--hardware", "h100-sxn"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("error: unknown hardware 'h100-sxn'")


def test_python_dash_m_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "infercast.cli", "hardware", "list", "--output", "csv"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [r["id"] for r in csv.DictReader(io.StringIO(done.stdout))] == chip_ids()


ESTIMATE = ("estimate", "--model", "llama-2-7b", "--hardware", "a100-sxm-80gb")


def _bad_inputs():
    yield "unknown-model", ("estimate", "--model", "llama-2-7", "--hardware", "a100-sxm-80gb"), \
        ("unknown model 'llama-2-7'", "did you mean", "llama-2-7b")
    yield "unknown-chip", ("estimate", "--model", "llama-2-7b", "--hardware", "h100-sxn"), \
        ("unknown hardware 'h100-sxn'", "did you mean", "h100-sxm")
    yield "batch-0", (*ESTIMATE, "--batch", "0"), ("batch", "got 0")
    yield "isl-negative", (*ESTIMATE, "--isl", "-5"), ("--isl", "-5")
    # llama-2-7b's context is 4096 tokens; 4000 + 200 = 4200
    yield "past-context", (*ESTIMATE, "--isl", "4000", "--osl", "200"), ("4200", "4096", "--isl")
    yield "dtype", (*ESTIMATE, "--dtype", "fp9"), ("dtype", "'fp9'")
    yield "efficiency-range", (*ESTIMATE, "--efficiency", "bandwidth=2"), ("--efficiency bandwidth",)
    yield "efficiency-syntax", (*ESTIMATE, "--efficiency", "nonsense"), ("--efficiency", "'nonsense'", "KEY=NUMBER")
    yield "model-path", ("estimate", "--model", "/nonexistent/config.json", "--hardware", "h100-sxm"), \
        ("--model", "/nonexistent/config.json")
    yield "malformed-config", ("estimate", "--model", "{malformed}", "--hardware", "h100-sxm"), \
        ("--model", "not valid JSON")
    yield "incomplete-config", ("estimate", "--model", "{incomplete}", "--hardware", "h100-sxm"), \
        ("hidden_size",)
    yield "validate-missing", ("validate", "--data", "/nonexistent.csv"), ("--data", "/nonexistent.csv")
    yield "validate-columns", ("validate", "--data", "{columns}"), ("--data", "missing column(s)", "metric")
    yield "show-unknown", ("hardware", "show", "h100-sxn"), ("did you mean", "h100-sxm")
    yield "models-show-unknown", ("models", "show", "lama-2-70b"), ("did you mean", "llama-2-70b")
    # click's own usage errors are one line too, with a pointer to the command's help
    yield "missing-option", ("estimate", "--hardware", "h100-sxm"), ("Missing option '--model'", "--help")
    yield "bad-choice", (*ESTIMATE, "--output", "xml"), ("'--output'", "'xml'")
    yield "not-an-int", (*ESTIMATE, "--batch", "many"), ("'--batch'", "'many'")
    yield "quantization", (*ESTIMATE, "--quantization", "q4"), ("--quantization", "'q4'", "q4_0")
    yield "sparsity-range", (*ESTIMATE, "--weight-sparsity", "1.2"), ("--weight-sparsity", "fraction")
    yield "sparsity-pattern", (*ESTIMATE, "--sparsity-pattern", "4:2"), ("--sparsity-pattern", "N:M")
    yield "sparsity-mismatch", (*ESTIMATE, "--weight-sparsity", "0.3", "--sparsity-pattern", "2:4"), \
        ("--weight-sparsity must be 0.5",)
    yield "activation-sparsity", (*ESTIMATE, "--activation-sparsity", "-1"), ("--activation-sparsity",)
    yield "moe-imbalance", (*ESTIMATE, "--moe-imbalance", "0.5"), ("--moe-imbalance", "at least 1")
    yield "calibration-missing", (*ESTIMATE, "--calibration", "/nonexistent.yaml"), ("--calibration", "no such file")
    yield "calibrate-neither", ("calibrate",), ("exactly one of --fit", "--local")
    # an existing file is refused before the fit starts, not after minutes of fitting
    yield "calibrate-exists", ("calibrate", "--fit", "public", "--output", "{columns}"), \
        ("--output", "exists", "--force")


BAD_INPUTS = list(_bad_inputs())


@pytest.mark.parametrize("args,expected", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, expected):
    malformed = tmp_path / "malformed" / "config.json"
    malformed.parent.mkdir()
    malformed.write_text("{not json")
    incomplete = tmp_path / "incomplete.json"  # a llama config without hidden_size
    incomplete.write_text(json.dumps({"model_type": "llama", "vocab_size": 32000, "num_hidden_layers": 2,
                                      "num_attention_heads": 4, "intermediate_size": 64,
                                      "max_position_embeddings": 128}))
    columns = tmp_path / "columns.csv"
    columns.write_text("id,model,hardware,scenario,value\nx,llama-2-7b,h100-sxm,static,1\n")
    paths = {"{malformed}": str(malformed), "{incomplete}": str(incomplete), "{columns}": str(columns)}
    done = process(*(paths.get(a, a) for a in args))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    for text in expected:
        assert text in lines[0]


def test_help_lists_lazy_commands_without_importing_them():
    """``infercast --help`` lists every command with its own one-line help, importing none of the lazy ones."""
    import subprocess
    import sys

    from infercast.cli import _Commands

    code = ("import sys; from click.testing import CliRunner; from infercast.cli import cli; "
            "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0, r.output; "
            "print(r.output); print(sorted(m for m in sys.modules if m.startswith('infercast.serving')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.rstrip().endswith("[]")
    for name, (_, short) in _Commands.LAZY.items():
        real = cli.get_command(None, name)
        assert real.get_short_help_str(1000) == short
        assert name in out
