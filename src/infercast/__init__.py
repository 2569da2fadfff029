"""infercast: how a generative model runs on given hardware, from first principles."""

from infercast.errors import InfercastError
from infercast.estimate import Estimate, estimate
from infercast.hardware import Chip, chip_ids, load_chip
from infercast.memory import MemoryOptions
from infercast.model import ModelSpec, load_model, model_ids
from infercast.roofline import Efficiency

__all__ = [
    "Chip",
    "Efficiency",
    "Estimate",
    "InfercastError",
    "MemoryOptions",
    "ModelSpec",
    "chip_ids",
    "estimate",
    "load_chip",
    "load_model",
    "model_ids",
]
