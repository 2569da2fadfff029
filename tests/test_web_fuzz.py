"""Schemathesis fuzzes every operation of the OpenAPI schema against the running server: no generated request
makes a server error, and every answer is one the schema documents (its status and its body's shape)."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="the dev extra")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from infercast.web import create_app

EXAMPLES = 25
"""Generated requests per operation: a few hundred in all."""
SCHEMA = schemathesis.openapi.from_dict(create_app().openapi())
OPERATIONS = [op.ok() for op in SCHEMA.get_all_operations()]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_every_operation_is_fuzzed():
    assert {op.label for op in OPERATIONS} >= {"POST /api/estimate", "POST /api/compare", "POST /api/simulate",
                                                "POST /api/search", "POST /api/pareto", "GET /api/models",
                                                "GET /api/hardware", "GET /api/claims"}


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_no_generated_request_makes_a_server_error(web_url, operation):
    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def fuzz(case):
        case.call_and_validate(base_url=web_url, checks=CHECKS, timeout=300)

    fuzz()


# Schemathesis rarely names a real model or chip; these bodies always do, with every other value generated.
MODELS = ("llama-3-8b", "mixtral-8x7b", "deepseek-v3", "gpt-2-xl", "bloom-176b", "sdxl-base-1.0", "bert-large")
CHIPS = ("h100-sxm", "a100-sxm-40gb", "mi300x", "rtx-4090", "tpu-v5e", "gaudi3", "moffett-s30")
DTYPES = ("fp16", "bf16", "fp8", "int8", "int4", "fp4", "nvfp4", "q4_0", "fp7", "")
NUMBERS = st.one_of(st.integers(-3, 10**7), st.floats(-1e3, 1e30, allow_nan=False, allow_infinity=False))
SMALL = st.integers(-2, 20)


def deployments():
    return st.fixed_dictionaries({"model": st.sampled_from(MODELS), "hardware": st.sampled_from(CHIPS)}, optional={
        "num_chips": SMALL, "tp": SMALL, "pp": SMALL, "ep": SMALL, "dp": SMALL, "dtype": st.sampled_from(DTYPES),
        "kv_cache_dtype": st.sampled_from(DTYPES), "quantization": st.sampled_from(("q4_0", "awq", "w8a8", "x")),
        "weight_sparsity": NUMBERS, "sparsity_pattern": st.sampled_from(("2:4", "1:8", "unstructured", "3")),
        "activation_sparsity": NUMBERS, "moe_imbalance": NUMBERS, "gpu_memory_utilization": NUMBERS,
        "efficiency": st.dictionaries(st.sampled_from(("bandwidth", "gemm_max", "step_overhead_s", "x")), NUMBERS,
                                      max_size=2),
        "usd_per_chip_hour": NUMBERS, "pue": NUMBERS, "years": NUMBERS,
        "chip": st.dictionaries(st.sampled_from(("dram_bandwidth", "clock", "sram_bytes")),
                                st.sampled_from(("2x", "0.5x", "0", "-1", "1e30", "x")), max_size=1)})


BODIES = {
    "/api/estimate": deployments().map(lambda d: d).flatmap(lambda d: st.fixed_dictionaries(
        {}, optional={"batch": NUMBERS.map(int), "isl": NUMBERS.map(int), "osl": NUMBERS.map(int),
                      "auto": st.booleans(), "steps": SMALL}).map(lambda w: {**d, **w})),
    "/api/simulate": deployments().flatmap(lambda d: st.fixed_dictionaries(
        {"num_prompts": st.integers(-1, 300)}, optional={
            "request_rate": NUMBERS, "isl": st.integers(-1, 5000), "osl": st.integers(-1, 3000),
            "max_num_seqs": SMALL, "block_size": SMALL, "max_num_batched_tokens": NUMBERS.map(int),
            "isl_dist": st.sampled_from(("fixed", "uniform", "normal", "lognormal")), "length_spread": NUMBERS,
            "prefix_len": st.integers(-1, 5000), "max_concurrency": SMALL, "enable_prefix_caching": st.booleans(),
            "goodput": st.lists(st.sampled_from(("ttft:500", "tpot:-1", "e2el:1e9", "x")), max_size=2)}).map(
        lambda w: {**d, **w})),
}


@pytest.mark.parametrize("path", sorted(BODIES))
def test_real_ids_with_generated_values_are_answered_or_refused_in_one_line(web_url, path):
    import json

    import httpx

    @given(body=BODIES[path])
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def ask(body):
        response = httpx.post(web_url + path, json=body, timeout=300)
        assert response.status_code in (200, 404, 413, 422), (body, response.text)
        doc = json.loads(response.text, parse_constant=lambda c: pytest.fail(f"{c} in {body}"))
        if response.status_code != 200:
            assert doc["detail"] and "\n" not in doc["detail"]

    ask()
