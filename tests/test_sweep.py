"""``infercast sweep`` and ``query``: lists and ranges, one row per configuration equal to ``estimate()``, skips
counted by reason, chunks written whole, a stopped sweep resumed to exactly the uninterrupted rows, the same
content from every executor, and bad input as one line naming the flag or key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from cli_run import run_main
from infercast import estimate
from infercast.cli import cli
from infercast.dataset import read_dataset
from infercast.errors import InfercastError
from infercast.sweep import Part, make_executor, make_grid, parse_values, plan_chunks, run_sweep, serial

pa = pytest.importorskip("pyarrow")

SMALL = {"model": "llama-3-8b,llama-2-7b", "hardware": "h100-sxm,mi300x", "tp": "1,2,3", "dtype": "fp16,fp8",
         "batch": "1..64:x4", "isl": "512,3072", "osl": "128,1500"}
"""24 combinations (8 with tp 3, which resolve refuses), 4 batches x 4 length pairs (one beyond llama-2-7b's
4,096-token context): 384 configurations."""


def main(*args: str) -> tuple[int, str, str]:
    """The CLI through main() in-process: exit code, stdout, stderr (an escaped exception fails the test)."""
    code, out, err, escaped = run_main(list(args))
    assert escaped is None, escaped
    return code, out, err


def subprocess_main(*args: str) -> tuple[int, str, str]:
    r = subprocess.run([sys.executable, "-c", "from infercast.cli import main; main()", *args],
                       capture_output=True, text=True, timeout=120, check=False)
    return r.returncode, r.stdout, r.stderr


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# --- values ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, kind, expected", [
    ("1,2,4", int, (1, 2, 4)),
    ("1..512:x2", int, (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)),
    ("128..1024:256", int, (128, 384, 640, 896)),
    ("1..4", int, (1, 2, 3, 4)),
    ("1..3,8,16..64:x2", int, (1, 2, 3, 8, 16, 32, 64)),
    ("0.5..2:0.5", float, (0.5, 1.0, 1.5, 2.0)),
    ("h100-sxm, b200", str, ("h100-sxm", "b200")),
    ([1, "4..16:x4"], int, (1, 4, 16)),
    (7, int, (7,)),
])
def test_lists_and_ranges(text, kind, expected):
    assert parse_values("--x", text, kind) == expected


@pytest.mark.parametrize("text, kind, words", [
    ("", int, "the list is empty"),
    (",,", int, "the list is empty"),
    ("512..1", int, "the range 512..1 is empty"),
    ("1..8:x1", int, "factor above 1"),
    ("1..8:0", int, "step above 0"),
    ("a,2", int, "'a' is not a number"),
    ("0,1", int, "0 is not a whole number of at least 1"),
    ("2.5", int, "2.5 is not a whole number"),
    ("1,2,1", int, "1 is listed twice"),
    ("1..1e12", int, "more than 10,000,000 values"),
    ("nan", float, "not a finite number"),
])
def test_bad_lists_are_one_line_naming_the_flag(text, kind, words):
    with pytest.raises(InfercastError) as exc:
        parse_values("--batch", text, kind)
    assert str(exc.value).startswith("--batch") and words in str(exc.value) and "\n" not in str(exc.value)


# --- rows ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "small.parquet"
    grid = make_grid(SMALL, chunk_rows=100)
    result = run_sweep(grid, str(out))
    return grid, result, read_dataset(str(out))


def test_rows_inputs_then_estimate_columns_and_skips_by_reason(small):
    grid, result, table = small
    assert grid.size == 384 and result.configurations == 384
    # tp 3 does not divide 32 heads (both models); llama-2-7b's context is 4,096 tokens (3072 + 1500 - 1 is beyond)
    assert result.skipped == {
        "--tp 3 does not divide llama-3-8b's 32 attention heads": 64,
        "isl + osl - 1 exceeds llama-2-7b's context of 4096 tokens": 48,
        "--tp 3 does not divide llama-2-7b's 32 attention heads": 48,
    }
    assert result.rows == table.num_rows == 384 - 64 - 48 - 48
    names = table.column_names
    assert names[:9] == ["input.model", "input.hardware", "input.tp", "input.dtype", "input.batch", "input.isl",
                         "input.osl", "model", "hardware"]
    assert {"ttft_s", "decode.tpot_s", "memory.fits", "energy.joules_per_token", "cost.usd_per_million_tokens"} <= set(
        names)
    # row order: combinations in axis order, then (isl, osl) pairs, then batch fastest
    rows = table.select(["input.model", "input.hardware", "input.tp", "input.dtype", "input.isl", "input.osl",
                         "input.batch"]).to_pylist()
    first = [tuple(r.values()) for r in rows[:6]]
    assert first == [("llama-3-8b", "h100-sxm", 1, "fp16", 512, 128, b) for b in (1, 4, 16, 64)] + \
        [("llama-3-8b", "h100-sxm", 1, "fp16", 512, 1500, b) for b in (1, 4)]
    keys = [tuple(r.values()) for r in rows]
    assert len(set(keys)) == len(keys)


def test_every_column_equals_estimate_for_sampled_rows(small):
    _, _, table = small
    rows = table.to_pylist()
    for r in rows[:: max(1, len(rows) // 12)]:
        est = estimate(r["input.model"], r["input.hardware"], tp=r["input.tp"], dtype=r["input.dtype"],
                       batch=r["input.batch"], isl=r["input.isl"], osl=r["input.osl"]).to_dict()
        for key, value in r.items():
            if key.startswith("input."):
                continue
            expected = _flat_get(est, key)
            if isinstance(expected, float) and isinstance(value, float):
                assert value == pytest.approx(expected, rel=1e-12, abs=1e-300), key
            else:
                assert value == expected, key


def _flat_get(doc: dict, key: str):
    """A flattened key of the estimate's document; None where a part is missing (a chip without a price)."""
    for part in key.split(".")[:-1]:
        doc = doc.get(part) or {}
    return doc.get(key.split(".")[-1])


