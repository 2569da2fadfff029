"""Fuzzing the readers: whatever a file holds, a reader returns a valid object or raises InfercastError
with a one-line message, never another exception.

Each reader (config.json, chip, system and profile YAML, trace and measured CSV) gets random bytes,
random nesting, and valid files with one field replaced by a random value (any JSON value, a string,
a negative, zero, NaN, inf, a huge number, a nested dict). Derandomized, so a run is reproducible;
raise max_examples and drop derandomize locally to hunt for more.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from infercast.calibration import Calibration, load_calibration
from infercast.errors import InfercastError
from infercast.hardware import Chip, Sourced, load_chip
from infercast.model import ModelSpec, load_model, normalise
from infercast.serving.workload import read_trace
from infercast.system import System, load_system
from infercast.validate import read_rows

from test_bad_inputs import CHIP, DEEPSEEK, FALCON, GPT2, LLAMA, MEASURED_HEADER, MIXTRAL, PROFILE, SYSTEM, measured

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=8)
# the values that break readers: zero, signs, non-finite, huge, the right number as a string, nesting
nasty = st.one_of(json_values, st.sampled_from([0, -1, 1, 0.5, -0.0, math.nan, math.inf, -math.inf, 10**30, 1e300,
                                                2**63, "4096", "", "nan", {"value": 1}, [1, 2], True, False, None]))
nested_text = st.builds(lambda depth, opener: opener * depth + {"[": "]", "{": "}"}[opener] * depth,
                        st.integers(1, 5000), st.sampled_from("[{"))

_counter = itertools.count()


def write(tmp: Path, data: str | bytes, suffix: str) -> str:
    """A fresh file name per example: the loaders cache by path."""
    path = tmp / f"f{next(_counter)}{suffix}"
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
    return str(path)


def one_line_error_or(check, call):
    """``call()`` either returns something ``check`` accepts or raises a one-line InfercastError."""
    try:
        result = call()
    except InfercastError as exc:
        message = str(exc)
        assert message and len(message.splitlines()) == 1, repr(message)
        return
    check(result)


def replaced(doc: dict, path: tuple, value) -> dict:
    out = copy.deepcopy(doc)
    node = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


def leaf_paths(doc, prefix=()) -> list[tuple]:
    if isinstance(doc, dict) and doc:
        return [p for k, v in doc.items() for p in leaf_paths(v, (*prefix, k))] + ([prefix] if prefix else [])
    return [prefix]


# --- config.json ----------------------------------------------------------------------------------

CONFIGS = [LLAMA, MIXTRAL, DEEPSEEK, FALCON, GPT2]


def valid_spec(spec: ModelSpec) -> None:
    total, active = spec.params()
    assert total >= active > 0
    assert spec.kv_elements_per_token() > 0
    assert spec.num_heads % spec.num_kv_heads == 0
    assert 0 <= spec.first_dense_layers < spec.num_layers or not spec.is_moe
    assert spec.experts_per_token <= spec.num_experts


@FUZZ
@given(base=st.sampled_from(CONFIGS), data=st.data(), value=nasty)
def test_config_with_one_field_replaced(base, data, value):
    key = data.draw(st.sampled_from(sorted(base) + ["head_dim", "sliding_window", "n_inner", "text_config"]))
    one_line_error_or(valid_spec, lambda: normalise({**base, key: value}, "fuzz"))


@FUZZ
@given(config=st.dictionaries(st.sampled_from(sorted(set().union(*CONFIGS))), nasty, max_size=12))
def test_config_of_random_fields(config):
    one_line_error_or(valid_spec, lambda: normalise({"model_type": "llama", **config}, "fuzz"))


@FUZZ
@given(content=st.one_of(st.binary(max_size=600), nested_text, st.text(max_size=200),
                         json_values.map(json.dumps)))
def test_config_file_of_random_content(tmp_path, content):
    path = write(tmp_path, content, ".json")
    one_line_error_or(valid_spec, lambda: load_model.__wrapped__(path))


# --- chip YAML --------------------------------------------------------------------------------------

CHIP_PATHS = leaf_paths(CHIP)


def valid_chip(chip: Chip) -> None:
    def figures(obj):
        if isinstance(obj, Sourced):
            yield obj
        elif isinstance(obj, BaseModel):
            for name in type(obj).model_fields:
                yield from figures(getattr(obj, name))
        elif isinstance(obj, (tuple, list)):
            for item in obj:
                yield from figures(item)

    for figure in figures(chip):
        assert figure.value is None or (math.isfinite(figure.value) and figure.value >= 0)
    assert chip.memory.capacity_bytes.value is None or chip.memory.capacity_bytes.value > 0
    assert chip.tdp_w.value is None or chip.idle_w.value is None or chip.idle_w.value <= chip.tdp_w.value


@FUZZ
@given(path=st.sampled_from(CHIP_PATHS), value=nasty)
def test_chip_yaml_with_one_field_replaced(tmp_path, path, value):
    text = yaml.safe_dump(replaced(CHIP, path, value), sort_keys=False)
    file = write(tmp_path, text, ".yaml")
    one_line_error_or(valid_chip, lambda: load_chip.__wrapped__(file))


@FUZZ
@given(content=st.one_of(st.binary(max_size=600), nested_text, st.text(max_size=200),
                         json_values.map(lambda v: yaml.safe_dump(v))))
def test_chip_yaml_of_random_content(tmp_path, content):
    file = write(tmp_path, content, ".yaml")
    one_line_error_or(valid_chip, lambda: load_chip.__wrapped__(file))


SYSTEM_PATHS = leaf_paths(SYSTEM)


def valid_system(system: System) -> None:
    for tier in (system.intra_node, system.inter_node):
        if tier is not None:
            value = tier.bandwidth_bytes_per_s_per_direction.value
            assert value is None or (math.isfinite(value) and value > 0)


@FUZZ
@given(path=st.sampled_from(SYSTEM_PATHS), value=nasty)
def test_system_yaml_with_one_field_replaced(tmp_path, path, value):
    file = write(tmp_path, yaml.safe_dump(replaced(SYSTEM, path, value), sort_keys=False), ".yaml")
    one_line_error_or(valid_system, lambda: load_system.__wrapped__(file))


# --- calibration profiles ---------------------------------------------------------------------------

PROFILE_PATHS = [p for p in leaf_paths(PROFILE) if p[0] != "fit"]


def valid_profile(profile: Calibration) -> None:
    for table in (profile.generic, *profile.families.values(), *profile.chips.values(), profile.comm):
        for value in table.values():
            assert not isinstance(value, float) or math.isfinite(value)


@FUZZ
@given(path=st.sampled_from(PROFILE_PATHS), value=nasty)
def test_profile_with_one_field_replaced(tmp_path, path, value):
    file = write(tmp_path, yaml.safe_dump(replaced(PROFILE, path, value), sort_keys=False), ".yaml")
    one_line_error_or(valid_profile, lambda: load_calibration.__wrapped__(file))


@FUZZ
@given(table=st.sampled_from(["families", "chips"]), key=st.text(max_size=20), value=nasty)
def test_profile_with_a_random_entry(tmp_path, table, key, value):
    doc = copy.deepcopy(PROFILE)
    doc[table][key] = value
    file = write(tmp_path, yaml.safe_dump(doc, sort_keys=False), ".yaml")
    one_line_error_or(valid_profile, lambda: load_calibration.__wrapped__(file))


@FUZZ
@given(content=st.one_of(st.binary(max_size=600), nested_text, st.text(max_size=200)))
def test_profile_of_random_content(tmp_path, content):
    file = write(tmp_path, content, ".yaml")
    one_line_error_or(valid_profile, lambda: load_calibration.__wrapped__(file))


# --- trace CSV ---------------------------------------------------------------------------------------

cells = st.one_of(st.text(max_size=12), st.sampled_from(["0", "-1", "1.5", "nan", "inf", "-inf", "1e300", "1e-300",
                                                         "", " 7 ", "0x10", "1_000", "٣"]),
                  st.floats().map(repr), st.integers(-(2**70), 2**70).map(str))


def valid_requests(r) -> None:
    assert len(r) > 0
    assert (r.arrival_s >= 0).all() and (r.isl >= 1).all() and (r.osl >= 1).all()
    assert (r.isl + r.osl <= 4096).all()


@FUZZ
@given(row=st.integers(0, 2), column=st.integers(0, 2), cell=cells)
def test_trace_with_one_cell_replaced(tmp_path, row, column, cell):
    rows = [["0", "10", "5"], ["0.5", "200", "20"], ["1", "3000", "1000"]]
    rows[row][column] = cell
    text = "arrival_s,isl,osl\n" + "\n".join(",".join(r) for r in rows) + "\n"
    file = write(tmp_path, text, ".csv")
    one_line_error_or(valid_requests, lambda: read_trace(file, 4096))


@FUZZ
@given(content=st.one_of(st.binary(max_size=600), st.text(max_size=300),
                         st.text(max_size=300).map(lambda t: "arrival_s,isl,osl\n" + t)))
def test_trace_of_random_content(tmp_path, content):
    file = write(tmp_path, content, ".csv")
    one_line_error_or(valid_requests, lambda: read_trace(file, 4096))


# --- measured-data CSV -------------------------------------------------------------------------------

COLUMNS = MEASURED_HEADER.split(",")


def valid_rows(rows) -> None:
    for row in rows:
        for column in ("id", "model", "hardware", "scenario", "metric", "value"):
            assert row[column]
        for column in ("num_chips", "tp", "pp", "batch", "isl", "osl", "gemm_m", "gemm_n", "gemm_k"):
            if row.get(column):
                assert float(row[column]) == int(float(row[column])) >= 0
        try:
            value = float(row["value"])
        except ValueError:
            continue
        assert math.isfinite(value) and value > 0


@FUZZ
@given(column=st.sampled_from(COLUMNS), cell=cells)
def test_measured_csv_with_one_cell_replaced(tmp_path, column, cell):
    file = write(tmp_path, measured(**{column: cell}), ".csv")
    one_line_error_or(valid_rows, lambda: read_rows(file))


@FUZZ
@given(content=st.one_of(st.binary(max_size=600), st.text(max_size=300),
                         st.text(max_size=300).map(lambda t: MEASURED_HEADER + "\n" + t)))
def test_measured_csv_of_random_content(tmp_path, content):
    file = write(tmp_path, content, ".csv")
    one_line_error_or(valid_rows, lambda: read_rows(file))


@pytest.mark.parametrize("reader", [lambda p: load_model.__wrapped__(p), lambda p: load_chip.__wrapped__(p),
                                    lambda p: load_calibration.__wrapped__(p), lambda p: read_trace(p, 4096),
                                    read_rows], ids=["config", "chip", "profile", "trace", "measured"])
def test_every_reader_refuses_a_folder_and_a_missing_file(tmp_path, reader):
    for path in (tmp_path, tmp_path / "missing.yaml"):
        with pytest.raises(InfercastError) as info:
            reader(str(path))
        assert len(str(info.value).splitlines()) == 1
