"""How a proxy scored on the whole training set compares with FZ scored on a subset of it.

The subset's ids are positions in the subset, the whole set's are positions in the whole set;
both bundles record each id's row of the loaded pool (``pool_rows``), which maps one onto the
other. Reports the rank agreement on the subset's samples (Spearman, AUC for FZ > 0.5) and
what the proxy's top-N forget set (as ``memorization:high:N`` picks it) holds of FZ's tail.

    python benchmarks/proxy_selection.py --mem results/fashion_mnist/memorization_full \\
        --proxy results/fashion_mnist/rum_full_set/proxy_binary_accuracy_seed0.csv --top 1800
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from memorization import primary_set, recipe_of
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from unlearnkit.data.forget import LEVELS, ranked
from unlearnkit.data.scores import load_scores
from unlearnkit.errors import UnlearnkitError
from unlearnkit.recipe import load_bundle


def _defined(value: float) -> float | None:
    """None where a statistic is undefined (a constant ranking), not NaN in the JSON."""
    return None if math.isnan(value) else float(value)


def _auc(label: torch.Tensor, score: torch.Tensor) -> float | None:
    """AUC of ``score`` for ``label``; None when only one class is present."""
    if label.all() or not label.any():
        return None
    return float(roc_auc_score(label.numpy(), score.numpy()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mem", type=Path, required=True, help="the scored subset's folder")
    ap.add_argument("--proxy", type=Path, required=True, help="a proxy file of the whole set")
    ap.add_argument("--top", type=int, default=1800, help="the proxy's forget set size")
    ap.add_argument("--fz-top", type=int, default=300, help="FZ's tail on the subset")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    mem = json.loads((args.mem / "results.json").read_text())
    try:  # the files first: a wrong path fails before two data sets are loaded
        fz = load_scores(args.mem / f"fz_{primary_set(mem)}.csv")
        proxy = load_scores(args.proxy)
    except UnlearnkitError as err:
        sys.exit(f"error: {err}")
    sub_bundle = load_bundle(recipe_of(mem))
    whole_bundle = load_bundle(recipe_of({**mem, "subset": None}))
    subset = sub_bundle.pool_rows["train"].tolist()
    whole = whole_bundle.pool_rows["train"].tolist()
    whole_id = {row: i for i, row in enumerate(whole)}
    if len(proxy) != len(whole):
        sys.exit(f"error: {args.proxy} has {len(proxy)} samples, the whole set {len(whole)}")
    position = {int(i): k for k, i in enumerate(proxy.sample_ids.tolist())}
    ids = [whole_id[subset[i]] for i in fz.sample_ids.tolist()]  # the subset's samples
    if not torch.equal(sub_bundle.train.y[fz.sample_ids], whole_bundle.train.y[torch.tensor(ids)]):
        sys.exit("error: the subset's samples do not map onto the whole set (labels differ)")
    proxy_mem = proxy.memorization()
    on_subset = proxy_mem[torch.tensor([position[i] for i in ids])]
    high = LEVELS.get("high")  # the rows memorization:high:N picks
    top = set(proxy.sample_ids[high(ranked(proxy_mem), args.top)].tolist())
    fz_of = dict(zip(ids, fz.score.tolist(), strict=True))
    held = torch.tensor([fz_of[i] for i in top if i in fz_of])
    fz_tail = {ids[k] for k in high(ranked(fz.memorization()), args.fz_top).tolist()}
    result = {
        "proxy": str(args.proxy),
        "n_whole": len(whole),
        "n_subset": len(ids),
        "distinct_proxy_values": int(proxy.score.unique().numel()),
        "spearman_with_fz": _defined(spearmanr(on_subset.numpy(), fz.score.numpy()).statistic),
        "auc_fz_over_half": _auc(fz.score > 0.5, on_subset),
        "top": args.top,
        "top_in_subset": len(held),
        "top_mean_fz": float(held.mean()),
        "top_share_fz_over_half": float((held > 0.5).float().mean()),
        "top_share_fz_zero": float((held == 0).float().mean()),
        "fz_tail": args.fz_top,
        "fz_tail_mean_fz": float(torch.tensor([fz_of[i] for i in fz_tail]).mean()),
        "fz_tail_in_top": len(fz_tail & top),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
