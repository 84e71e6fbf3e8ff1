"""Every figure of the report, drawn from metrics dicts only (never recomputing a stage).

Metrics come per variant: `evals` / `revisions` map a variant's name to {iteration: its metrics.json}, iteration 0
(the shared baseline) in every variant's. Ours are solid lines with 95 % bootstrap error bars, the paper's
(Llama-3.1-8B-Instruct) dashed in the same colour where it has a number.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from . import paper
from .config import Variant

COLORS = {"textcraft": "tab:green", "sciworld": "tab:blue", "webshop": "tab:orange", "average": "black"}
SETTING_COLORS = {"multi": "tab:blue", "single": "tab:red"}


def _save(fig, path: str | Path | None):
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def variant_colors(names) -> dict[str, str]:
    """One colour per variant, by its place in the study (stable across figures)."""
    palette = plt.get_cmap("tab10").colors
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def _panels(n: int, rows: int = 1, width: float = 3.6, height: float = 3.0, sharey: bool | str = False):
    fig, axes = plt.subplots(rows, max(n, 1), figsize=(width * max(n, 1), height * rows), squeeze=False,
                             sharey=sharey)
    return fig, axes


def part_of(metrics: dict, key: str) -> dict:
    """The per-env numbers and average of an eval metrics dict: its test scores ("envs") or its recovery."""
    if key == "envs":
        return {"envs": metrics.get("envs") or {}, "average": metrics.get("average")}
    return metrics.get("recovery") or {}


def point(metrics: dict, key: str, env: str) -> tuple[float, float, float] | None:
    """(score, CI low, CI high) of one env (or "average", without an interval); None where nothing was measured."""
    part = part_of(metrics, key)
    if env == "average":
        avg = part.get("average")
        return None if avg is None else (avg, avg, avg)
    m = (part.get("envs") or {}).get(env)
    if not m or not m.get("n") or m.get("score") is None:  # n = 0: no episode, no point (not a zero)
        return None
    lo, hi = m.get("ci") or (m["score"], m["score"])
    return m["score"], lo, hi


def study_envs(evals: dict[str, dict[int, dict]], key: str = "envs") -> list[str]:
    return sorted({e for runs in evals.values() for m in runs.values() for e in part_of(m, key).get("envs") or {}})


def _ours(ax, runs: dict[int, dict], key: str, env: str, color, label: str, marker: str = "o"):
    pts = [(k, point(runs[k], key, env)) for k in sorted(runs)]
    pts = [(k, p) for k, p in pts if p is not None]
    if not pts:
        return
    xs, ys = [k for k, _ in pts], [p[0] for _, p in pts]
    yerr = [[p[0] - p[1] for _, p in pts], [p[2] - p[0] for _, p in pts]]
    ax.errorbar(xs, ys, yerr=yerr, marker=marker, capsize=3, color=color, label=label)


def _reference(ax, ref: dict[int, dict], env: str, color, label: str | None, style: str = "--"):
    its = sorted(k for k in ref if ref[k].get(env) is not None)
    if its:
        ax.plot(its, [ref[k][env] for k in its], style, color=color, alpha=0.6, label=label)


def recovery_reference(variant: Variant) -> dict[int, dict]:
    """Table 3 per iteration (multi-task Agent-R and Direct-Revision only: the paper has no single-task recovery)."""
    return {} if variant.single else paper.TABLE3.get(variant.method, {})


def score_by_iteration(evals: dict[str, dict[int, dict]], path=None, key: str = "envs",
                       title: str = "Held-out score per iteration (Figure 3 analogue)"):
    """Score per iteration, one line per variant, a panel per env and the average; the paper's dashed (Table 6 for
    scores, Table 3 for recovery) where it has the variant's numbers."""
    envs = study_envs(evals, key) + ["average"]
    colors = variant_colors(evals)
    fig, axes = _panels(len(envs))
    for ax, env in zip(axes[0], envs):
        for name, runs in evals.items():
            v = Variant(name)
            _ours(ax, runs, key, env, colors[name], name)
            ref = paper.per_iteration(v.method, v.single) if key == "envs" else recovery_reference(v)
            _reference(ax, ref, env, colors[name], None)
        ax.set(title=env, xlabel="iteration", ylabel="score", ylim=(-2, 102))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(fig, axes, "dashed: the paper's (Llama-3.1-8B)")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _legend(fig, axes, note: str | None = None):
    """One legend for the figure, below the panels: labels of every panel, once each."""
    seen = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    if note:
        seen[note] = plt.Line2D([], [], linestyle="--", color="grey")
    if seen:
        # below the figure (its top edge at the bottom edge), where it covers no panel; savefig's tight box keeps it
        fig.legend(seen.values(), seen.keys(), loc="upper center", ncol=min(len(seen), 4), fontsize=8,
                   bbox_to_anchor=(0.5, 0.0))