def test_what_if_axes_broadcast_and_are_inputs(tmp_path):
    grid = make_grid({"model": "llama-3-8b", "hardware": "h100-sxm", "batch": "1,8",
                      "rates": ["peak_scale=0.5,1"], "efficiency": {"bandwidth": "0.6,0.8"}})
    run_sweep(grid, str(tmp_path / "w.parquet"))
    t = read_dataset(str(tmp_path / "w.parquet")).to_pylist()
    assert len(t) == 8
    r = t[-1]
    assert (r["input.rates.peak_scale"], r["input.efficiency.bandwidth"], r["input.batch"]) == (1.0, 0.8, 8)
    est = estimate("llama-3-8b", "h100-sxm", batch=8, efficiency={"bandwidth": 0.8})
    assert r["decode.tpot_s"] == pytest.approx(est.tpot_s, rel=1e-12)
    slow_bw = [x for x in t if x["input.efficiency.bandwidth"] == 0.6 and x["input.batch"] == 8]
    assert all(x["decode.tpot_s"] > r["decode.tpot_s"] for x in slow_bw)


def test_csv_dataset_and_query(tmp_path):
    out = tmp_path / "r.csv"
    r = invoke("sweep", "--model", "llama-3-8b", "--hardware", "h100-sxm,b200", "--batch", "1..8:x2",
               "--out", str(out), "--no-progress")
    assert r.exit_code == 0 and "wrote 8 rows" in r.stdout
    assert sorted(p.name for p in out.glob("part-*")) == ["part-00000.csv"]
    q = invoke("query", str(out), 'SELECT "input.hardware" AS chip, count(*) AS n, max("input.batch") AS b '
               "FROM result GROUP BY 1 ORDER BY 1", "--output", "json")
    assert json.loads(q.stdout) == [{"chip": "b200", "n": 4, "b": 8}, {"chip": "h100-sxm", "n": 4, "b": 8}]


def test_query_reads_parquet_and_says_what_went_wrong(tmp_path):
    out = tmp_path / "q.parquet"
    run_sweep(make_grid({"model": "llama-3-8b", "hardware": "h100-sxm", "batch": "1,2"}), str(out))
    q = invoke("query", str(out), 'SELECT "input.batch", "decode.tpot_s" FROM result ORDER BY 1', "--output", "csv")
    lines = q.stdout.splitlines()
    assert lines[0] == "input.batch,decode.tpot_s" and len(lines) == 3
    code, _, err = main("query", str(out), "SELECT nope FROM result")
    assert code == 2 and err.startswith("error: query:") and "nope" in err and err.count("\n") == 1


# --- chunks, kill and resume ---------------------------------------------------------------------------------


def test_chunks_are_planned_before_any_work():
    grid = make_grid(SMALL, chunk_rows=100)
    chunks, skipped = plan_chunks(grid)
    assert sum(c.rows for c in chunks) + sum(skipped.values()) == grid.size
    assert all(c.rows <= 100 for c in chunks) and [c.index for c in chunks] == list(range(len(chunks)))
    assert plan_chunks(grid)[0] == chunks


class Stop(Exception):
    pass


