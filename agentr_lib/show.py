"""What the stage notebooks show: one helper per thing a researcher looks at after a stage.

Most return what they show (a Markdown block, a table, a figure), so the cell's value is the display; `sample` prints
and `report` displays several things. Figures are returned closed: the inline backend draws every open figure at the
end of a cell, besides the cell's value, so an open one would be shown twice.
"""
from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Image, Markdown, display

from .config import Config
from .files import read_json
from .layout import RunLayout
from .report import revision_table, score_table


def config(cfg: Config, *sections: str) -> Markdown:
    """The resolved params a stage runs with: the run's top-level settings and the named sections (of `tasks`, the
    study's envs), as YAML. A value that differs from the default (the paper's setting, where the paper gives one)
    names the default beside it."""
    resolved, defaults = cfg.to_dict(), Config().to_dict()
    shown = {k: v for k, v in resolved.items()
             if k not in ("run_name", "results_dir") and (k in sections or not isinstance(v, dict))}
    if "tasks" in shown:
        shown["tasks"] = {env: shown["tasks"][env] for env in cfg.envs}
    yaml_text = "\n".join(_yaml_lines(shown, defaults))
    return Markdown(f"Params of this stage, run folder `{cfg.run_dir}` (every key: `config.yaml` beside the stage's "
                    f"outputs)\n```yaml\n{yaml_text}\n```")


def _yaml_lines(values: dict, defaults: dict, indent: str = "") -> list[str]:
    """YAML, one key a line (values in JSON, which YAML reads), each changed value with its default as a comment.
    A section is a mapping whose default has keys; a free-form mapping (env_kwargs) is one value."""
    lines = []
    for key, value in values.items():
        default = defaults.get(key)
        if isinstance(value, dict) and isinstance(default, dict) and default:
            lines += [f"{indent}{key}:", *_yaml_lines(value, default, indent + "  ")]
        else:
            changed = "" if value == default else f"  # default: {json.dumps(default)}"
            lines.append(f"{indent}{key}: {json.dumps(value)}{changed}")
    return lines


def scores(cfg: Config) -> pd.DataFrame:
    """Held-out scores of every iteration evaluated so far (0 = the starting actor) beside the paper's (Table 6)."""
    return score_table(RunLayout(cfg.run_dir).metrics("eval"), cfg.revision.variant)


def recovery(cfg: Config) -> pd.DataFrame:
    """Error recovery (Table 3): the baseline's failed episodes, cut at a random step, continued by each actor."""
    return score_table(RunLayout(cfg.run_dir).metrics("eval"), cfg.revision.variant, key="recovery")


def table1(cfg: Config) -> pd.DataFrame:
    """Revision and good samples per iteration, ours beside the paper's (Table 1), and revision lengths."""
    return revision_table(RunLayout(cfg.run_dir).metrics("data"))


def loss_curve(cfg: Config, iteration: int | None = None):
    """The masked training loss per optimizer step of iteration `iteration`'s training (None: the warm-start's)."""
    run = RunLayout(cfg.run_dir)
    folder = run.warmstart if iteration is None else run.train(iteration)
    path = folder / "train_metrics.json"
    if not path.exists():
        return "no training metrics (stage skipped or nothing to train on)"
    curve = read_json(path).get("loss_curve") or []
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([p["step"] for p in curve], [p["loss"] for p in curve], marker=".")
    ax.set(xlabel="optimizer step", ylabel="training loss (masked)",
           title="warm-start" if iteration is None else f"iteration {iteration}")
    return _closed(fig)


def tree(cfg: Config, iteration: int):
    """The first collected tree that holds a good/bad pair, the pair highlighted (else the first tree)."""
    from .mcts import Tree
    from .revision import leaf_paths, make_pairs
    from .tree_view import draw_tree
    files = sorted(RunLayout(cfg.run_dir).trees(iteration).glob("*/*.json"))
    if not files:
        return "no trees"
    for f in files:
        chosen = Tree.from_dict(read_json(f))
        pairs = make_pairs(leaf_paths(chosen), cfg.alpha_at(iteration), cfg.revision.beta)
        if pairs:
            return _closed(draw_tree(chosen, highlight=(pairs[0][0].leaf, pairs[0][1].leaf)))
    return _closed(draw_tree(Tree.from_dict(read_json(files[0]))))


def sample(cfg: Config, iteration: int, kind: str = "revision") -> None:
    """Print one training sample of iteration `iteration` of a kind, marking the turns that carry loss."""
    from datasets import load_from_disk
    path = RunLayout(cfg.run_dir).dataset(iteration)
    if not path.exists():
        print("no training samples in this iteration")
        return
    ds = load_from_disk(str(path))
    picks = [s for s in ds if s["kind"] == kind] or list(ds)
    for m in picks[0]["messages"]:
        flag = "LOSS" if m["loss"] else "    "
        print(f"[{flag}] {m['role']:>9}: {m['content'][:300]}")


def report(cfg: Config) -> None:
    """The run's report.md (its tables) and its figures, as 05_report wrote them."""
    out = RunLayout(cfg.run_dir).report
    display(Markdown((out / "report.md").read_text().split("![")[0]))
    for png in sorted(out.glob("*.png")):
        display(Image(filename=str(png)))


def _closed(fig):
    """`fig`, closed: shown once, as the cell's value, and not again by the inline backend's end-of-cell drawing."""
    plt.close(fig)
    return fig