def single_vs_multi(evals: dict[str, dict[int, dict]], path=None):
    """Figure 6: per method that has a "-single" variant, single- vs multi-task score per iteration (Table 6)."""
    methods = sorted({Variant(n).method for n in evals if Variant(n).single})
    envs = study_envs(evals) + ["average"]
    fig, axes = _panels(len(envs), rows=max(len(methods), 1))
    for row, method in zip(axes, methods):
        for ax, env in zip(row, envs):
            for setting, name in (("multi", method), ("single", method + "-single")):
                color = SETTING_COLORS[setting]
                _ours(ax, evals.get(name, {}), "envs", env, color, f"ours, {setting}")
                _reference(ax, paper.per_iteration(method, setting == "single"), env, color, f"paper, {setting}")
            ax.set(title=f"{method}: {env}", xlabel="iteration", ylabel="score", ylim=(-2, 102))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(fig, axes)
    fig.suptitle("Single- vs multi-task training per iteration (Figure 6 / Table 6)")
    fig.tight_layout()
    return _save(fig, path)


def loops_by_length(evals: dict[str, dict[int, dict]], path=None):
    """Figure 4: mean repetition count of back-to-back repeated action blocks by block length; a panel per env and
    variant, a bar per iteration (0: the shared baseline)."""
    envs, names = study_envs(evals), list(evals)
    fig, axes = _panels(len(names), rows=max(len(envs), 1), width=3.2, height=2.6, sharey="row")  # variants compared
    for row, env in zip(axes, envs):
        for ax, name in zip(row, names):
            runs = evals[name]
            width = 0.8 / max(len(runs), 1)
            for i, k in enumerate(sorted(runs)):
                by_len = ((runs[k].get("envs") or {}).get(env) or {}).get("loops_by_length") or {}
                lengths = sorted(by_len, key=int)
                ax.bar([int(L) - 0.4 + (i + 0.5) * width for L in lengths],
                       [by_len[L].get("mean_count", 0.0) for L in lengths], width, label=f"iter {k}")
            ax.set(title=f"{name}: {env}", xlabel="block length (actions)", ylabel="mean repetitions")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(fig, axes)
    fig.suptitle("Loops in test trajectories (Figure 4)")
    fig.tight_layout()
    return _save(fig, path)


