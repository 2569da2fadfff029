"""Write docs/vision.md: encoders, CNNs and diffusion pipelines checked against every row of
measured-vision-encoder.csv (in sample, leave-one-source-out and leave-one-chip-out, by model group, source and
chip), offloaded inference against measured-offload.csv (by system, source and chip), the FLOP goldens and
claims C11, C14 and C20.

Usage: python scripts/vision_report.py [--data-dir ../shared/data] [--output docs/vision.md] [--write-calibration]

--write-calibration refits the network profile (infercast.calibrate_vision: about a minute, tabulating every row
once, then the fit and one refit per source and per chip left out) and writes
src/infercast/catalog/calibration/networks.yaml before the report reads it.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import yaml
from report_tables import pct, table

from infercast.calibration import network_profile
from infercast.claims import c11_memory_tiers, c14_mlperf, c20_diffusion
from infercast.networks import flops_per_sample, load_network
from infercast.validate_offload import framework_of, validate_offload
from infercast.validate_vision import validate_vision

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "src" / "infercast" / "catalog" / "calibration" / "networks.yaml"
TARGETS = {"bert": 0.15, "resnet": 0.15, "diffusion": 0.20, "offload": 0.25}
FOLDS = (("in_sample", "in sample"), ("loso", "leave one source out"), ("loco", "leave one chip out"))




def fold_table(summary: dict, key: str, label: str) -> str:
    rows = []
    for g, ins in summary["in_sample"][key].items():
        cells = [g.replace(" | ", " / "), str(ins["count"])]
        for fold, _ in FOLDS:
            s = summary.get(fold, {}).get(key, {}).get(g)
            cells += [pct(s["median_ape"]) if s else "-", pct(s["median_signed"], True) if s else "-"]
        rows.append(cells)
    head = [label, "rows"]
    for _, name in FOLDS:
        head += [f"{name}: median abs", "median signed"]
    return table(head, rows)


def write_calibration(data_dir: Path) -> None:
    from infercast.calibrate_vision import calibrate_vision

    rows = list(csv.DictReader(open(data_dir / "measured-vision-encoder.csv", encoding="utf-8")))
    profile = calibrate_vision(rows, progress=lambda m: print(m, file=sys.stderr))
    text = ("# Written by scripts/vision_report.py --write-calibration (infercast.calibrate_vision) from\n"
            "# shared/data/measured-vision-encoder.csv; every figure is a fit, its errors in fit.\n")
    data = profile.model_dump(exclude_none=True)
    PROFILE.write_text(text + yaml.safe_dump(data, sort_keys=False, width=110), encoding="utf-8")
    network_profile.cache_clear()


def offload_section(data_dir: Path) -> str:
    rows = list(csv.DictReader(open(data_dir / "measured-offload.csv", encoding="utf-8")))
    by_id = {r["id"]: r for r in rows}
    results = validate_offload(rows)
    done = [x for x in results if x.predicted is not None]
    groups: dict[str, list[float]] = defaultdict(list)
    for x in done:
        for key in (f"system: {framework_of(by_id[x.id])}", f"source: {x.source}", f"chip: {x.hardware}", "all"):
            groups[key].append(x.error)
    import numpy as np

    out = [f"{len(done)} of {len(results)} rows predicted (target: median |error| <= {pct(TARGETS['offload'])}).", "",
           table(["group", "rows", "median abs", "median signed"],
                 [[g, str(len(v)), pct(float(np.median(np.abs(v)))), pct(float(np.median(v)), True)]
                  for g, v in sorted(groups.items())]), "", "Every row:", "",
           table(["id", "measured", "predicted", "error", "policy or reason"],
                 [[x.id, f"{x.measured:.4g}" if x.measured == x.measured else "OOM",
                   "-" if x.predicted is None else f"{x.predicted:.4g}", pct(x.error, True),
                   (x.note or x.skipped_reason or "").replace("|", "/")] for x in results])]
    return "\n".join(out)


def goldens() -> str:
    rows = []
    for model, wl in (("resnet-50", {}), ("bert-large", {"seq_len": 384}), ("sd-1.5", {"resolution": "512x512"}),
                      ("sdxl-base-1.0", {"resolution": "1024x1024"}), ("sd3-medium", {"resolution": "1024x1024"}),
                      ("flux.1-dev", {"resolution": "1024x1024"})):
        net = load_network(model)
        f = flops_per_sample(net, net.workload(**wl))
        params = sum(net.params().values())
        rows.append([model, net.kind, f"{params:,}", " / ".join(f"{k} {v / 1e12:.4g}" for k, v in f.items()),
                     f"{sum(f.values()) / 1e12:.4g}"])
    return table(["model", "kind", "parameters", "TFLOPs per sample by pass (default workload)", "total TFLOPs"], rows)


def claims() -> str:
    out = []
    for c in (c11_memory_tiers(), c14_mlperf(), c20_diffusion()):
        d = c.to_dict()
        figs = "; ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in d["figures"].items())
        out.append(f"- **{d['id']}** ({d['verdict']}): {d['title']}. {figs}")
    return "\n".join(out)


def report(data_dir: Path) -> str:
    profile = network_profile()
    fit = profile.fit or {}
    summary = fit.get("summary", {})
    rows = list(csv.DictReader(open(data_dir / "measured-vision-encoder.csv", encoding="utf-8")))
    results = validate_vision(rows)
    skipped = defaultdict(int)
    for x in results:
        if x.skipped_reason:
            skipped[x.skipped_reason.split(" is not in the catalog")[0] if "not in the catalog" in x.skipped_reason
                    else x.skipped_reason] += 1
    groups = summary.get("in_sample", {}).get("group", {})
    targets = table(["group", "target", "in sample", "leave one source out", "leave one chip out"],
                    [[g, pct(TARGETS[g]), *(pct(summary.get(f, {}).get("group", {}).get(g, {}).get("median_ape"))
                                           for f, _ in FOLDS)] for g in groups])
    scales = table(["family", *sorted({k for d in profile.scales.values() for k in d})],
                   [[f, *(f"{d[k]:.3g}" if k in d else "-" for k in sorted({k for d in profile.scales.values()
                                                                              for k in d}))]
                    for f, d in profile.scales.items()])
    return f"""# Encoders, CNNs, diffusion pipelines and offloaded inference