def test_a_sweep_stopped_after_k_chunks_resumes_to_exactly_the_uninterrupted_rows(tmp_path, small):
    grid = make_grid(SMALL, chunk_rows=100)
    whole = small[2]
    out = tmp_path / "stopped.parquet"
    seen = []

    def stop_after_three(part: Part) -> None:
        seen.append(part.index)
        if len(seen) == 3:
            raise Stop

    with pytest.raises(Stop):
        run_sweep(grid, str(out), on_part=stop_after_three)
    assert len(list(out.glob("part-*.parquet"))) == 3
    # a stray temporary file from a kill mid-write is ignored and cleaned
    (out / ".part-00003.parquet.tmp").write_bytes(b"half a file")
    with pytest.raises(InfercastError, match="--resume to finish it or --force"):
        run_sweep(grid, str(out))
    redone = []
    result = run_sweep(grid, str(out), resume=True, on_part=lambda p: redone.append(p.index))
    assert result.resumed_chunks == 3 and 0 not in redone and len(redone) == result.chunks - 3
    assert read_dataset(str(out)).equals(whole)
    assert result.skipped == small[1].skipped and result.rows == small[1].rows
    assert not list(out.glob(".*.tmp"))


def test_a_killed_process_resumes_to_exactly_the_uninterrupted_rows(tmp_path, small):
    out = tmp_path / "killed.parquet"
    args = ["sweep", "--model", SMALL["model"], "--hardware", SMALL["hardware"], "--tp", SMALL["tp"], "--dtype",
            SMALL["dtype"], "--batch", SMALL["batch"], "--isl", SMALL["isl"], "--osl", SMALL["osl"],
            "--chunk-rows", "16", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-c", "from infercast.cli import main; main()", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(out.glob("part-*.parquet")) and proc.poll() is None:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    parts = len(list(out.glob("part-*.parquet")))
    code, stdout, err = subprocess_main(*args, "--resume", "--output", "json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert 1 <= parts < doc["chunks"] and doc["resumed_chunks"] >= parts - 1  # killed mid-way
    assert doc["rows"] == small[1].rows and doc["skipped"] == small[1].skipped
    assert read_dataset(str(out)).equals(small[2])


def test_resume_refuses_a_different_grid(tmp_path):
    out = tmp_path / "a.parquet"
    run_sweep(make_grid({"model": "llama-3-8b", "hardware": "h100-sxm", "batch": "1,2"}), str(out))
    with pytest.raises(InfercastError, match="--resume: .* holds a different sweep"):
        run_sweep(make_grid({"model": "llama-3-8b", "hardware": "h100-sxm", "batch": "1,4"}), str(out), resume=True)


# --- executors --------------------------------------------------------------------------------------------------


def test_process_pool_gives_the_serial_content(tmp_path, small):
    grid = make_grid(SMALL, chunk_rows=100)
    out = tmp_path / "process.parquet"
    run_sweep(grid, str(out), executor=make_executor("process", workers=2))
    assert read_dataset(str(out)).equals(small[2])
    serial_dir = tmp_path / "serial.parquet"
    run_sweep(grid, str(serial_dir), executor=serial)
    assert [p.read_bytes() for p in sorted(serial_dir.glob("part-*"))] == \
        [p.read_bytes() for p in sorted(out.glob("part-*"))]


@pytest.mark.ray
def test_ray_gives_the_serial_content(tmp_path, small):
    pytest.importorskip("ray")
    grid = make_grid(SMALL, chunk_rows=100)
    out = tmp_path / "ray.parquet"
    run_sweep(grid, str(out), executor=make_executor("ray", workers=2))
    assert read_dataset(str(out)).equals(small[2])


# --- bad input ----------------------------------------------------------------------------------------------------


BASE = ["sweep", "--model", "llama-3-8b", "--no-progress"]


@pytest.mark.parametrize("args, words", [
    (["--hardware", "h100-sxm", "--batch", ""], "--batch: the list is empty"),
    (["--hardware", "h100-sxm", "--tp", ","], "--tp: the list is empty"),
    (["--hardware", "h100-sxm,h1000", "--batch", "1"], "--hardware: unknown hardware 'h1000'"),
    (["--hardware", "h100-sxm", "--dtype", "fp16,fp9"], "--dtype: unknown format 'fp9'"),
    (["--hardware", "h100-sxm", "--batch", "1..4096", "--isl", "1..4096:x2", "--osl", "64..2048:x2"],
     "the sweep has 319,488 configurations, more than --max-configs 100,000"),
    (["--hardware", "h100-sxm", "--batch", "8..1"], "--batch: the range 8..1 is empty"),
    (["--hardware", "h100-sxm", "--efficiency", "bandwith=0.8"], "--efficiency bandwith: unknown field"),
    (["--hardware", "h100-sxm", "--executor", "ray", "--workers", "0"], "--workers must be at least 1"),
    (["--batch", "1"], "give --hardware (chips) or --system"),
])
def test_bad_input_is_one_line_naming_the_flag(tmp_path, args, words):
    extra = ["--max-configs", "100000"] if "1..4096" in args else []
    code, _, err = main(*BASE, *args, *extra, "--out", str(tmp_path / "r.parquet"))
    assert code == 2 and err.startswith("error: ") and words in err and err.count("\n") == 1, err
    assert not (tmp_path / "r.parquet").exists()


def test_max_configs_yes_lets_a_large_grid_through():
    grid = make_grid({"model": "llama-3-8b", "hardware": "h100-sxm", "batch": "1..200", "isl": "1..600"})
    from infercast.sweep import check_size

    with pytest.raises(InfercastError, match="120,000 configurations, more than --max-configs 100,000; pass --yes"):
        check_size(grid, 100_000)
    check_size(grid, 100_000, yes=True)


def test_yaml_spec_unknown_key_is_named(tmp_path):
    spec = tmp_path / "grid.yaml"
    spec.write_text("model: llama-3-8b\nhardware: [h100-sxm, b200]\ntp: 1..2:x2\nbatchs: [1, 2]\n")
    code, _, err = main("sweep", "--spec", str(spec), "--out", str(tmp_path / "r.parquet"))
    assert code == 2 and err == f"error: --spec {spec}: batchs: unknown key; remove it or check its spelling\n"
    spec.write_text("model: llama-3-8b\nhardware: [h100-sxm, b200]\ntp: 1..2:x2\nbatch: [1, 0]\n")
    code, _, err = main("sweep", "--spec", str(spec), "--out", str(tmp_path / "r.parquet"))
    assert code == 2 and err.startswith(f"error: --spec {spec}: batch: 0 is not a whole number")


def test_yaml_spec_runs_and_flags_replace_its_keys(tmp_path):
    spec = tmp_path / "grid.yaml"
    spec.write_text("model: llama-3-8b\nhardware: [h100-sxm, b200]\ntp: [1, 2]\nbatch: '1..16:x4'\n"
                    "efficiency: {bandwidth: [0.7, 0.8]}\n")
    out = tmp_path / "r.parquet"
    r = invoke("sweep", "--spec", str(spec), "--tp", "1", "--out", str(out), "--no-progress", "--output", "json")
    doc = json.loads(r.stdout)
    assert doc["rows"] == 2 * 1 * 3 * 2
    t = read_dataset(str(out))
    assert set(t.column("input.tp").to_pylist()) == {1}
    assert set(t.column("input.efficiency.bandwidth").to_pylist()) == {0.7, 0.8}


def test_existing_output_needs_resume_or_force(tmp_path):
    out = tmp_path / "r.parquet"
    args = [*BASE, "--hardware", "h100-sxm", "--out", str(out)]
    assert main(*args)[0] == 0
    code, _, err = main(*args)
    assert code == 2 and "a sweep is already there; pass --resume to finish it or --force to replace it" in err
    assert main(*args, "--force")[0] == 0
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    code, _, err = main(*BASE, "--hardware", "h100-sxm", "--out", str(other), "--force")
    assert code == 2 and "a folder that holds other files" in err and (other / "keep.txt").read_text() == "mine"


def test_a_missing_extra_names_the_pip_command(monkeypatch, tmp_path):
    import builtins

    real = builtins.__import__

    def no_pyarrow(name, *a, **k):
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    import importlib

    monkeypatch.setattr(importlib, "import_module", lambda name, *a: no_pyarrow(name))
    with pytest.raises(InfercastError) as exc:
        run_sweep(make_grid({"model": "llama-3-8b", "hardware": "h100-sxm"}), str(tmp_path / "r.parquet"))
    assert str(exc.value) == 'this needs pyarrow, which is not installed: pip install "infercast[sweep]"'


def test_numeric_axes_are_never_a_python_loop(monkeypatch):
    """One evaluate call per combination and piece, whatever the sizes of batch, isl and osl."""
    import infercast.evaluation as ev

    calls = []
    real = ev.evaluate

    def counting(*a, **k):
        calls.append(np.broadcast_shapes(*(np.shape(v) for v in (k["batch"], k["isl"], k["osl"]))))
        return real(*a, **k)

    monkeypatch.setattr(ev, "evaluate", counting)
    from infercast.sweep import compute_chunk

    grid = make_grid({"model": "llama-3-8b", "hardware": "h100-sxm,b200", "batch": "1..256", "isl": "128..2048:128",
                      "osl": "64,128"})
    chunks, _ = plan_chunks(grid)
    table, _ = compute_chunk(grid, chunks[0])
    assert len(calls) == 2 and calls[0] == (32, 256) and table.num_rows == 2 * 256 * 32
