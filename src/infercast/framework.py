"""Inference frameworks: what the software between the model and the chip does, one profile each.

The same model on the same chip runs at whole factors apart under different engines
(``shared/data/framework-overheads.md``): a custom one-shot all-reduce against NCCL, decode
steps replayed from CUDA graphs against kernels launched one by one, a scheduler release that
changes throughput 1.8x at unchanged TPOT. A profile (``catalog/frameworks/NAME.yaml``) says, for
one framework and its versions, what is structural and sourced:

* ``cuda_graphs``: decode steps are replayed from CUDA graphs (a kernel then costs the
  calibration's ``decode_kernel_overhead_s``, not a launch); ``prefill_graphs``: steps with prefill
  chunks are too (piecewise graphs), else they pay ``kernel_overhead_s`` a kernel;
* ``attention``: the decode kernel: ``flash`` (GQA-aware: the query heads of a K/V head share one
  read) or ``flash-per-head`` (every query head re-reads its K/V, TensorRT-LLM before XQA);
* ``allreduce``: the implementation and its measured latency floor by tensor-parallel size (a
  custom one-shot kernel, or NCCL's ring/tree);
* ``engine``: the scheduler's defaults: max sequences, the token budget of a step (chunked
  prefill), the share of memory the engine takes (of the device, or of what is free after the weights).

What is fitted (per-kernel and per-step times, GEMM library efficiency per format, grouped-GEMM
efficiency) lives in the calibration profile, by framework and chip family
(``infercast.calibration``). ``--framework NAME[@VERSION]`` picks a profile; a version applies the
profile's changes up to it (none given: the latest). The measured data's free-text ``framework``
column maps onto a profile and version through one table (``catalog/frameworks/aliases.yaml``,
``framework_of_text``); text it does not match runs as ``generic``, and says so.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import Field, model_validator

from infercast.errors import InfercastError, did_you_mean
from infercast.files import is_package_file
from infercast.hardware import Sourced, Spec, parse_spec

GENERIC = "generic"
_FOLDER = resources.files("infercast") / "catalog" / "frameworks"
AttentionKind = Literal["flash", "flash-per-head", "materialized"]


class _Stated(Spec):
    source: str
    """Where it is stated."""
    note: str | None = None
    assumed: bool = False
    """True where no document states it; ``note`` gives the basis."""

    @model_validator(mode="after")
    def _basis(self):
        if self.assumed and not self.note:
            raise ValueError("an assumed property needs a 'note' giving its basis")
        return self


class Flag(_Stated):
    """A yes/no property of a framework and where it is stated."""

    value: bool


class Choice(_Stated):
    """A named property of a framework (a kernel or an implementation) and where it is stated."""

    value: str


class AllReduce(Spec):
    """The tensor-parallel all-reduce of a framework."""

    implementation: Literal["nccl", "custom", "symm-mem"]
    """nccl: NCCL's ring or tree (the alpha-beta model with the calibration's launch cost); custom: a
    one-shot/two-shot kernel over peer memory (vLLM's, TensorRT-LLM's, SGLang's); symm-mem: PyTorch
    symmetric memory (NVLink SHARP multimem)."""
    latency_s_by_tp: dict[int, Sourced] = {}
    """Measured time of a small all-reduce by group size: the floor that replaces NCCL's launch and
    per-hop latency (the bandwidth term stays). Sizes between entries take the next larger one's."""
    source: str

    @model_validator(mode="after")
    def _floors(self) -> AllReduce:
        if self.implementation != "nccl" and not self.latency_s_by_tp:
            raise ValueError(f"a {self.implementation} all-reduce needs latency_s_by_tp (its measured floor)")
        for tp, figure in self.latency_s_by_tp.items():
            if tp < 2 or figure.value is None:
                raise ValueError(f"latency_s_by_tp.{tp}: a group of at least 2 chips with a known time")
        return self

    def floor_s(self, tp: int) -> float | None:
        """The floor for a group of ``tp`` chips (None: NCCL's alpha-beta terms)."""
        if self.implementation == "nccl" or tp < 2:
            return None
        sizes = sorted(self.latency_s_by_tp)
        size = next((s for s in sizes if s >= tp), sizes[-1])
        return self.latency_s_by_tp[size].value


class Engine(Spec):
    """The scheduler's defaults (what a user who sets no flag runs)."""

    max_num_seqs: Sourced
    """Requests running at once."""
    max_num_batched_tokens: Sourced
    """Tokens of one step: the chunked-prefill budget."""
    chunked_prefill: Flag
    """Prompts split over steps and batched with decodes."""
    gpu_memory_utilization: Sourced
    """Share of device memory the engine takes (weights, activations, KV cache)."""
    admission: Choice | None = None
    """How the scheduler admits a request against the KV cache: ``optimistic`` (vLLM, SGLang: on its prompt's
    blocks, preempting by recompute when the cache runs out; the default) or ``reserve`` (TensorRT-LLM's
    GUARANTEED_NO_EVICT: only when the blocks of its whole prompt and output fit; never preempts)."""
    kv_free_fraction: Sourced | None = None
    """Where the engine sizes its KV cache as a share of the memory left free after the weights, the runtime
    and the activations (TensorRT-LLM's ``free_gpu_memory_fraction``), that share; the engine's share of the
    device then follows from the deployment (``infercast.memory.share_of_free``) and ``gpu_memory_utilization``
    is not used."""


class Profile(Spec):
    """One framework at one version: the fields of ``Framework`` with the version's changes applied."""

    cuda_graphs: Flag
    prefill_graphs: Flag
    attention: Choice
    allreduce: AllReduce
    engine: Engine

    @model_validator(mode="after")
    def _kinds(self) -> Profile:
        if self.attention.value not in ("flash", "flash-per-head"):
            raise ValueError(f"attention.value: {self.attention.value!r} is not a decode kernel; use flash or "
                             f"flash-per-head")
        return self


class Version(Spec):
    since: str
    """The first version with these changes."""
    changes: dict
    """Fields of the profile that change from this version on (nested as in the profile)."""
    source: str


class RunsOn(Spec):
    """The chip vendors a framework has backends for (as ``Chip.vendor`` names them) and where it is stated."""

    vendors: tuple[str, ...] = Field(min_length=1)
    source: str


class Framework(Spec):
    """A framework's profile file."""

    infercast_framework: int = Field(default=1, ge=1, le=1)
    name: str
    title: str
    description: str
    runs_on: RunsOn | None = None
    """The vendors whose chips it runs on (None: any chip, as the generic profile)."""
    profile: Profile
    versions: tuple[Version, ...] = ()
    """Changes by version, oldest first."""

    @model_validator(mode="after")
    def _ordered(self) -> Framework:
        keys = [version_key(v.since, f"versions.since {v.since!r}") for v in self.versions]
        if keys != sorted(keys):
            raise ValueError("versions: list them oldest first")
        for v in self.versions:
            _merge(self.profile, v.changes, f"versions[{v.since}].changes")
        return self

    def runs(self, vendor: str) -> bool:
        """Whether the framework runs on a chip of ``vendor``."""
        return self.runs_on is None or vendor in self.runs_on.vendors

    @property
    def latest(self) -> str | None:
        return self.versions[-1].since if self.versions else None

    def at(self, version: str | None) -> Profile:
        """The profile at ``version`` (None: the latest): every change since a version at or below it."""
        key = None if version is None else version_key(version, f"--framework {self.name}@{version}")
        profile = self.profile
        for v in self.versions:
            if key is None or version_key(v.since, "") <= key:
                profile = _merge(profile, v.changes, f"versions[{v.since}].changes")
        return profile


def version_key(text: str, where: str) -> tuple[int, ...]:
    """'0.5.9', 'v1.3.0rc14', '1.x' -> (0, 5, 9), (1, 3, 0), (1,): the leading dotted numbers."""
    match = re.match(r"v?(\d+(?:\.\d+)*)", text.strip())
    if not match:
        raise InfercastError(f"{where}: a version is dotted numbers such as 0.5.9 or 1.0")
    return tuple(int(x) for x in match.group(1).split("."))


def _merge(profile: Profile, changes: dict, where: str) -> Profile:
    data = profile.model_dump()

    def deep(base: dict, new: dict, path: str) -> dict:
        out = dict(base)
        for k, v in new.items():
            if k not in base:
                raise ValueError(f"{path}.{k}: not a field of the profile")
            out[k] = deep(base[k], v, f"{path}.{k}") if isinstance(v, dict) and isinstance(base[k], dict) and \
                k != "latency_s_by_tp" else v
        return out

    try:
        return Profile.model_validate(deep(data, changes, where))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: {exc}") from None


@cache
def framework_names() -> tuple[str, ...]:
    """The shipped profiles (``generic`` first)."""
    names = sorted(p.name.removesuffix(".yaml") for p in _FOLDER.iterdir()
                   if p.name.endswith(".yaml") and p.name != "aliases.yaml")
    return (GENERIC, *[n for n in names if n != GENERIC])


def frameworks_on(vendor: str) -> tuple[str, ...]:
    """The named frameworks (generic left out) that run on a chip of ``vendor``."""
    return tuple(n for n in framework_names() if n != GENERIC and load_framework(n).runs(vendor))


def check_runs(framework: FrameworkRef, chip_id: str, vendor: str) -> None:
    """One line naming --framework when the framework has no backend for the chip's vendor."""
    fw = load_framework(framework.name)
    if not fw.runs(vendor):
        others = ", ".join(frameworks_on(vendor)) or "generic"
        raise InfercastError(f"--framework {framework.label}: {fw.title} runs on {' and '.join(fw.runs_on.vendors)} "
                             f"chips ({fw.runs_on.source}); {chip_id} is {vendor}'s: use one that runs on it "
                             f"({others})")


@cache
def load_framework(name: str) -> Framework:
    if not is_package_file(_FOLDER, f"{name}.yaml") or name == "aliases":
        raise InfercastError(f"--framework: unknown framework '{name}'{did_you_mean(name, framework_names())}; "
                             f"use one of {', '.join(framework_names())}")
    return parse_spec((_FOLDER / f"{name}.yaml").read_text(encoding="utf-8"), f"framework profile {name}", Framework)


class FrameworkRef(Spec):
    """A framework as a deployment uses it: the profile's name, the version asked for, and the profile."""

    name: str
    version: str | None
    profile: Profile

    @property
    def label(self) -> str:
        return self.name + (f"@{self.version}" if self.version else "")

    def __hash__(self) -> int:  # the profile follows from the name and version
        return hash((self.name, self.version))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FrameworkRef) and (self.name, self.version) == (other.name, other.version)


