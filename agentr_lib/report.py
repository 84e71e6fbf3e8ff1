"""05_report: the paper's tables and figures beside ours, every variant of the study side by side, from the metrics
files of a run only (results/<run>/report/: report.md, report.html, PNGs).

What was not measured (a variant not evaluated yet, an env without episodes, a missing file) shows as "—": the
report renders from a partial study, and never shows a number that nobody measured.
"""
from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from . import paper, plots
from .config import METHODS, Config, Variant
from .files import CorruptArtefact, read_json
from .layout import RunLayout

DASH = "—"


# --- reading the study ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingStage:
    """One train_metrics.json: the warm-start (variant None) or a variant's iteration; `part` names which of its
    trainings: None (the one actor), an env (a "-single" variant), "sft"/"dpo" (ETO), or both ("textcraft sft")."""
    variant: str | None
    iteration: int | None
    part: str | None
    metrics: dict

    @property
    def label(self) -> str:
        return "warm-start" if self.variant is None else f"{self.variant} {self.curve_label}"

    @property
    def curve_label(self) -> str:
        """The label within its variant's panel."""
        return "warm-start" if self.iteration is None else " ".join(filter(None, [f"iter {self.iteration}",
                                                                                   self.part]))


@dataclass
class Study:
    """Everything the report shows, read once: per variant {iteration: metrics} (iteration 0, the shared baseline,
    in every variant's evals), the training stages, and what could not be read."""
    cfg: Config
    evals: dict[str, dict[int, dict]]
    revisions: dict[str, dict[int, dict]]
    training: list[TrainingStage]
    problems: list[str] = field(default_factory=list)


def _read(path: Path, problems: list[str]) -> dict | None:
    """A metrics file, or None: missing (not made yet) or unreadable (named in `problems`, not a crash)."""
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except CorruptArtefact as err:
        problems.append(str(err))
        return None


def _metrics(run: RunLayout, stage: str, problems: list[str]) -> dict[int, dict]:
    found = {k: _read(getattr(run, stage)(k) / "metrics.json", problems) for k in run.iterations()}
    return {k: m for k, m in found.items() if m is not None}


def training_stages(cfg: Config, run: RunLayout, problems: list[str]) -> list[TrainingStage]:
    """A variant's training stages: train(k)/ (one actor; ETO: its DPO, the SFT in sft/), train(k)/<env>/ (a
    "-single" variant's actors)."""
    out = []
    for k in (k for k in run.iterations() if k > 0):
        for env, base in [(None, run.train(k)), *((e, run.train(k) / e) for e in cfg.envs)]:
            for sub, folder in (("sft", base / "sft"), (None, base)):
                m = _read(folder / "train_metrics.json", problems)
                if m is not None:
                    kind = sub or ("dpo" if m.get("method") == "dpo" else None)
                    out.append(TrainingStage(run.variant.name, k, " ".join(filter(None, [env, kind])) or None, m))
    return out


def warmstart_stage(run: RunLayout, problems: list[str]) -> list[TrainingStage]:
    """The warm-start's training, as a list of one (none when it did not run)."""
    warm = _read(run.warmstart / "train_metrics.json", problems)
    return [TrainingStage(None, None, None, warm)] if warm else []


def load_study(cfg: Config) -> Study:
    """Every metrics file of the run, per variant of the study (a variant with none yet gets empty dicts)."""
    problems: list[str] = []
    root = RunLayout(cfg.run_dir)
    study = Study(cfg, {}, {}, warmstart_stage(root, problems), problems)
    for variant in cfg.variants:
        run = root.of(variant)
        study.evals[variant.name] = _metrics(run, "eval", problems)
        study.revisions[variant.name] = _metrics(run, "data", problems)
        study.training += training_stages(cfg, run, problems)
    return study


# --- cells ----------------------------------------------------------------------------------------------------
def score_cell(metrics: dict | None, key: str, env: str) -> str | None:
    """"score [CI low, CI high]" of one env ("average": the score alone); None where nothing was measured."""
    p = plots.point(metrics, key, env) if metrics else None
    if p is None:
        return None
    return f"{p[0]:.2f}" if env == "average" else f"{p[0]:.2f} [{p[1]:.1f}, {p[2]:.1f}]"


