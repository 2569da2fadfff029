"""The engine's three promises, over random scenarios (hypothesis):

* ``evaluate()`` over arrays equals ``estimate()`` configuration by configuration, every numeric field,
  to 1e-9 relative;
* the closed-form decode sum equals the step-by-step sum over the osl - 1 steps, to 1e-9;
* the serving simulator's step time equals the estimate's, for decode steps and single prefills.

Scenarios span dense, GQA, MQA, MLA, MoE, sliding-window and mixed window/full-attention models; TP, PP, EP and DP plans; formats,
weight-only quantization and sparsity; flash and materialised attention; chips with and without the figures
energy and cost need. A combination the engine refuses (a plan the model's heads do not divide, a format a
chip lacks) is discarded, not counted as a pass.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from infercast import InfercastError, estimate, evaluate, resolve

MODELS = ["llama-2-7b", "llama-3-8b", "mistral-7b", "mixtral-8x7b", "deepseek-v3", "gpt-j-6b", "bloom-176b",
          "qwen2.5-7b", "llama-2-70b", "gpt-oss-120b"]
CHIPS = ["h100-sxm", "a100-sxm-80gb", "b200", "mi300x", "rtx-4090", "l40s", "tpu-v5e", "gaudi3"]


@st.composite
def scenarios(draw, models=MODELS, chips=CHIPS, pipelines=True):
    model = draw(st.sampled_from(models))
    kw: dict = {"hardware": draw(st.sampled_from(chips))}
    kw["tp"] = draw(st.sampled_from([1, 2, 4, 8]))
    if pipelines:
        kw["pp"] = draw(st.sampled_from([1, 1, 2, 3]))
        kw["dp"] = draw(st.sampled_from([1, 1, 2]))
    if model in ("mixtral-8x7b", "deepseek-v3", "gpt-oss-120b"):
        kw["ep"] = draw(st.sampled_from([1, kw["tp"]]))
    precision = draw(st.sampled_from([{}, {"dtype": "bf16"}, {"dtype": "fp8"}, {"quantization": "awq"},
                                      {"quantization": "q4_0"}, {"weight_dtype": "int8", "kv_cache_dtype": "fp8"}]))
    kw.update(precision)
    if draw(st.booleans()):
        kw["attention"] = "materialized"
    if draw(st.integers(0, 5)) == 0:
        kw["sparsity_pattern"] = "2:4"
    if draw(st.integers(0, 4)) == 0:
        kw["efficiency"] = {"attention_half_len": draw(st.sampled_from([0.0, 64.0, 256.0])),
                            "step_overhead_s": draw(st.sampled_from([0.0, 1e-3]))}
    if draw(st.integers(0, 4)) == 0:
        kw["energy"] = {"chip_overhead": draw(st.sampled_from([3.0, 30.0]))}  # 30: compute-bound passes throttle
    kw["num_chips"] = kw["tp"] * kw.get("pp", 1) * kw.get("dp", 1)
    try:
        sc = resolve(model, **kw)
    except InfercastError:
        assume(False)
    return model, kw, sc


def workloads(sc, draw):
    context = sc.spec.max_position_embeddings
    n = draw(st.integers(1, 4))
    batch = [draw(st.integers(1, 96)) for _ in range(n)]
    isl = [draw(st.integers(1, min(3000, context - 2))) for _ in range(n)]
    osl = [draw(st.integers(1, min(300, context - i))) for i in isl]
    return np.array(batch, float), np.array(isl, float), np.array(osl, float)


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        elif not isinstance(v, list):
            out[f"{prefix}{k}"] = v
    return out


def same(a, b) -> bool:
    if isinstance(a, (bool, np.bool_)) or isinstance(a, str):
        return a == b
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    if b is None:
        return False
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-300)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.data())
def test_evaluate_over_arrays_equals_estimate_one_by_one(data):
    model, kw, sc = data.draw(scenarios())
    batch, isl, osl = workloads(sc, data.draw)
    try:
        cols = evaluate(sc, batch=batch, isl=isl, osl=osl)
    except InfercastError:
        assume(False)
    for i in range(len(batch)):
        e = flat(estimate(model, **kw, batch=int(batch[i]), isl=int(isl[i]), osl=int(osl[i])).to_dict())
        for key, col in cols.items():
            if key not in e:
                continue
            got = col[i] if np.ndim(col) else col
            got = got.item() if isinstance(got, np.generic) else got
            assert same(e[key], got), (key, e[key], got, model, kw, int(batch[i]), int(isl[i]), int(osl[i]))
        for key in ("ttft_s", "decode.tpot_s", "memory.fits", "energy.joules_per_token", "cost.usd_per_hour"):
            assert key in cols or key.split(".")[0] in ("energy", "cost"), key


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.data())
def test_closed_form_decode_equals_the_step_by_step_sum(data):
    from infercast.evaluation import _Run, decode, decode_step_s

    _, _, sc = data.draw(scenarios())
    batch = float(data.draw(st.integers(1, 64)))
    context = sc.spec.max_position_embeddings
    isl = float(data.draw(st.sampled_from([1, 3, 7, 60, 127, 500, 2000, 4095, 5000])))
    assume(isl + 2 < context)
    osl = float(data.draw(st.integers(2, min(400, int(context - isl)))))
    run = _Run(sc, batch, isl, osl, sc.rates, sc.efficiency, sc.energy_rates)
    closed = decode(run)
    roof = capped = 0.0
    for L in np.arange(isl + 1, isl + osl):
        r, c = decode_step_s(run, L)
        roof, capped = roof + float(r), capped + float(c)
    assert closed.latency_s == pytest.approx(capped, rel=1e-9)
    # the rows add up to the latency, and throttled time shows only where the cap bound
    assert sum(closed.rows.time_s) == pytest.approx(closed.latency_s, rel=1e-9)
    assert bool(closed.throttled) == (capped > roof * (1 + 1e-9)) or capped == pytest.approx(roof, rel=1e-9)


SIM_MODELS = ["llama-2-7b", "llama-3-8b", "mixtral-8x7b", "gpt-j-6b", "qwen2.5-7b", "llama-2-70b", "deepseek-v3",
              "mistral-7b", "gpt-oss-120b"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.data())
def test_the_simulators_step_time_equals_the_estimates(data):
    from infercast.serving.steptime import deployment, step_time

    model, kw, sc = data.draw(scenarios(SIM_MODELS, pipelines=True))
    kw = {k: v for k, v in kw.items() if k != "num_chips"}
    kw["num_chips"] = kw["tp"] * kw.get("pp", 1) * kw.get("dp", 1)
    dep = deployment(model, **kw)
    st_ = step_time(dep, 2048, 64)
    group = st_.group
    batch = data.draw(st.integers(1, 64))
    pp = kw.get("pp", 1)
    batch = max(batch - batch % pp, 1) if batch >= pp else batch  # micro-batches of whole, equal sequences
    top = dep.spec.max_position_embeddings
    context = data.draw(st.integers(min(group, st_.head_dim) + 1, min(3000, top - 1)))
    dp = kw.get("dp", 1)
    extra = {}
    # one decode step at KV length L: estimate(isl = L - 1, osl = 2) has exactly that step
    e = estimate(model, **kw, **extra, batch=batch * dp, isl=context - 1, osl=2)
    assert st_([], batch, batch * context) == pytest.approx(e.tpot_s, rel=1e-9)
    prompt = data.draw(st.integers(1, min(2048, top)))
    e = estimate(model, **kw, **extra, batch=dp, isl=prompt, osl=1)
    # each pipeline stage capped at its own chips' TDP, as estimate caps them (also where one stage throttles
    # and another does not)
    assert st_([(prompt, prompt)], 0, 0) == pytest.approx(e.ttft_s, rel=1e-9)


@pytest.mark.parametrize("model, options, batch, isl, osl", [
    # the regimes and branches of the closed form, each at least once
    ("mistral-7b", dict(hardware="h100-sxm"), 8, 4000, 300),  # crosses the 4,096-token window
    ("deepseek-v3", dict(hardware="b200", tp=8, num_chips=8), 4, 1, 200),  # MLA: 128 heads share the latent
    ("llama-3-8b", dict(hardware="h100-sxm", pp=3, num_chips=3), 2, 500, 100),  # 1 < m = 2 < pp: step by step
    ("llama-3-8b", dict(hardware="h100-sxm", pp=2, num_chips=2), 64, 500, 100),  # m = pp: the slowest stage
    ("llama-2-70b", dict(hardware="a100-sxm-80gb", tp=8, num_chips=8, energy={"chip_overhead": 60}), 256, 100, 80),
    ("gpt-j-6b", dict(hardware="a100-sxm-80gb", attention="materialized"), 16, 700, 120),
])
def test_closed_form_regimes(model, options, batch, isl, osl):
    from infercast.evaluation import _Run, decode, decode_step_s

    sc = resolve(model, **options)
    run = _Run(sc, float(batch), float(isl), float(osl), sc.rates, sc.efficiency, sc.energy_rates)
    closed = decode(run)
    steps = [decode_step_s(run, float(L)) for L in range(isl + 1, isl + osl)]
    assert closed.latency_s == pytest.approx(sum(float(c) for _, c in steps), rel=1e-9)
    if "energy" in options:  # a decode at 60x the chip overhead runs into its TDP, step after step
        assert closed.throttled and any(float(c) > float(r) for r, c in steps)


@pytest.mark.parametrize("model, plan", [("llama-2-7b", {}), ("llama-2-70b", {"tp": 2, "pp": 2}),
                                         ("mixtral-8x7b", {"tp": 2, "ep": 2})])
def test_rates_as_arrays_with_a_scalar_workload(model, plan):
    """A chip rate swept on its own (the workload scalar) broadcasts like any axis: each element equals the
    evaluation at that value (the design what-ifs sweep rates this way)."""
    sc = resolve(model, "h100-sxm", **plan)
    bw = sc.rates.mem_bw_bytes_per_s * np.array([[0.5, 1.0, 2.0]])
    cols = evaluate(sc, batch=4, isl=512, osl=64, rates={"mem_bw_bytes_per_s": bw})
    assert np.shape(cols["decode.tpot_s"]) == (1, 3)
    for j in range(3):
        one = evaluate(sc, batch=4, isl=512, osl=64, rates={"mem_bw_bytes_per_s": float(bw[0, j])})
        for key in ("ttft_s", "decode.tpot_s", "energy.joules_per_token", "cost.usd_per_million_tokens"):
            assert cols[key][0, j] == pytest.approx(one[key], rel=1e-9), key


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-10**6, 10**6).map(lambda x: x / 1e3),
                          st.integers(-10**4, 10**4).map(lambda x: x / 1e3)), min_size=1, max_size=60),
       st.integers(0, 400), st.integers(0, 400))
def test_sum_max_equals_the_sum_of_the_envelope_step_by_step(lines, lo, n):
    """The closed form of sum_{L=lo}^{hi} max_k (a_k + b_k L), by crossings or (few integers, many lines) by
    the envelope at each integer, equals the step-by-step sum; hi = lo - 1 is an empty range."""
    from infercast.series import max_lines_at, sum_max

    a, b = [x for x, _ in lines], [y for _, y in lines]
    hi = lo + n - 1
    ref = sum(float(max_lines_at(a, b, L)) for L in range(lo, hi + 1))
    assert float(sum_max(a, b, lo, hi)) == pytest.approx(ref, rel=1e-9, abs=1e-6)


@pytest.mark.parametrize("prompt", [300, 477, 479, 481, 1000])
def test_a_pipeline_whose_stages_throttle_apart_steps_as_estimate(prompt):
    """gpt-oss-120b on A100s, pp 2, q4_0, at 30x the chip overhead: one stage runs into its TDP where the other
    does not (the simulator once capped the summed step and parted from estimate by up to 0.18%)."""
    from infercast.serving.steptime import deployment, step_time

    kw = dict(hardware="a100-sxm-80gb", pp=2, num_chips=2, quantization="q4_0", energy={"chip_overhead": 30.0})
    st_ = step_time(deployment("gpt-oss-120b", **kw), 2048, 64)
    e = estimate("gpt-oss-120b", **kw, micro_batches=1, batch=1, isl=prompt, osl=1)
    assert st_([(prompt, prompt)], 0, 0) == pytest.approx(e.ttft_s, rel=1e-9)
    assert st_.many(np.array([0]), np.array([0.0]), np.array([0]), np.array([prompt]),
                    np.array([prompt]))[0] == pytest.approx(e.ttft_s, rel=1e-9)
    e = estimate("gpt-oss-120b", **kw, batch=8, isl=prompt - 1, osl=2)  # 2 micro-batches of 4
    assert st_([], 8, 8 * prompt) == pytest.approx(e.tpot_s, rel=1e-9)


def test_resolve_keeps_a_deployment_named_by_catalog_ids_only():
    """A loop over workloads resolves the same deployment again: catalog ids and plain values give the same frozen
    Scenario back; a dict of overrides, a model object or a calibration file resolve afresh (the caller could change
    them), and a different plain value is a different deployment."""
    a = resolve("llama-2-7b", "h100-sxm", tp=2, dtype="fp8")
    assert resolve("llama-2-7b", "h100-sxm", tp=2, dtype="fp8") is a
    assert resolve("llama-2-7b", "h100-sxm", tp=2, dtype="fp16") is not a
    assert resolve("llama-2-7b", "h100-sxm", tp=2, dtype="fp8", efficiency={"gemm_max": 0.5}) is not a
    from infercast.estimate import _estimate

    spec = a.spec
    assert resolve(spec, "h100-sxm", tp=2, dtype="fp8") is not a
    # the kept scenario answers as a fresh one does, to the bit
    fresh = resolve(spec, "h100-sxm", tp=2, dtype="fp8")
    kept = estimate("llama-2-7b", "h100-sxm", tp=2, dtype="fp8", batch=8)
    assert kept == _estimate(fresh, 8, 128, 128, {"beam_width": 1, "n": 1})
    # bad input is still refused every time (nothing kept for it), also where it equals a kept good value
    for _ in range(2):
        with pytest.raises(InfercastError, match="--tp"):
            resolve("llama-2-7b", "h100-sxm", tp=3)
    resolve("llama-2-7b", "h100-sxm", tp=1)
    with pytest.raises(InfercastError, match="--tp"):
        resolve("llama-2-7b", "h100-sxm", tp=True)
