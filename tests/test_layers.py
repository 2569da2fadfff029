"""The package is a one-way house: every module sits on a declared layer and imports only its own layer or
those below, and no modules import each other in a loop. Imports inside functions (lazy ones) and under
``if TYPE_CHECKING`` count: they are dependencies all the same.

A new module must be given a layer here; the test says so.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "infercast"

LAYERS = [
    ("errors/units", ["errors", "arrays", "series", "files", "keep"]),
    ("specs", ["model", "hardware", "system", "formats", "sparsity", "tiers"]),
    ("ops", ["ops", "ops_vision", "networks"]),
    ("parallel", ["parallel"]),
    ("roofline", ["roofline", "tiling"]),
    ("memory", ["memory", "training_memory"]),
    ("energy/cost", ["energy", "cost"]),
    ("framework", ["framework"]),
    ("calibration", ["calibration"]),
    ("design", ["design"]),
    ("scenario", ["scenario", "options"]),
    ("evaluate/estimate", ["evaluation", "estimate", "offload", "flexgen", "passes", "training", "train"]),
    ("serving", ["serving", "serving.steptime", "serving.engine", "serving.workload", "serving.metrics",
                 "serving.prefix", "serving.server", "serving.search", "serving.replay", "serving.scenarios",
                 "fleet"]),
    ("search/sweep, validation", ["sweep", "search", "dataset", "validate", "validate_training", "validate_vision",
                                  "validate_offload", "calibrate_vision", "calibrate", "claims", "localbench",
                                  "reference_model", "whatif"]),
    ("front ends", ["documents", "display", "cli", "serving.cli", "sweep_cli", "query", "plots", "render", "views",
                    "plot_cli", "web", "framework_cli", "__main__", ""]),
]
LAYER = {f"infercast.{m}".rstrip("."): i for i, (_, mods) in enumerate(LAYERS) for m in mods}


def modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(("infercast",) + parts).removesuffix(".__init__")
        out[name] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules ``name`` imports (anywhere in the file)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for t in targets:
            # the deepest module of the package the target names
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


GRAPH = {name: imports(name, path, set(modules())) for name, path in modules().items()}


def test_every_module_has_a_layer():
    missing = sorted(set(GRAPH) - set(LAYER))
    assert not missing, f"give these modules a layer in tests/test_layers.py: {missing}"
    stale = sorted(set(LAYER) - set(GRAPH))
    assert not stale, f"modules declared but gone: {stale}"


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_no_upward_import(name):
    if name == "infercast":  # the package's face hands the public API on
        return
    up = sorted(t for t in GRAPH[name] if t != "infercast" and LAYER[t] > LAYER[name])
    assert not up, (f"{name} ({LAYERS[LAYER[name]][0]}) imports from above: "
                    + ", ".join(f"{t} ({LAYERS[LAYER[t]][0]})" for t in up))


def test_no_import_cycle():
    graph = {k: {t for t in v if t != "infercast"} for k, v in GRAPH.items() if k != "infercast"}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            assert cycle is None, " -> ".join(cycle)


def test_the_checker_sees_lazy_and_type_checking_imports(tmp_path):
    # the ways an import can hide: inside a function, under TYPE_CHECKING, relative
    src = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from infercast.estimate import Estimate\n"
           "def f():\n    from infercast.serving import simulate\n    from . import cost\n")
    path = tmp_path / "energy.py"
    path.write_text(src)
    found = imports("infercast.energy", path, set(GRAPH))
    assert {"infercast.estimate", "infercast.serving", "infercast.cost"} <= found


def test_the_package_names_stay_the_functions_whatever_was_imported_first():
    """``infercast`` imports its names on first use; importing the submodule ``infercast.estimate`` first must
    not turn ``infercast.estimate`` into the module (a fresh interpreter: nothing imported before)."""
    import subprocess
    import sys

    code = ("import infercast.estimate, infercast.evaluation; from infercast import estimate, evaluate, resolve; "
            "assert callable(estimate) and callable(evaluate) and callable(resolve); "
            "print(estimate('llama-2-7b', 'h100-sxm').decode.tpot_s > 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr


def test_a_kept_value_belongs_to_its_objects():
    """``keep`` answers from its store only for the very objects it was made for: an object with the id of a
    collected one (CPython reuses ids) gets its own value, and the store is emptied past its limit."""
    from infercast.keep import keep

    store: dict = {}
    a = [1]
    assert keep(store, (a,), lambda: "a") == "a"
    assert keep(store, (a,), lambda: "again") == "a"
    assert keep(store, (a,), lambda: "other key", ("k",)) == "other key"
    b = [1]
    store[(id(b),)] = ((a,), "stale")  # b's id under another object's entry, as a reused id would be
    assert keep(store, (b,), lambda: "b") == "b"
    for i in range(3):
        keep(store, (a,), lambda: i, (i,), limit=2)
    assert len(store) <= 3