def _n_cell(metrics: dict | None, key: str, envs: list[str]) -> str | None:
    """Episodes per env, "/"-separated in the table's env order."""
    if not metrics:
        return None
    part = (plots.part_of(metrics, key).get("envs") or {})
    return "/".join(str(part[e].get("n", DASH)) if e in part else DASH for e in envs)


def _ours(labels: dict, metrics: dict | None, key: str, envs: list[str]) -> dict:
    return {**labels, **{e: score_cell(metrics, key, e) for e in [*envs, "average"]},
            "n": _n_cell(metrics, key, envs)}


def _paper(labels: dict, ref: dict | None, envs: list[str]) -> dict:
    """The paper's row on the same columns; envs it does not have (toy) and absent rows: None."""
    ref = ref or {}
    return {**labels, **{e: f"{ref[e]:.2f}" if e in ref else None for e in [*envs, "average"]}, "n": None}


def _baseline(evals: dict[str, dict[int, dict]]) -> dict | None:
    return next((runs[0] for runs in evals.values() if 0 in runs), None)


def last_iteration(runs: dict[int, dict]) -> int | None:
    """A variant's last evaluated iteration (None: none after the shared baseline)."""
    return max((k for k in runs if k > 0), default=None)


def _iterations(runs: dict[int, dict], planned: int) -> list[int]:
    """The planned iterations and any evaluated beyond them: a missing one shows as a row of dashes."""
    return sorted(set(range(1, planned + 1)) | {k for k in runs if k > 0})


# --- tables ---------------------------------------------------------------------------------------------------
def score_table(evals: dict[str, dict[int, dict]], key: str = "envs") -> pd.DataFrame:
    """Long form, every variant and iteration: ours (95 % CI, n) beside the paper's number for the same variant and
    iteration (Table 6 for scores, Table 3 for recovery) where it has one. The shared baseline is one row per env,
    as variant "baseline"; rows of one iteration and env sit together, variants side by side."""
    rows = []
    order = {name: i for i, name in enumerate(evals)}
    for name, runs in evals.items():
        v = Variant(name)
        ref = paper.per_iteration(v.method, v.single) if key == "envs" else plots.recovery_reference(v)
        for k, m in runs.items():
            if k == 0 and any(r["iteration"] == 0 for r in rows):
                continue  # the baseline is every variant's iteration 0: shown once
            part = plots.part_of(m, key)
            for env in [*sorted(part.get("envs") or {}), "average"]:
                rows.append(_long_row(m, key, env, k, "baseline" if k == 0 else name, ref.get(k, {}).get(env),
                                      order.get(name, 0)))
    if not rows:
        return pd.DataFrame(columns=["iteration", "variant", "env", "ours", "95% CI", "n", "paper (Llama-3.1-8B)"])
    table = _frame(rows)
    table = table.sort_values(["iteration", "_env", "_order"], kind="stable").drop(columns=["_env", "_order"])
    return table.reset_index(drop=True)


def _long_row(metrics: dict, key: str, env: str, k: int, name: str, ref: float | None, order: int) -> dict:
    p = plots.point(metrics, key, env)
    m = (plots.part_of(metrics, key).get("envs") or {}).get(env, {})
    measured = p is not None and env != "average"
    return {"iteration": k, "variant": name, "env": env, "ours": round(p[0], 2) if p else None,
            "95% CI": f"[{p[1]:.1f}, {p[2]:.1f}]" if measured else None, "n": m.get("n"),
            "paper (Llama-3.1-8B)": None if ref is None else f"{ref:.2f}",
            "turns": _rounded(m.get("turns"), 1) if measured else None,
            "loop rate": _rounded(m.get("loop_rate"), 2) if measured else None,
            "_env": (env == "average", env), "_order": order}


def table2(evals: dict[str, dict[int, dict]], envs: list[str]) -> pd.DataFrame:
    """Table 2's layout: the baseline beside the paper's base model, each variant at its last evaluated iteration
    beside the paper's row for its method (iteration 3; a "-single" variant: Table 6's single-task row)."""
    def labels(name, source, k):
        return {"variant": name, "source": source, "iteration": k}
    rows = [_ours(labels("baseline", "ours", 0), _baseline(evals), "envs", envs),
            _paper(labels("baseline", f"paper: {paper.BASE}", 0), paper.TABLE2[paper.BASE], envs)]
    for name, runs in evals.items():
        last = last_iteration(runs)
        source, ref = _table2_reference(Variant(name))
        rows += [_ours(labels(name, "ours", last), runs.get(last), "envs", envs),
                 _paper(labels(name, source, 3 if ref else None), ref, envs)]
    return _frame(rows)


