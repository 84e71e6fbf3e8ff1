"""What the stage notebooks show: one helper per thing a researcher looks at after a stage.

Most return what they show (a Markdown block, a table, a figure), so the cell's value is the display; `sample` and
`critique` print, and `report` displays several things. The per-variant helpers take `variant=None` as the study's
first variant (as the notebooks' `variant` parameter does). Figures are returned closed: the inline backend draws
every open figure at the end of a cell, besides the cell's value, so an open one would be shown twice.
"""
from __future__ import annotations

import json
import re

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Image, Markdown, display

from .config import Config
from .files import read_json
from .layout import RunLayout
from .report import revision_table, score_table, training_stages, warmstart_stage


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


def _layout(cfg: Config, variant: str | None) -> RunLayout:
    """A variant's paths (None: the study's first variant); an unknown name is refused in one line."""
    from .stages import layout_of
    return layout_of(cfg, variant)


def _per_variant(cfg: Config, variant: str | None, stage: str) -> dict[str, dict[int, dict]]:
    names = [variant] if variant else cfg.study.variants
    return {name: _layout(cfg, name).metrics(stage) for name in names}


def scores(cfg: Config, variant: str | None = None) -> pd.DataFrame:
    """Held-out scores of every iteration evaluated so far (0 = the shared starting actor) beside the paper's
    (Table 6); variant None: every variant of the study, side by side for each iteration and env."""
    return score_table(_per_variant(cfg, variant, "eval"))


def recovery(cfg: Config, variant: str | None = None) -> pd.DataFrame:
    """Error recovery (Table 3): the baseline's failed episodes, cut at a random step, continued by each actor;
    variant None: every variant of the study."""
    return score_table(_per_variant(cfg, variant, "eval"), key="recovery")


def table1(cfg: Config, variant: str | None = None) -> pd.DataFrame:
    """A variant's revision and good samples per iteration, ours beside the paper's (Table 1), revision lengths and
    the verifier's verdicts (None: the study's first variant)."""
    return revision_table({(variant or cfg.study.variants[0]): _layout(cfg, variant).metrics("data")})


def loss_curve(cfg: Config, iteration: int | None = None, variant: str | None = None):
    """The training loss per optimizer step of a variant's iteration `iteration` (None: the warm-start's): every
    training of that stage, a line each (a "-single" variant's per env; ETO's SFT, then its DPO dashed)."""
    run = _layout(cfg, variant)
    problems: list[str] = []
    found = warmstart_stage(run, problems) if iteration is None else [
        s for s in training_stages(cfg, run, problems) if s.iteration == iteration]
    found = [s for s in found if s.metrics.get("loss_curve")]
    if problems:
        return "; ".join(problems)
    if not found:
        return "no training metrics (stage skipped or nothing to train on)"
    fig, ax = plt.subplots(figsize=(5, 3))
    for s in found:
        curve = s.metrics["loss_curve"]
        ax.plot([p["step"] for p in curve], [p["loss"] for p in curve], "--" if s.part and "dpo" in s.part else "-",
                marker=".", label=s.part or ("warm-start" if iteration is None else run.variant.name))
    ax.set(xlabel="optimizer step", ylabel="training loss (masked; DPO: its loss)",
           title="warm-start" if iteration is None else f"{run.variant.name}, iteration {iteration}")
    if len(found) > 1:
        ax.legend(fontsize=8)
    return _closed(fig)


def tree(cfg: Config, iteration: int, variant: str | None = None):
    """The first collected tree of a variant's iteration that holds a good/bad pair, the pair highlighted (else the
    first tree); iteration 1's trees are every variant's."""
    from .mcts import Tree
    from .revision import leaf_paths, make_pairs
    from .tree_view import draw_tree
    files = sorted(_layout(cfg, variant).trees(iteration).glob("*/*.json"))
    if not files:
        return "no trees"
    for f in files:
        chosen = Tree.from_dict(read_json(f))
        pairs = make_pairs(leaf_paths(chosen), cfg.alpha_at(iteration), cfg.revision.beta)
        if pairs:
            return _closed(draw_tree(chosen, highlight=(pairs[0][0].leaf, pairs[0][1].leaf)))
    return _closed(draw_tree(Tree.from_dict(read_json(files[0]))))


def _samples(cfg: Config, iteration: int, variant: str | None) -> list[dict] | None:
    """A variant's training samples of an iteration (None: it has none)."""
    from datasets import load_from_disk
    path = _layout(cfg, variant).dataset(iteration)
    return list(load_from_disk(str(path))) if path.exists() else None


def sample(cfg: Config, iteration: int, variant: str | None = None, kind: str = "revision") -> None:
    """Print one training sample of a variant's iteration, of a kind ("revision" falls back to Direct-Revision's
    splice, then to any sample), marking the turns that carry loss."""
    ds = _samples(cfg, iteration, variant)
    if not ds:
        print("no training samples in this iteration")
        return
    fallbacks = [kind, "direct_revision"] if kind == "revision" else [kind]
    picked = next((s for k in fallbacks for s in ds if s["kind"] == k), ds[0])
    print(f"{picked['kind']} sample, {picked.get('env')} task {picked.get('task_id')}")
    for m in picked["messages"]:
        flag = "LOSS" if m["loss"] else "    "
        print(f"[{flag}] {m['role']:>9}: {m['content'][:300]}")


def critique(cfg: Config, iteration: int, variant: str | None = None) -> None:
    """Print the verifier's replies behind one revision sample of a variant's iteration: per judged step of the bad
    path, its verdict, whether that was read from the reply ("parsed") or chosen for it ("chosen",
    revision.force_verdict), and the reply. Only Agent-R asks the verifier; other methods have nothing to show."""
    run = _layout(cfg, variant)
    ds = _samples(cfg, iteration, variant)
    picked = next((s for s in ds or [] if s["kind"] == "revision" and s.get("critique_replies")), None)
    if picked is None:
        why = "no training samples in this iteration" if not ds else "no revision sample with verifier replies"
        note = "" if run.variant.method == "agent_r" else f" ({run.variant.method} splices without a verifier)"
        print(f"no critique to show: {why}{note}")
        return
    print(f"revision sample, {picked.get('env')} task {picked.get('task_id')}: first error t' = {picked['t_prime']} "
          f"({len(picked['critique_replies'])} steps judged)")
    sources = picked.get("verdict_sources") or []
    for i, (reply, verdict) in enumerate(zip(picked["critique_replies"], picked.get("verdicts") or [])):
        print(f"--- step {i + 1}: {verdict} ({sources[i] if i < len(sources) else 'source unknown'})")
        print(reply[:1000])


def report(cfg: Config) -> None:
    """The run's report.md, as 05_report wrote it: its text and tables, each figure where the report places it."""
    out = RunLayout(cfg.run_dir).report
    path = out / "report.md"
    if not path.exists():
        display(Markdown("no report yet: run 05_report"))
        return
    text = []
    for line in path.read_text().splitlines():
        figure = re.fullmatch(r"!\[[^\]]*\]\(([^)]+)\)", line.strip())
        if figure is None:
            text.append(line)
            continue
        display(Markdown("\n".join(text)))
        text = []
        if (out / figure[1]).exists():
            display(Image(filename=str(out / figure[1])))
    display(Markdown("\n".join(text)))


def _closed(fig):
    """`fig`, closed: shown once, as the cell's value, and not again by the inline backend's end-of-cell drawing."""
    plt.close(fig)
    return fig
