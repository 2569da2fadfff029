"""Speed of one ``estimate()`` call (pytest-benchmark).

Not collected by the default run (testpaths = tests, --benchmark-disable). Run with
``python -m pytest benchmarks --benchmark-enable``. Target: the short LLaMA-2-7B case under 5 ms;
pytest-benchmark prints the statistics, nothing here asserts on time.
"""

from infercast import estimate


def test_bench_llama2_7b_a100_short(benchmark):
    r = benchmark(estimate, "llama-2-7b", "a100-sxm-80gb", batch=1, isl=128, osl=128)
    assert r.memory.fits and r.osl == 128


def test_bench_llama31_8b_long_decode(benchmark):
    # 4095 decode steps over KV lengths 4001..8095: one vectorised evaluation, not a Python loop
    r = benchmark(estimate, "llama-3.1-8b", "h100-sxm", batch=1, isl=4000, osl=4096)
    assert r.tpot_s is not None and r.osl == 4096


def test_bench_deepseek_v3_h200(benchmark):
    # MoE + MLA: the widest operator list of the presets
    r = benchmark(estimate, "deepseek-v3", "h200-sxm", batch=1, isl=128, osl=128)
    assert r.params_active < r.params_total