def revision_length(revisions: dict[str, dict[int, dict]], path=None):
    """Figure 5: mean revision length (actions before the first error) per iteration, a line per variant, a panel
    per env (the paper's TextCraft read-off dashed)."""
    envs = sorted({e for runs in revisions.values() for m in runs.values() for e in m.get("envs") or {}})
    colors = variant_colors(revisions)
    fig, axes = _panels(len(envs))
    for ax, env in zip(axes[0], envs):
        for name, runs in revisions.items():
            its = [k for k in sorted(runs) if ((runs[k].get("envs") or {}).get(env) or {}).get(
                "mean_revision_length") is not None]  # optimal/eto: no revision sample, no length
            if its:
                ax.plot(its, [runs[k]["envs"][env]["mean_revision_length"] for k in its], marker="o",
                        color=colors[name], label=name)
        if env == "textcraft":
            ref = paper.FIGURE5_TEXTCRAFT
            ax.plot(sorted(ref), [ref[k] for k in sorted(ref)], "--", color="grey", label="paper (read-off)")
        ax.set(title=env, xlabel="iteration", ylabel="mean revision length (actions)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(fig, axes)
    fig.suptitle("Revision length (Figure 5)")
    fig.tight_layout()
    return _save(fig, path)


def trajectory_counts(revisions: dict[str, dict[int, dict]], path=None):
    """Table 1 as bars: per env and iteration, a bar per variant, its revision samples with its good ones on top."""
    envs = sorted({e for runs in revisions.values() for m in runs.values() for e in m.get("envs") or {}})
    names, colors = list(revisions), variant_colors(revisions)
    fig, axes = _panels(len(envs), width=4.2)
    width = 0.8 / max(len(names), 1)
    for ax, env in zip(axes[0], envs):
        for i, name in enumerate(names):
            runs = {k: (m.get("envs") or {}).get(env) for k, m in revisions[name].items()}
            its = sorted(k for k, s in runs.items() if s)
            xs = [k - 0.4 + (i + 0.5) * width for k in its]
            rev = [runs[k].get("revision_samples") or 0 for k in its]
            good = [runs[k].get("good_samples") or 0 for k in its]
            ax.bar(xs, rev, width, color=colors[name], label=name)
            ax.bar(xs, good, width, bottom=rev, color=colors[name], alpha=0.4, hatch="//")
        ax.set(title=env, xlabel="iteration", ylabel="samples")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no half samples on the axis
    _legend(fig, axes)
    fig.suptitle("Trajectories collected (Table 1): revision samples solid, good ones hatched on top")
    fig.tight_layout()
    return _save(fig, path)


def training_loss(stages: list, path=None):
    """The masked training loss per optimizer step of every training stage: a panel for the warm-start and one per
    variant, a line per iteration (and per env of a "-single" variant; ETO's DPO dashed beside its SFT)."""
    groups: dict[str, list] = {}
    for s in stages:
        groups.setdefault(s.variant or "warm-start", []).append(s)
    cols = min(len(groups), 4)  # wrapped: a study of six variants is seven panels
    rows = -(-len(groups) // cols)
    fig, axes = _panels(cols, rows=rows, width=4.0)
    for ax in axes.flat[len(groups):]:
        ax.set_visible(False)
    for ax, (group, members) in zip(axes.flat, groups.items()):
        for s in members:
            curve = s.metrics.get("loss_curve") or []
            if curve:
                ax.plot([p.get("step") for p in curve], [p.get("loss") for p in curve],
                        "--" if s.part == "dpo" else "-", marker=".", label=s.curve_label)
        ax.set(title=group, xlabel="optimizer step", ylabel="training loss (masked; DPO: its loss)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle("Training loss of every stage")
    fig.tight_layout()
    return _save(fig, path)


def mask_audit(rows: list[dict], path=None):
    """Share of each sample kind's tokens that carry loss, per SFT stage: what each stage actually trained on."""
    fig, ax = plt.subplots(figsize=(6.5, 0.8 + 0.28 * max(len(rows), 1)))
    labels = [f"{r['stage']} · {r['kind']}" for r in rows]
    shares = [100 * (r.get("loss share") or 0.0) for r in rows]
    kinds = sorted({r["kind"] for r in rows})
    colors = dict(zip(kinds, plt.get_cmap("tab10").colors))
    ax.barh(range(len(rows)), shares, color=[colors[r["kind"]] for r in rows])
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()  # first stage on top, as in the table
    ax.set(xlabel="tokens with loss (%)", xlim=(0, 100), title="Loss mask audit: tokens trained on, per kind")
    fig.tight_layout()
    return _save(fig, path)
