"""Writes the stage notebooks (thin callers of agentr_lib.stages). Run after editing: python notebooks/build_notebooks.py

Each notebook: a title, one cell tagged `parameters` (papermill injects params_file and iteration), one cell that runs
its stage, and cells that show what the stage made. No stored outputs.
"""
from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).parent
SETUP = "from agentr_lib import stages, report\ncfg = stages.load(params_file)"

NOTEBOOKS = {
    "00_warmstart": ("# 00 · Warm-start (small models only)\nTeaches a small model the `Thought:`/`Action:` format "
                     "from a few scripted demonstrations, so that MCTS can find good paths at all. Off in the paper's "
                     "settings (`warmstart.enabled`).", None,
                     ["info = stages.warmstart(cfg)\ninfo",
                      "report.show_training(cfg.run_dir / 'warmstart')"]),
    "00_baseline": ("# 00 · Baseline\nThe starting actor on the held-out test tasks (iteration 0): scores, error "
                    "recovery of its own failures, loops.", 0,
                    ["metrics = stages.evaluate(cfg, iteration)",
                     "report.score_table({iteration: metrics})"]),
    "01_collect": ("# 01 · Collect\nMonte-Carlo tree search with the actor of the previous iteration on the training "
                   "tasks: one tree per task (`trees/<env>/<task>.json`).", 1,
                   ["info = stages.collect(cfg, iteration)\ninfo",
                    "report.show_tree(cfg, iteration)"]),
    "02_revise": ("# 02 · Revise\nGood/bad pairs from each tree; the actor names the first error of the bad path; "
                  "splice bad prefix + revision turn + good continuation. Good paths are kept too.", 1,
                  ["info = stages.revise(cfg, iteration)\ninfo",
                   "report.revision_table(report.read_metrics(cfg.run_dir)[1])",
                   "report.show_sample(cfg, iteration)"]),
    "03_train": ("# 03 · Train\nMasked SFT (QLoRA) of the previous actor: loss on good turns, the revision turn and "
                 "the good continuation, never on the bad prefix.", 1,
                 ["info = stages.train(cfg, iteration)\ninfo",
                  "report.show_training(stages.stage_dir(cfg, 'train', iteration))"]),
    "04_evaluate": ("# 04 · Evaluate\nThe new actor on the held-out tasks: scores with 95 % intervals, error recovery "
                    "from the baseline's failures, loops.", 1,
                    ["metrics = stages.evaluate(cfg, iteration)",
                     "report.score_table(report.read_metrics(cfg.run_dir)[0])"]),
    "05_report": ("# 05 · Report\nEvery metrics file of the run, beside the paper's numbers: tables and figures in "
                  "`results/<run>/report/`.", None,
                  ["written = stages.report(cfg)\nwritten",
                   "report.show_report(cfg)"]),
}


def build(name, title, iteration, cells):
    nb = nbf.v4.new_notebook()
    params = 'params_file = "../params/tiny.yaml"  # papermill injects the study\'s params file'
    if iteration is not None:
        params += f"\niteration = {iteration}"
    param_cell = nbf.v4.new_code_cell(params)
    param_cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbf.v4.new_markdown_cell(title), param_cell, nbf.v4.new_code_cell(SETUP)]
    nb.cells += [nbf.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "agentr-kit", "display_name": "agentr-kit", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbf.write(nb, HERE / f"{name}.ipynb")


if __name__ == "__main__":
    for name, (title, iteration, cells) in NOTEBOOKS.items():
        build(name, title, iteration, cells)