Written by `python scripts/vision_report.py` (`--write-calibration` refits the network profile first). The engine
runs BERT-Large, ResNet-50 and diffusion pipelines as passes of operators (`infercast.passes`), priced by the
decoder's roofline with four network-specific pieces of physics and one fitted profile:

- **activations on chip**: a kernel hands its output to the next through the L2 where its input and output fit
  half of it (`tiling.activations_on_chip`); without this ResNet-50 on an L4 or L40 would need more DRAM
  bandwidth than the card has;
- **eager PyTorch** (`--eager`): a norm and its SiLU, adaLN's norm and modulation are kernels apart, and every
  kernel is dispatched from Python (the pass cannot end before the host's `kernels x eager_launch_s`);
- **materialised attention** (`--attention materialized`): diffusers' attention processor before SDPA or xFormers
  writes its scores and reads them back;
- **MLPerf Offline** hides the per-kernel launch and tail (several engine contexts on their own streams), and a
  PyTorch `fp32` row runs TF32 tensor-core math;
- the **network profile** (`catalog/calibration/networks.yaml`, fitted by `infercast.calibrate_vision`): per chip
  family, network kind and math width, a factor on the decoder fit's tensor-core ceilings (the decoder fit's 8-bit
  ceiling is FP8 LLM GEMMs'; MLPerf runs INT8 TensorRT convolutions and BERT kernels), the mean tokens of an
  MLPerf BERT sample ({profile.mlperf_bert_tokens:.4g}: the harness packs SQuAD without padding; the tokens and
  the encoder factors both scale BERT's time, so the fit pins their combination, not the SQuAD mean itself) and
  the host's time per modelled eager kernel ({profile.eager_launch_s * 1e6:.3g} us: it stands for the several
  PyTorch operations, views and module calls behind each kernel the model counts).

## Targets (median absolute error)

{targets}

In sample is the shipped fit; leave one source out refits every parameter without the source's rows (the two
MLPerf rounds, each diffusion benchmark) and predicts them; leave one chip out does the same per chip (a chip
whose family keeps too few rows takes the generic factor, as a new chip would). {fit.get('rows', 0)} rows are
fitted; skipped rows and why: {'; '.join(f'{n} x {why}' for why, n in sorted(skipped.items(), key=lambda kv: -kv[1]))}.

