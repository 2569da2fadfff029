"""infercast: how a generative model runs on given hardware, from first principles.

The names below are imported when first used (PEP 562), so ``infercast --help`` and the commands that
need a part of the engine do not pay for all of it."""

from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import TYPE_CHECKING, Any

_WHERE = {
    "Chip": "hardware",
    "ChipRates": "roofline",
    "Columns": "evaluation",
    "Efficiency": "roofline",
    "Estimate": "estimate",
    "InfercastError": "errors",
    "MemoryOptions": "memory",
    "ModelSpec": "model",
    "Scenario": "scenario",
    "chip_ids": "hardware",
    "estimate": "estimate",
    "evaluate": "evaluation",
    "load_chip": "hardware",
    "load_model": "model",
    "model_ids": "model",
    "resolve": "scenario",
}

__all__ = sorted(_WHERE)

if TYPE_CHECKING:
    from infercast.errors import InfercastError
    from infercast.estimate import Estimate, estimate
    from infercast.evaluation import Columns, evaluate
    from infercast.hardware import Chip, chip_ids, load_chip
    from infercast.memory import MemoryOptions
    from infercast.model import ModelSpec, load_model, model_ids
    from infercast.roofline import ChipRates, Efficiency
    from infercast.scenario import Scenario, resolve


class _Package(types.ModuleType):
    """The package, whose ``estimate`` stays the function when the import system binds the submodule of the same
    name to it (as the former eager ``from infercast.estimate import estimate`` rebound it)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _WHERE and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'infercast' has no attribute '{name}'")
    value = getattr(import_module(f"infercast.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
