"""Writes the stage notebooks, thin callers of agentr_lib.stages. Run after editing: python notebooks/build_notebooks.py
(into notebooks/; `python notebooks/build_notebooks.py DIR` writes them into DIR; tests/test_notebooks.py checks that
the committed notebooks are what this writes).

Each notebook: a title; one cell tagged `parameters` (papermill injects params_file, iteration and overrides: any
params keys on top of the params file); a setup cell that loads the config and shows the stage's sections of it;
one cell that runs the stage; cells that show what it made. No stored outputs; cell ids are the cells' positions, as
nbstripout (the pre-commit hook) writes them, so the hook leaves generated notebooks alone.
"""
import sys
from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).parent
PARAMS = ('params_file = "../params/tiny.yaml"  # the study\'s params file\n'
          '{iteration}{variant}overrides = {{}}  # any params keys on top of it, e.g. {{"mcts": {{"simulations": 4}}}}')
VARIANT = 'variant = None  # which of study.variants (None: the first)\n'

SETUP = ("from agentr_lib import show, stages\n"
         "from agentr_lib.config import load_config\n\n"
         "cfg = load_config(params_file, overrides)\n"
         "show.config(cfg, {sections})")

# name: (title, iteration (None: the notebook has none), whether it runs per variant, config sections it shows,
# cells after the setup)
NOTEBOOKS = {
    "00_warmstart": ("# 00 · Warm-start (small models only)\nTeaches a small model the `Thought:`/`Action:` format "
                     "from a few scripted demonstrations, so that MCTS can find good paths at all. Off in the paper's "
                     "settings (`warmstart.enabled`). Every variant of the study starts from this actor.", None, False,
                     ["model", "tasks", "warmstart"],
                     ["stages.warmstart(cfg)",
                      "show.loss_curve(cfg)"]),
    "00_baseline": ("# 00 · Baseline\nThe starting actor on the held-out test tasks (iteration 0, shared by every "
                    "variant): scores, error recovery of its own failures, loops.", 0, False,
                    ["model", "tasks", "evaluate"],
                    ["metrics = stages.evaluate(cfg, iteration)",
                     "show.scores(cfg)",
                     "show.recovery(cfg)"]),
    "01_collect": ("# 01 · Collect\nMonte-Carlo tree search with the variant's actor of the previous iteration on the "
                   "training tasks: one tree per task (`trees/<env>/<task>.json`). Iteration 1's trees come from the "
                   "shared starting actor and serve every variant.", 1, True, ["model", "tasks", "mcts"],
                   ["stages.collect(cfg, iteration, variant)",
                    "show.tree(cfg, iteration, variant)"]),
    "02_revise": ("# 02 · Revise\nGood/bad pairs from each tree; the actor names the first error of the bad path; "
                  "splice bad prefix + revision turn + good continuation. Good paths are kept too. The variant's "
                  "method decides which samples it keeps (`study.variants`).", 1, True, ["model", "revision"],
                  ["stages.revise(cfg, iteration, variant)",
                   "show.table1(cfg, variant)",
                   "show.critique(cfg, iteration, variant)",
                   "show.sample(cfg, iteration, variant)"]),
    "03_train": ("# 03 · Train\nMasked SFT (QLoRA) of the previous actor: loss on good turns, the revision turn and "
                 "the good continuation, never on the bad prefix. ETO: then DPO on its good/bad pairs.", 1, True,
                 ["model", "train"],
                 ["stages.train(cfg, iteration, variant)",
                  "show.loss_curve(cfg, iteration, variant)"]),
    "04_evaluate": ("# 04 · Evaluate\nThe variant's new actor on the held-out tasks: scores with 95 % intervals, "
                    "error recovery from the baseline's failures, loops; every variant evaluated so far beside it.", 1,
                    True, ["model", "tasks", "evaluate"],
                    ["metrics = stages.evaluate(cfg, iteration, variant)",
                     "show.scores(cfg)",
                     "show.recovery(cfg)"]),
    "05_report": ("# 05 · Report\nEvery metrics file of the study, its variants side by side and beside the paper's "
                  "numbers: tables and figures in `results/<run>/report/` (report.md, report.html).", None, False,
                  ["study", "revision"],
                  ["stages.report(cfg)",
                   "show.report(cfg)"]),
}


def notebook(title: str, iteration: int | None, per_variant: bool, sections: list[str],
             cells: list[str]) -> nbf.NotebookNode:
    params = nbf.v4.new_code_cell(PARAMS.format(iteration="" if iteration is None else f"iteration = {iteration}\n",
                                                variant=VARIANT if per_variant else ""))
    params.metadata["tags"] = ["parameters"]
    setup = nbf.v4.new_code_cell(SETUP.format(sections=", ".join(f'"{s}"' for s in sections)))
    nb = nbf.v4.new_notebook()
    nb.cells = [nbf.v4.new_markdown_cell(title), params, setup, *map(nbf.v4.new_code_cell, cells)]
    for i, cell in enumerate(nb.cells):  # stable ids (nbformat's are random): the ones nbstripout gives
        cell.id = str(i)
    nb.metadata["kernelspec"] = {"name": "agentr-kit", "display_name": "agentr-kit", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def build(out_dir: Path = HERE) -> list[Path]:
    """Write every stage notebook into `out_dir`; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, spec in NOTEBOOKS.items():
        nbf.write(notebook(*spec), out_dir / f"{name}.ipynb")
        written.append(out_dir / f"{name}.ipynb")
    return written


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
