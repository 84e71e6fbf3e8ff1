"""05_report: the paper's tables and figures beside ours, from the metrics files of a run (results/<run>/report/)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from . import paper, plots
from .config import Config
from .layout import RunLayout


def score_table(evals: dict[int, dict], variant: str = "agent_r", key: str = "envs") -> pd.DataFrame:
    """Ours (with 95 % CI and n) beside the paper's per-iteration numbers."""
    reference = paper.table6(variant) if key == "envs" else paper.TABLE3.get(variant, paper.TABLE3["agent_r"])
    rows = []
    for k in sorted(evals):
        part = evals[k].get(key) or {}
        for env, m in (part if key == "envs" else part.get("envs", {})).items():
            row = {"iteration": k, "env": env, "ours": round(m["score"], 2),
                   "95% CI": f"[{m['ci'][0]:.1f}, {m['ci'][1]:.1f}]", "n": m["n"],
                   "paper (Llama-3.1-8B)": reference.get(k, {}).get(env), "turns": round(m["turns"], 1),
                   "loop rate": round(m["loop_rate"], 2)}
            if m["n"] == 0:  # e.g. no recovery episode: the baseline failed no task of this env; nothing measured
                row.update(dict.fromkeys(("ours", "95% CI", "turns", "loop rate")))
            rows.append(row)
    return pd.DataFrame(rows)


def as_markdown(table: pd.DataFrame) -> str:
    """A table for report.md, with a dash where there is nothing to show (not "nan")."""
    return table.astype(object).where(table.notna(), "—").to_markdown(index=False)


def revision_table(revisions: dict[int, dict]) -> pd.DataFrame:
    """The paper's Table 1 (revision / good samples per iteration) and revision lengths, ours beside theirs."""
    rows = []
    for k in sorted(revisions):
        for env, m in revisions[k].get("envs", {}).items():
            ref = paper.TABLE1.get(env, {}).get(k)
            rows.append({"iteration": k, "env": env, "trees": m.get("trees"), "pairs": m.get("pairs"),
                         "revision": m.get("revision_samples"), "good": m.get("good_samples"),
                         "paper revision / good": f"{ref[0]} / {ref[1]}" if ref else None,
                         "mean revision length": _rounded(m.get("mean_revision_length"), 2)})
    return pd.DataFrame(rows)


def _rounded(x, digits: int):
    return None if x is None else round(x, digits)


def render_report(cfg: Config) -> dict:
    """Write the figures (PNG) and report.md under results/<run>/report/; return what was written."""
    out = RunLayout(cfg.run_dir).report
    out.mkdir(parents=True, exist_ok=True)
    run = RunLayout(cfg.run_dir)
    evals, revisions = run.metrics("eval"), run.metrics("data")
    variant = cfg.revision.variant
    figures = {}
    if evals:
        figures["scores"] = plots.score_by_iteration(evals, variant, out / "scores.png")
        figures["loops"] = plots.loops_by_length(evals, out / "loops.png")
        if any("recovery" in m for m in evals.values()):
            figures["recovery"] = plots.score_by_iteration(
                {k: m for k, m in evals.items() if "recovery" in m}, variant, out / "recovery.png", key="recovery",
                title="Error recovery: baseline failures continued from a random cut (Table 3)")
    if revisions:
        figures["revision_length"] = plots.revision_length(revisions, out / "revision_length.png")
        figures["trajectories"] = plots.trajectory_counts(revisions, out / "trajectories.png")
    for fig in figures.values():
        plt.close(fig)
    text = _markdown(cfg, evals, revisions, sorted(figures))
    (out / "report.md").write_text(text)
    return {"report": str(out / "report.md"), "figures": [str(out / f"{n}.png") for n in sorted(figures)]}


def _markdown(cfg: Config, evals, revisions, figures) -> str:
    scores = score_table(evals, cfg.revision.variant)
    recovery = score_table(evals, cfg.revision.variant, key="recovery")
    parts = [f"# Agent-R study `{cfg.run_name}`", "",
             f"Model `{cfg.model.name}` ({cfg.model.quantization}), envs {', '.join(cfg.envs)}, "
             f"{cfg.iterations} iterations, revision variant `{cfg.revision.variant}`. Scores: TextCraft success "
             "rate %, WebShop/SciWorld average final reward ×100; 95 % bootstrap intervals. The paper's numbers are "
             "Llama-3.1-8B-Instruct with full fine-tuning on its full task sets (Table 6 multi-task, Table 3): a "
             "small model on a few tasks is expected to score far below them.", "",
             "## Held-out scores per iteration (iteration 0 = starting actor)", "",
             as_markdown(scores) if not scores.empty else "(no evaluation yet)", ""]
    if not recovery.empty:
        parts += ["## Error recovery (Table 3)", "", as_markdown(recovery), ""]
    if revisions:
        parts += ["## Collected trajectories and revision lengths (Table 1, Figure 5)", "",
                  as_markdown(revision_table(revisions)), ""]
    parts += [f"![{n}]({n}.png)" for n in figures]
    return "\n".join(parts) + "\n"
