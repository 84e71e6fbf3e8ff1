"""05_report: the paper's tables and figures beside ours, from the metrics files of a run (results/<run>/report/).

Also small display helpers the stage notebooks use to show what a stage just made.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from . import paper, plots
from .config import Config
from .trajectory import read_json


def read_metrics(run_dir: Path) -> tuple[dict[int, dict], dict[int, dict]]:
    """(evaluation metrics by iteration, revision metrics by iteration) of a run; missing files are skipped."""
    evals, revisions = {}, {}
    for it_dir in sorted(Path(run_dir).glob("iter_*")):
        k = int(it_dir.name.split("_")[1])
        if (it_dir / "eval" / "metrics.json").exists():
            evals[k] = read_json(it_dir / "eval" / "metrics.json")
        if (it_dir / "data" / "metrics.json").exists():
            revisions[k] = read_json(it_dir / "data" / "metrics.json")
    return evals, revisions


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
    out = cfg.run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    evals, revisions = read_metrics(cfg.run_dir)
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


# --- notebook display helpers -------------------------------------------------------------------------------------
def show_training(folder: str | Path):
    """The loss curve of a training stage (from its train_metrics.json)."""
    path = Path(folder) / "train_metrics.json"
    if not path.exists():
        return "no training metrics (stage skipped or nothing to train on)"
    m = read_json(path)
    curve = m.get("loss_curve") or []
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([p["step"] for p in curve], [p["loss"] for p in curve], marker=".")
    ax.set(xlabel="optimizer step", ylabel="training loss (masked)", title=Path(folder).name)
    return fig


def show_tree(cfg: Config, iteration: int):
    """Draw the first collected tree that holds a good/bad pair (else the first tree)."""
    from .mcts import Tree
    from .revision import leaf_paths, make_pairs
    from .stages import stage_dir
    files = sorted(stage_dir(cfg, "trees", iteration).glob("*/*.json"))
    if not files:
        return "no trees"
    chosen, pair = Tree.from_dict(read_json(files[0])), None
    for f in files:
        tree = Tree.from_dict(read_json(f))
        pairs = make_pairs(leaf_paths(tree), cfg.alpha_at(iteration), cfg.revision.beta)
        if pairs:
            chosen, pair = tree, pairs[0]
            break
    from .tree_view import draw_tree
    highlight = (pair[0].leaf, pair[1].leaf) if pair else None
    return draw_tree(chosen, highlight=highlight)


def show_sample(cfg: Config, iteration: int, kind: str = "revision"):
    """Print one training sample of a kind, marking the turns that carry loss."""
    from datasets import load_from_disk
    from .stages import stage_dir
    path = stage_dir(cfg, "data", iteration) / "dataset"
    if not path.exists():
        print("no training samples in this iteration")
        return
    ds = load_from_disk(str(path))
    picks = [s for s in ds if s["kind"] == kind] or list(ds)
    for m in picks[0]["messages"]:
        flag = "LOSS" if m["loss"] else "    "
        print(f"[{flag}] {m['role']:>9}: {m['content'][:300]}")


def show_report(cfg: Config):
    from IPython.display import Image, Markdown, display
    out = cfg.run_dir / "report"
    display(Markdown((out / "report.md").read_text().split("![")[0]))
    for png in sorted(out.glob("*.png")):
        display(Image(filename=str(png)))
