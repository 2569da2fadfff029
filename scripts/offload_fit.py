"""Fit ``tiers.PAGEABLE_COPY_SHARE`` (the share of the pinned host-to-GPU rate that a copy from pageable memory
reaches) on the rows of measured-offload.csv whose copies are pageable, and report it in sample and leave one
source out.

Pageable rows: Hugging Face Accelerate (its hooks copy the state dict's CPU tensors, never pinned), diffusers'
sequential CPU offload (Accelerate's hooks again) and DeepSpeed ZeRO-Inference with weights in host DRAM
(``offload_param.pin_memory`` is False unless set). One share is fitted: the one that minimises the median
|error| of the pageable rows of the sources fitted on (grid 0.20..1.00 by 0.02). Leave one source out fits on the
other sources' pageable rows and predicts the held-out source's rows with that share (``--by system``: leave one
system out, e.g. fit on DeepSpeed's rows alone and predict Accelerate's and diffusers').

Usage: python scripts/offload_fit.py [--data ../shared/data/measured-offload.csv] [--by source|system]
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

import infercast.tiers as tiers
from infercast.validate_offload import BASELINES, framework_of, validate_offload

ROOT = Path(__file__).resolve().parents[1]
GRID = np.round(np.arange(0.20, 1.0001, 0.02), 2)


def pageable(row: dict[str, str]) -> bool:
    """Whether the row's weights reach the GPU by pageable copies from host DRAM."""
    fw, pol = framework_of(row), row["offload_policy"]
    if fw == "diffusers":
        return "sequential" in pol
    kind = "accelerate" if fw == "accelerate" else "zero"
    stated = BASELINES.get((kind, row["model"])) if row["id"].startswith("flexgen-t2") else None
    on_disk = "disk" in pol or (stated is not None and stated[1] == "disk")
    return fw == "accelerate" or (fw == "deepspeed" and not on_disk)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "measured-offload.csv")
    ap.add_argument("--by", choices=("source", "system"), default="source", help="what a fold leaves out")
    args = ap.parse_args()
    rows = list(csv.DictReader(open(args.data, encoding="utf-8")))
    errors = {}  # share -> id -> error (every predicted row)
    for share in GRID:
        tiers.PAGEABLE_COPY_SHARE = float(share)
        errors[share] = {x.id: x.error for x in validate_offload(rows) if x.predicted is not None}
    by_id = {r["id"]: r for r in rows}
    ids = list(errors[GRID[0]])
    source = {i: i.split("-")[0] if args.by == "source" else framework_of(by_id[i]) for i in ids}
    fit_ids = [i for i in ids if pageable(by_id[i])]

    def best(train: list[str]) -> float:
        return min(GRID, key=lambda s: (np.median([abs(errors[s][i]) for i in train]), abs(s - 0.5)))

    share = best(fit_ids)
    held = {}
    for src in sorted({source[i] for i in fit_ids}):
        s = best([i for i in fit_ids if source[i] != src])
        held.update({i: (s, errors[s][i]) for i in ids if source[i] == src})
    print(f"fitted share {share:.2f} on {len(fit_ids)} pageable rows; leaving one {args.by} out:")
    for src in sorted({source[i] for i in fit_ids}):
        print(f"  without {src}: share {next(s for i, (s, _) in held.items() if source[i] == src):.2f}")
    groups = defaultdict(list)
    for i in ids:
        ins = errors[share][i]
        out = held.get(i, (share, ins))[1]
        for g in ("all", f"system: {framework_of(by_id[i])}", f"source: {i.split('-')[0]}"):
            groups[g].append((ins, out))
    print(f"{'group':24s} {'rows':>4s} {'in sample':>10s} {'held out':>9s}")
    for g, v in sorted(groups.items()):
        a = np.array(v)
        print(f"{g:24s} {len(a):4d} {100 * np.median(np.abs(a[:, 0])):9.1f}% {100 * np.median(np.abs(a[:, 1])):8.1f}%")


if __name__ == "__main__":
    main()