def _table2_reference(v: Variant) -> tuple[str, dict | None]:
    if v.single:
        ref = paper.TABLE6_SINGLE.get(v.method, {}).get(3)
        return (f"paper: Table 6, {v.method} single-task", ref) if ref else ("paper: not in Table 2 / 6", None)
    row = paper.TABLE2_ROW.get(v.method)
    return (f"paper: {row}", paper.TABLE2[row]) if row else ("paper: not in Table 2", None)


def table3(evals: dict[str, dict[int, dict]], envs: list[str], iterations: int) -> pd.DataFrame:
    """Table 3's layout: recovery of the baseline's failures per variant and iteration, each beside the paper's row
    (per iteration for Agent-R and Direct-Revision; Optimal and ETO: one row; else a row of dashes)."""
    def labels(name, k, source):
        return {"variant": name, "iteration": k, "source": source}
    rows = [_ours(labels("baseline", 0, "ours (its own failures)"), _baseline(evals), "recovery", envs)]
    for name, runs in evals.items():
        v = Variant(name)
        per_iteration = plots.recovery_reference(v)
        for k in _iterations(runs, iterations):
            rows.append(_ours(labels(name, k, "ours"), runs.get(k), "recovery", envs))
            if k in per_iteration:
                rows.append(_paper(labels(name, k, f"paper: {v.method} iter {k}"), per_iteration[k], envs))
        if not per_iteration:
            row = None if v.single else paper.TABLE3_ROW.get(v.method)
            source = f"paper: {row}" if row else "paper: none" + (" (Table 3 is multi-task)" if v.single else "")
            rows.append(_paper(labels(name, None, source), paper.TABLE3_ROWS.get(row), envs))
    return _frame(rows)


def table6(evals: dict[str, dict[int, dict]], envs: list[str], iterations: int) -> pd.DataFrame:
    """Table 6's layout: per iteration, single- vs multi-task, ours beside the paper's, for each method that the
    study runs as a "-single" variant (its multi-task rows "—" when the study lacks the multi-task variant)."""
    rows = []
    for method in (m for m in METHODS if f"{m}-single" in evals):
        names = {"multi": method, "single": f"{method}-single"}
        runs = {**evals.get(method, {}), **evals[names["single"]]}
        for k in _iterations(runs, iterations):
            for setting, name in names.items():
                labels = {"method": method, "iteration": k, "setting": setting}
                rows += [_ours({**labels, "source": "ours"}, evals.get(name, {}).get(k), "envs", envs),
                         _paper({**labels, "source": "paper"}, paper.per_iteration(method, setting == "single").get(k),
                                envs)]
    return _frame(rows)


def revision_table(revisions: dict[str, dict[int, dict]]) -> pd.DataFrame:
    """Table 1's layout: revision / good samples per variant, iteration and env beside the paper's (Agent-R's data,
    shown for the revision methods), revision lengths (Figure 5), and the verifier's verdicts: how many it wrote
    ("parsed") and how many were chosen for it (revision.force_verdict)."""
    rows = []
    for name, runs in revisions.items():
        if not runs:
            rows.append({"variant": name})  # not revised yet: a row of dashes
        for k in sorted(runs):
            for env, m in (runs[k].get("envs") or {}).items():
                rows.append(_revision_row(name, k, env, m))
    columns = ["variant", "iteration", "env", "trees", "pairs", "revision", "good", "paper revision / good",
               "mean revision length", "verdicts good/bad/uncertain/unparsable", "verdicts parsed / chosen"]
    return _frame(rows, columns)