## The fitted profile

{scales}

A factor multiplies gemm_max (and attention_max) for `wide` math, gemm_max_narrow for `narrow`, capped at 1.

## By source

{fold_table(summary, "group_source", "group / source")}

## By chip

{fold_table(summary, "group_chip", "group / chip")}

## What the misses are

- **Turing and Volta diffusion** (T4 factor well below the others): diffusers on sm_70/75 runs SDPA's memory-efficient
  kernel, not FlashAttention, and the decoder fit has no Turing family, so the family factor carries it. The T4's
  70 W now binds: it takes the V100's energy per operation (`energy.power_basis` in its YAML: the same 12 nm node),
  so a large FP16 GEMM runs at 22 TFLOPS under its cap, where FlexGen's authors measured 21 (`catalog/hosts.yaml`).
  Left out, the generic factor over-predicts the T4's diffusion rows by 79% (157% while its TDP did not bind).
- **Power-capped parts** take the energy per operation of the same die (or architecture and node) at full power:
  T4, L4, A10, H100 PCIe and NVL, A100 PCIe and A30 (`energy.power_basis`), so their TDP binds matrix work. An
  INT8 or FP8 FLOP costs a 16-bit tensor-core cycle over the format's speed-up (`energy.flop_energy_j`: the narrow
  modes split the 16-bit datapath into lanes), not Horowitz's standalone 8-bit multiplier: MLPerf's INT8 rows of
  these parts fall nearer their TDP ratio to the full-power part than their peak ratio (per chip, H100 PCIe / SXM
  ResNet-50: 0.62 measured, 0.50 TDP, 0.76 peak; A10 / A40 BERT: 0.61, 0.50, 0.84). Priced so, the A10's INT8
  BERT rows went from +44% to +9% and the T4's from +41% to +1%, and the Ada factors no longer split the
  difference between the capped L4 and the uncapped L40 (median signed: L40 ResNet-50 -31% to -4%, BERT -17% to
  -2%). The misses that remain: the L4's BERT rows (+22%) and the INT8 ResNet-50 rows of the A10, A2 and T4 (-12%
  to -30%), whose convolutions the model now caps harder than the data do.
