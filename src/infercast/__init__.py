"""infercast: how a generative model runs on given hardware, from first principles."""

from infercast.errors import InfercastError
from infercast.estimate import Estimate, estimate
from infercast.evaluation import Columns, evaluate
from infercast.hardware import Chip, chip_ids, load_chip
from infercast.memory import MemoryOptions
from infercast.model import ModelSpec, load_model, model_ids
from infercast.roofline import ChipRates, Efficiency
from infercast.scenario import Scenario, resolve

__all__ = [
    "Chip",
    "ChipRates",
    "Columns",
    "Efficiency",
    "Estimate",
    "InfercastError",
    "MemoryOptions",
    "ModelSpec",
    "Scenario",
    "chip_ids",
    "estimate",
    "evaluate",
    "load_chip",
    "load_model",
    "model_ids",
    "resolve",
]