def _revision_row(name: str, k: int, env: str, m: dict) -> dict:
    ref = paper.TABLE1.get(env, {}).get(k) if Variant(name).method in ("agent_r", "direct_revision") else None
    verdicts, sources = m.get("verdicts") or {}, m.get("verdict_sources") or {}
    judged = sum(verdicts.values())  # 0: no verifier ran (every method but agent_r), not "all passed"
    return {"variant": name, "iteration": k, "env": env, "trees": m.get("trees"), "pairs": m.get("pairs"),
            "revision": m.get("revision_samples"), "good": m.get("good_samples"),
            "paper revision / good": f"{ref[0]} / {ref[1]}" if ref else None,
            "mean revision length": _rounded(m.get("mean_revision_length"), 2),
            "verdicts good/bad/uncertain/unparsable": "/".join(
                str(verdicts.get(v, 0)) for v in ("good", "bad", "uncertain", "unparsable")) if judged else None,
            "verdicts parsed / chosen": f"{sources.get('parsed', 0)} / {sources.get('chosen', 0)}"
            if judged else None}


def training_table(stages: list[TrainingStage]) -> pd.DataFrame:
    """Every training stage in a line: steps, epochs, last loss, where it ran. Not its wall time or token counts:
    those differ between an unbroken and a resumed training (a resumed call counts its own part), and the report
    must come out the same either way (tests/test_resume.py)."""
    rows = [{"stage": s.label, "method": s.metrics.get("method", "sft"), "steps": s.metrics.get("global_step"),
             "epochs": _rounded(s.metrics.get("epochs"), 2), "final loss": _rounded(s.metrics.get("final_loss"), 4),
             "device": (s.metrics.get("resolved") or {}).get("device")} for s in stages]
    return _frame(rows)


def mask_table(stages: list[TrainingStage]) -> pd.DataFrame:
    """The loss mask audit of every SFT stage: per sample kind, tokens and the share of them that carry loss."""
    rows = [{"stage": s.label, "kind": kind, "samples": a.get("samples"), "tokens": a.get("tokens"),
             "loss tokens": a.get("loss_tokens"), "loss share": _rounded(a.get("loss_share"), 3)}
            for s in stages for kind, a in ((s.metrics.get("data") or {}).get("mask_by_kind") or {}).items()]
    return _frame(rows, ["stage", "kind", "samples", "tokens", "loss tokens", "loss share"])


def _frame(rows: list[dict], columns: list[str] | None = None) -> pd.DataFrame:
    """A table of Python values as they are: object columns keep an iteration 2 an int beside a missing one (a
    numeric column would print it as 2.0) and a paper's 26.00 as written."""
    table = pd.DataFrame(rows, columns=columns, dtype=object)
    return table.where(table.notna(), None)  # a key a row lacks: None, like a value nobody measured


def _rounded(x, digits: int):
    return None if x is None else round(x, digits)


def _dashed(table: pd.DataFrame) -> pd.DataFrame:
    return table.astype(object).where(table.notna(), DASH)


def as_markdown(table: pd.DataFrame) -> str:
    """A table for report.md, with a dash where there is nothing to show (not "nan")."""
    return _dashed(table).to_markdown(index=False)


def as_html(table: pd.DataFrame) -> str:
    return _dashed(table).to_html(index=False, border=0, escape=True)


# --- figures --------------------------------------------------------------------------------------------------
FIGURES = ("scores", "single_vs_multi", "recovery", "loops", "trajectories", "revision_length", "training_loss",
           "mask_audit")


def _has_scores(evals: dict, key: str) -> bool:
    envs = plots.study_envs(evals, key)
    return any(plots.point(m, key, e) for runs in evals.values() for m in runs.values() for e in envs)