def resolve_framework(value: str | FrameworkRef | None) -> FrameworkRef:
    """``NAME[@VERSION]`` (None: generic) as a ``FrameworkRef``; an unknown name or a bad version is one
    line naming --framework."""
    if isinstance(value, FrameworkRef):
        return value
    text = (value or GENERIC).strip()
    name, _, version = text.partition("@")
    name, version = name.strip().lower(), version.strip() or None
    fw = load_framework(name)
    return _ref(fw.name, version)


@cache
def _ref(name: str, version: str | None) -> FrameworkRef:
    fw = load_framework(name)
    return FrameworkRef(name=fw.name, version=version, profile=fw.at(version))


# --- the measured data's framework column --------------------------------------------------------------


class Alias(Spec):
    pattern: str
    """A regular expression searched in the column's text (case-insensitive); a group named ``version``
    gives the version."""
    framework: str
    version: str | None = None
    """The version where the pattern has no ``version`` group (None: the profile's latest)."""
    dated_before: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}$")
    """YYYY-MM: the alias applies only to rows dated (``date=YYYY-MM-DD`` in notes) before this month."""
    why: str
    """What the text names, and why it maps here."""


class Aliases(Spec):
    infercast_framework_aliases: int = Field(default=1, ge=1, le=1)
    aliases: tuple[Alias, ...]


@cache
def _aliases() -> Aliases:
    text = (_FOLDER / "aliases.yaml").read_text(encoding="utf-8")
    table = Aliases.model_validate(yaml.safe_load(text))
    for a in table.aliases:
        load_framework(a.framework)
    return table


def framework_of_text(text: str, date: str | None = None) -> tuple[FrameworkRef, str]:
    """The profile and version a measured row's ``framework`` text names (``date``: the row's YYYY-MM-DD,
    for aliases that depend on it), and a note saying how it was read (the first alias that matches; none:
    generic, and the note says the text is unknown)."""
    for a in _aliases().aliases:
        if a.dated_before is not None and not (date and date[:7] < a.dated_before):
            continue
        match = re.search(a.pattern, text or "", flags=re.IGNORECASE)
        if match:
            version = match.groupdict().get("version") or a.version
            ref = _ref(a.framework, version)
            return ref, f"framework {ref.label} ({a.why})"
    return _ref(GENERIC, None), f"framework text {text!r} is not in the alias table: run as generic"