- **hfblog SDXL rows**: at 50 steps with guidance they would need 238 TFLOP/s (76% of the A100's dense FP16 peak)
  in eager PyTorch, more than any other row reaches; the steps or the card may differ from the notes' defaults.
- **ToMe's 'Vanilla' rows** are modelled with materialised attention (the column beside '+ xFormers'); the A100
  and V100 rows fall on both sides.
- **Jetson Orin and single T4 rows**: one to four rows of a chip whose family's factor is set by others.

## Offloaded inference (measured-offload.csv)

FlexGen rows run FlexGen's own schedule and cost model (`infercast.flexgen`): zig-zag blocks, weights and KV cache
split over GPU, DRAM and disk, CPU attention over a cache off the GPU, 4-bit group-wise compression with its GPU
decompression traffic (counted from flexgen's code), on the paper's T4 machine with its authors' fitted PCIe,
CPU-attention and prefill GEMM rates (`catalog/hosts.yaml`, from flexgen 0.1.8's cost model: the T4 holds a third
of its datasheet peak at 70 W) and the drive's stated read and write rates. The four-machine rows keep four
blocks in flight, one per stage, as `dist_flex_opt.py` does. The RTX A6000 workstation's FlexGen rows carry the T4
machine's PCIe and CPU rates over (PCIe 4 link, 5.6 GB/s drive) and its GPU is the engine's: they are held out
from everything FlexGen's authors measured. ZeRO-Inference, Accelerate and DeepNVMe rows use the engine with
`--offload` at the measured PCIe copy rate (and, on the T4 machine, its measured GEMM rates). Accelerate's hooks
and DeepSpeed's `offload_param` (unless `pin_memory` is set) copy from pageable DRAM, which the CUDA driver stages
through a page-locked buffer: `tiers.PAGEABLE_COPY_SHARE` (0.56 of the pinned rate, fitted by
`scripts/offload_fit.py` on the 31 pageable rows; 0.54-0.60 leaving any one source out). The FlexGen paper's
one-T4 DeepSpeed and Accelerate baselines run the batch and lowest offload device flexgen's README states
(`validate_offload.BASELINES`), at prompt 1024 scaled by the tokens a sequence holds (the one that scales to no
sequence is the paper's OOM row).

{offload_section(data_dir)}

Median |error| of the 74 rows: 16.3% in sample, 17.0% when each source's rows are predicted with the pageable
share fitted without them (`python scripts/offload_fit.py`), 27.3% when each system's are (`--by system`): fitted
on Accelerate's and diffusers' six rows alone the share is 0.34, and DeepSpeed's rows then miss by 41.8%. The
share does not carry from Accelerate's hooks to DeepSpeed's prefetch: Accelerate pays something per module
beyond the staged copy.

What misses, and why: Accelerate's OPT-30B on the T4 (+62%, 8 sequences, 90% of the weights copied from pageable
DRAM with the compute in series) runs at an effective 4.8 GB/s where DeepSpeed's pageable copies on the same
machine reach 7-9 GB/s: something in Accelerate's per-module hooks costs more than the copy, and the source does
not say what. The 0.01 tokens/s OPT-175B rows are rounded to one significant digit (0.005-0.015), so their
-43%..+85% is within the rounding. The four-T4 DeepSpeed rows of OPT-175B (+200%) run ZeRO-3 over four machines
whose DRAM together holds the model; the source does not say how it was partitioned or what the network carried,
and the model runs four independent copies. ZeRO-Inference's KV-offload rows of LLaMA-2-70B are several-fold over
while OPT-30B/66B/175B's are within 22%: at an implied 0.7 GB/s per cache byte, DeepSpeed's KV offload path for
grouped-query attention does something the source does not describe. Diffusers' sequential CPU offload (-49%)
now copies pageable weights, but its effective rate is 4.6 GB/s on the A100: the hooks fire for each of the UNet's
submodules and each copy waits for the GPU (a pageable copy synchronises the stream), a per-module cost without a
sourced figure; the no-offload SDXL baseline it adds to is itself +44%.

## FLOP and parameter goldens

{goldens()}

Pinned by tests/test_networks.py with their derivations (ResNet-50 4.089 G multiply-adds; BERT-Large at 384
tokens; SDXL's UNet 6.78 TFLOPs at 1024x1024; SD3-medium's transformer 2,028,328,000 parameters).

## Claims

{claims()}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--output", default=str(ROOT / "docs" / "vision.md"))
    ap.add_argument("--write-calibration", action="store_true")
    args = ap.parse_args()
    data_dir = Path(args.data_dir)
    if args.write_calibration:
        write_calibration(data_dir)
    Path(args.output).write_text(report(data_dir), encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