def draw_figures(study: Study, out: Path) -> list[str]:
    """Each figure that has something to show, as out/<name>.png; a stale PNG of one that has not is removed (so a
    re-rendered report never shows an old figure). Returns the names drawn."""
    evals, revisions = study.evals, {n: r for n, r in study.revisions.items() if r}
    makers = {
        "scores": (_has_scores(evals, "envs"), lambda p: plots.score_by_iteration(evals, p)),
        "single_vs_multi": (any(Variant(n).single and last_iteration(r) for n, r in evals.items()),
                            lambda p: plots.single_vs_multi(evals, p)),
        "recovery": (_has_scores(evals, "recovery"), lambda p: plots.score_by_iteration(
            evals, p, key="recovery", title="Error recovery: baseline failures continued from a random cut (Table 3)")),
        "loops": (_has_scores(evals, "envs"), lambda p: plots.loops_by_length(evals, p)),
        "trajectories": (bool(revisions), lambda p: plots.trajectory_counts(revisions, p)),
        "revision_length": (bool(revisions), lambda p: plots.revision_length(revisions, p)),
        "training_loss": (bool(study.training), lambda p: plots.training_loss(study.training, p)),
        "mask_audit": (not mask_table(study.training).empty,
                       lambda p: plots.mask_audit(mask_table(study.training).to_dict("records"), p)),
    }
    drawn = []
    for name in FIGURES:
        wanted, draw = makers[name]
        path = out / f"{name}.png"
        if wanted:
            plt.close(draw(path))
            drawn.append(name)
        else:
            path.unlink(missing_ok=True)
    return drawn


# --- the document ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Figure:
    name: str
    caption: str


def _header(study: Study) -> list:
    cfg = study.cfg
    base = _baseline(study.evals)
    tests = ", ".join(f"{e} {m.get('n')}" for e, m in (base or {}).get("envs", {}).items()) or DASH
    devices = sorted({d for s in study.training if (d := (s.metrics.get("resolved") or {}).get("device"))})
    evaluated = "; ".join(f"{n}: {', '.join(map(str, sorted(k for k in r if k > 0))) or 'not yet'}"
                          for n, r in study.evals.items())
    facts = "\n".join([
        f"- Model: `{cfg.model.name}` (quantization {cfg.model.quantization}; "
        + (f"trained on {', '.join(devices)})" if devices else f"device {cfg.model.device}, no training yet)"),
        f"- Envs: {', '.join(cfg.envs)}; test episodes per env (baseline): {tests}",
        "- Variants: " + ", ".join(f"`{v.name}` ({'one actor per env' if v.single else 'one actor'})"
                                   for v in cfg.variants),
        f"- Iterations: {cfg.iterations} planned; evaluated so far: {evaluated}",
        "- Scores: TextCraft success rate %, WebShop/SciWorld average final reward ×100; 95 % bootstrap intervals in "
        "brackets; n = episodes per env; \"—\" = not measured (not run yet, no episode, or a missing file)."])
    caveat = ("**Our numbers are far below the paper's, as expected.** The paper's are Llama-3.1-8B-Instruct, fully "
              "fine-tuned on 8×A100-80GB, on its full task sets (WebShop/SciWorld/TextCraft: 300/200/200 MCTS tasks, "
              f"200/200/100 test tasks). This study's actor is `{cfg.model.name}`: a small model trained with LoRA on "
              "a few tasks, on a CPU unless the line above says otherwise, scores far below an 8B model. Ours are "
              "shown as measured, never rescaled; compare directions and gaps between variants, not levels. The "
              "paper's average is over its three envs, ours over this study's envs.")
    return [f"# Agent-R study `{cfg.run_name}`", facts, caveat]


def _missing(study: Study) -> list:
    lines = [f"- `{n}`: not evaluated yet" for n, r in study.evals.items() if not last_iteration(r)]
    lines += [f"- `{n}`: no revision data yet" for n, r in study.revisions.items() if not r]
    lines += [] if _baseline(study.evals) else ["- the baseline (iteration 0) is not evaluated yet"]
    lines += [f"- unreadable: {p}" for p in study.problems]
    return ["## Missing pieces", "\n".join(lines)] if lines else []


