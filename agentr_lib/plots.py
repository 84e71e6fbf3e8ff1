"""Every figure of the report, drawn from metrics dicts only (never recomputing a stage)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from . import paper

COLORS = {"textcraft": "tab:green", "sciworld": "tab:blue", "webshop": "tab:orange", "average": "black"}


def _save(fig, path: str | Path | None):
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def score_by_iteration(evals: dict[int, dict], variant: str = "agent_r", path=None, key: str = "envs",
                       title: str = "Held-out score per iteration"):
    """Our score per env (95 % bootstrap CI) against the paper's Table 6 (multi-task, Llama-3.1-8B)."""
    envs = sorted({e for m in evals.values() for e in m.get(key, {}).get("envs", m.get(key, {}))})
    fig, axes = plt.subplots(1, len(envs), figsize=(4 * len(envs), 3.4), squeeze=False)
    reference = paper.table6(variant)
    for ax, env in zip(axes[0], envs):
        its = sorted(k for k in evals if _envs_of(evals[k], key).get(env, {}).get("n", 1) > 0)  # n 0: no point
        ys = [_envs_of(evals[k], key)[env]["score"] for k in its]
        lo = [y - _envs_of(evals[k], key)[env]["ci"][0] for k, y in zip(its, ys)]
        hi = [_envs_of(evals[k], key)[env]["ci"][1] - y for k, y in zip(its, ys)]
        ax.errorbar(its, ys, yerr=[lo, hi], marker="o", capsize=3, color=COLORS.get(env), label="ours")
        if key == "envs":
            ref_its = sorted(reference)
            ax.plot(ref_its, [reference[k][env] for k in ref_its], "--", color="grey", label="paper (8B)")
        ax.set(title=env, xlabel="iteration", ylabel="score", ylim=(-2, 102))
        ax.set_xticks(sorted(set(its) | set(reference)) if key == "envs" else its)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _envs_of(metrics: dict, key: str) -> dict:
    part = metrics.get(key, {})
    return part.get("envs", part) if key != "envs" else part


def loops_by_length(evals: dict[int, dict], path=None):
    """Figure 4: mean repetition count of back-to-back repeated action blocks, by block length, per iteration."""
    envs = sorted({e for m in evals.values() for e in m["envs"]})
    fig, axes = plt.subplots(1, len(envs), figsize=(4 * len(envs), 3.4), squeeze=False)
    width = 0.8 / max(len(evals), 1)
    for ax, env in zip(axes[0], envs):
        for i, k in enumerate(sorted(evals)):
            by_len = evals[k]["envs"].get(env, {}).get("loops_by_length", {})
            lengths = sorted(by_len, key=int)
            ax.bar([int(L) + i * width for L in lengths], [by_len[L]["mean_count"] for L in lengths], width,
                   label=f"iter {k}")
        ax.set(title=env, xlabel="repeated block length (actions)", ylabel="mean repetitions")
        ax.legend(fontsize=8)
    fig.suptitle("Loops in test trajectories (Figure 4)")
    fig.tight_layout()
    return _save(fig, path)


def revision_length(revisions: dict[int, dict], path=None):
    """Figure 5: mean revision length (actions before the first error) per iteration and env."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    envs = sorted({e for m in revisions.values() for e in m.get("envs", {})})
    for env in envs:
        its = sorted(k for k in revisions if env in revisions[k].get("envs", {}))
        ys = [revisions[k]["envs"][env].get("mean_revision_length") for k in its]
        ax.plot(its, [y if y is not None else float("nan") for y in ys], marker="o", color=COLORS.get(env),
                label=f"{env} (ours)")
    ref = paper.FIGURE5_TEXTCRAFT
    ax.plot(sorted(ref), [ref[k] for k in sorted(ref)], "--", color="grey", label="textcraft (paper, read-off)")
    ax.set(xlabel="iteration", ylabel="mean revision length", title="Revision length (Figure 5)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def trajectory_counts(revisions: dict[int, dict], path=None):
    """Table 1 as bars: revision and good samples per env and iteration."""
    envs = sorted({e for m in revisions.values() for e in m.get("envs", {})})
    fig, axes = plt.subplots(1, max(len(envs), 1), figsize=(4 * max(len(envs), 1), 3.4), squeeze=False)
    for ax, env in zip(axes[0], envs):
        its = sorted(k for k in revisions if env in revisions[k].get("envs", {}))
        rev = [revisions[k]["envs"][env].get("revision_samples", 0) for k in its]
        good = [revisions[k]["envs"][env].get("good_samples", 0) for k in its]
        ax.bar([k - 0.2 for k in its], rev, 0.4, label="revision")
        ax.bar([k + 0.2 for k in its], good, 0.4, label="good")
        ax.set(title=env, xlabel="iteration", ylabel="samples")
        ax.set_xticks(its)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no half samples on the axis
    if envs:  # one legend for all panels, beside the title, where it covers no bar
        fig.legend(*axes[0][0].get_legend_handles_labels(), loc="upper right", ncol=2, fontsize=8)
    fig.suptitle("Trajectories collected (Table 1)")
    fig.tight_layout()
    return _save(fig, path)
