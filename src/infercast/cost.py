"""Cost of a deployment: per chip-hour, per hour, per million output tokens and per query.

A chip-hour costs either a cloud price (``usd_per_chip_hour``, which already covers power and
the building), or, for owned hardware,

    capital      (chip + server share + network share) / (years x 8760 h)
    electricity  (chip power + host power) x PUE x USD/kWh
    hosting      (TDP + host power) x USD per kW-month of provisioned IT power

A deployment of N chips serving ``batch`` sequences for the estimate's end-to-end latency E2E:

    usd_per_hour             = N x usd_per_chip_hour
    usd_per_million_tokens   = usd_per_hour / 3600 / throughput_tokens_per_s x 1e6
    usd_per_query            = usd_per_hour / 3600 x E2E / batch     (isl + osl as given)

Every figure below is a documented default; those with no document behind them say so.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from infercast.errors import InfercastError
from infercast.hardware import Chip
from infercast.roofline import ChipRates
from infercast.system import System

HOURS_PER_YEAR = 8760.0


class CostOptions(BaseModel):
    """How a chip-hour is priced: a cloud rate, or owned hardware with its running costs."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    usd_per_chip_hour: float | None = Field(default=None, gt=0, le=1e6)
    """Cloud price of one chip for one hour; when set, the owned-hardware fields are not used."""
    chip_price_usd: float | None = Field(default=None, gt=0, le=1e9)
    """Price of one chip, replacing the catalog's (and a named system's) price."""
    server_usd_per_chip: float = Field(default=7500.0, ge=0, le=1e9)
    """Server around each chip where the system has no price of its own: CPUs, memory, baseboard and
    switches, NICs, chassis. (HGX H100 at USD 300k - 8 x USD 30k H100s) / 8, from the catalog."""
    network_usd_per_chip: float = Field(default=5000.0, ge=0, le=1e9)
    """Share of the cluster fabric (switches, optics, cables) per chip. Assumed: the order of an eighth
    of an H100 server's cost per GPU, as InfiniBand fabrics are commonly said to add; not a quoted price."""
    years: float = Field(default=5.0, gt=0, le=100)
    """Years the hardware is paid off over (and the horizon of a fleet's TCO). Assumed: servers are
    depreciated over 4-6 years by the large clouds; 5 is the middle."""
    electricity_usd_per_kwh: float = Field(default=0.08, ge=0, le=100)
    """Electricity price. US industrial average of about 8 cents per kWh in 2023 (EIA, Electric Power
    Monthly, table 5.3)."""
    pue: float = Field(default=1.2, ge=1, le=10)
    """Power usage effectiveness: facility power over IT power. Assumed between hyperscale (Google
    reports 1.10 for its fleet) and the industry average (Uptime Institute survey, about 1.58)."""
    hosting_usd_per_kw_month: float = Field(default=150.0, ge=0, le=1e6)
    """Data-centre space, power and cooling plant per kW of provisioned IT power per month. Assumed: the
    order of US wholesale colocation rates (about USD 100-200 per kW-month in 2023-2024 market reports)."""
    host_power_w_per_chip: float = Field(default=575.0, ge=0, le=1e6)
    """Power of the server around each chip (CPUs, NICs, switches, fans): (DGX H100's 10.2 kW maximum -
    8 x 700 W) / 8 (NVIDIA DGX H100 datasheet); drawn in full, an upper estimate."""


DEFAULT_OPTIONS = CostOptions()

_FLAGS = {"usd_per_chip_hour": "--usd-per-chip-hour", "electricity_usd_per_kwh": "--electricity-usd-per-kwh",
          "pue": "--pue", "years": "--years"}


def merge_options(overrides: CostOptions | dict[str, float] | None) -> CostOptions:
    """The defaults with ``overrides`` applied; a bad value names its flag."""
    if overrides is None:
        return DEFAULT_OPTIONS
    if isinstance(overrides, CostOptions):
        return overrides
    try:
        return CostOptions(**{**DEFAULT_OPTIONS.model_dump(), **overrides})
    except ValidationError as exc:
        err = next((e for e in exc.errors() if e["type"] == "extra_forbidden"), exc.errors()[0])
        name = str(err["loc"][0]) if err["loc"] else "?"
        flag = _FLAGS.get(name, f"--cost {name}=...")
        if err["type"] == "extra_forbidden":
            raise InfercastError(f"--cost {name}: unknown key; use one of {', '.join(CostOptions.model_fields)}"
                                 ) from None
        raise InfercastError(f"{flag}: {err['msg'].lower()} (got {err.get('input')!r})") from None


def capex_per_chip_usd(chip: Chip | ChipRates, system: System, options: CostOptions = DEFAULT_OPTIONS,
                       chip_id: str | None = None):
    """Purchase cost per chip slot: a named system's price per chip where it has one (it includes the
    server), else the chip's price plus ``server_usd_per_chip``; always plus the network share."""
    o = options
    if o.chip_price_usd is not None:
        return o.chip_price_usd + o.server_usd_per_chip + o.network_usd_per_chip
    if system.price_usd is not None and system.price_usd.value is not None:
        return system.price_usd.value / system.chips_per_node + o.network_usd_per_chip
    price = chip.price_usd if isinstance(chip, ChipRates) else chip.price_usd.value
    if price is None:
        name = chip_id or (chip.id if isinstance(chip, Chip) else "the chip")
        raise InfercastError(f"hardware {name} has no price in the catalog; give --usd-per-chip-hour or "
                             f"--cost chip_price_usd=...")
    return price + o.server_usd_per_chip + o.network_usd_per_chip


@dataclass(frozen=True)
class ChipHour:
    """What one chip-hour costs, by part (USD)."""

    capital_usd: float
    electricity_usd: float
    hosting_usd: float

    @property
    def total_usd(self):
        return self.capital_usd + self.electricity_usd + self.hosting_usd


def owned_chip_hour(capex_usd, chip_power_w, tdp_w, options: CostOptions = DEFAULT_OPTIONS) -> ChipHour:
    """One owned chip-hour of a chip bought for ``capex_usd`` drawing ``chip_power_w`` on average."""
    o = options
    capital = capex_usd / (o.years * HOURS_PER_YEAR)
    electricity = (chip_power_w + o.host_power_w_per_chip) * o.pue / 1000 * o.electricity_usd_per_kwh
    hosting = (tdp_w + o.host_power_w_per_chip) / 1000 * o.hosting_usd_per_kw_month * 12 / HOURS_PER_YEAR
    return ChipHour(capital, electricity, hosting)