def sections(study: Study, drawn: list[str]) -> list:
    """The report as blocks (str: Markdown text; DataFrame: a table; Figure), in order; report.md and report.html
    are both written from these, so they hold the same numbers."""
    cfg, evals, envs = study.cfg, study.evals, list(study.cfg.envs)

    def figure(name, caption):
        return [Figure(name, caption)] if name in drawn else [f"(Figure `{name}`: nothing to draw yet.)"]
    single = table6(evals, envs, cfg.iterations)
    return [
        *_header(study), *_missing(study),
        "## Main results (Table 2 layout)",
        "Each variant at its last evaluated iteration beside the paper's row for its method (iteration 3, "
        "multi-task; a single-task variant: Table 6's single-task row). The paper has no Table 2 row for Optimal "
        "and Optimal+Good.", table2(evals, envs),
        "## Score per iteration (Figure 3 analogue; Table 6 multi-task)",
        *figure("scores", "Held-out score per iteration, a line per variant; dashed: the paper's"),
        score_table(evals),
        "## Single- vs multi-task per iteration (Table 6, Figure 6)",
        *([single, *figure("single_vs_multi", "Single- vs multi-task per iteration")] if not single.empty else
          ["(No \"-single\" variant in this study: nothing to compare.)"]),
        "## Error recovery (Table 3)",
        "The baseline's failed test episodes, cut at a random step, continued by each actor (at most "
        f"{cfg.evaluate.recovery_max_rounds} rounds). n = 0: the baseline failed no task of that env. The paper's "
        "Optimal+ trains on GPT-4o's golden trajectories, not on the kit's optimal_good data: no row compares with it.",
        table3(evals, envs, cfg.iterations),
        *figure("recovery", "Error recovery per iteration; dashed: the paper's Table 3"),
        "## Loops (Figure 4)",
        "Back-to-back repeats of an action block in test trajectories: mean repetition count by block length.",
        *figure("loops", "Loops by block length, per variant and iteration"),
        "## Trajectories collected (Table 1) and revision length (Figure 5)",
        revision_table(study.revisions),
        *figure("trajectories", "Revision and good samples per iteration and variant"),
        *figure("revision_length", "Mean revision length per iteration; dashed: the paper's TextCraft read-off"),
        "## Training: loss curves and loss mask",
        training_table(study.training) if study.training else "(No training stage has finished yet.)",
        *figure("training_loss", "Training loss per optimizer step of every stage"),
        "What each stage trained on: per sample kind, the share of its tokens that carry loss (a revision sample's "
        "bad prefix carries none).",
        mask_table(study.training),
        *figure("mask_audit", "Loss mask audit"),
    ]


def to_markdown(blocks: list) -> str:
    parts = []
    for b in blocks:
        if isinstance(b, pd.DataFrame):
            parts.append(as_markdown(b) if not b.empty else "(nothing yet)")
        elif isinstance(b, Figure):
            parts.append(f"![{b.caption}]({b.name}.png)")
        else:
            parts.append(b)
    return "\n\n".join(parts) + "\n"


CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;
text-align:right}th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}img{max-width:100%}figcaption{font-size:13px;color:#555}code{background:#f4f4f4}"""


def _inline(text: str) -> str:
    """Markdown's inline marks that the report uses (`code`, **bold**) as HTML, the rest escaped."""
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


def _html_text(block: str) -> str:
    if block.startswith("#"):
        level = len(block) - len(block.lstrip("#"))
        return f"<h{level}>{_inline(block.lstrip('#').strip())}</h{level}>"
    lines = block.splitlines()
    if all(line.startswith("- ") for line in lines):
        return "<ul>" + "".join(f"<li>{_inline(line[2:])}</li>" for line in lines) + "</ul>"
    return f"<p>{_inline(block)}</p>"


def to_html(blocks: list, out: Path, title: str) -> str:
    """One self-contained page: figures inlined as base64 PNGs, no external resource, readable without the kit."""
    body = []
    for b in blocks:
        if isinstance(b, pd.DataFrame):
            body.append(as_html(b) if not b.empty else "<p>(nothing yet)</p>")
        elif isinstance(b, Figure):
            data = base64.b64encode((out / f"{b.name}.png").read_bytes()).decode()
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b.caption)}">'
                        f"<figcaption>{html.escape(b.caption)}</figcaption></figure>")
        else:
            body.append(_html_text(b))
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def render_report(cfg: Config) -> dict:
    """Write the figures (PNG), report.md and report.html under results/<run>/report/; return what was written."""
    out = RunLayout(cfg.run_dir).report
    out.mkdir(parents=True, exist_ok=True)
    study = load_study(cfg)
    drawn = draw_figures(study, out)
    blocks = sections(study, drawn)
    (out / "report.md").write_text(to_markdown(blocks))
    (out / "report.html").write_text(to_html(blocks, out, f"Agent-R study {cfg.run_name}"))
    return {"report": str(out / "report.md"), "html": str(out / "report.html"),
            "figures": [str(out / f"{n}.png") for n in drawn]}
