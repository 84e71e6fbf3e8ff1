"""Run a whole study: every stage notebook through papermill, iteration by iteration.

    python -m agentr_lib.pipeline params/tiny.yaml            # the whole study (done stages are skipped)
    python -m agentr_lib.pipeline params/tiny.yaml --only 05_report

Each executed notebook is saved beside the outputs it made, so every number has the notebook that produced it.
A stage whose DONE.json exists is skipped without starting a kernel, so re-running a finished study takes seconds.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .config import ConfigError
from .stages import check_params, is_done, load, stage_dir

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
KERNEL = "agentr-kit"


def plan(cfg) -> list[tuple[str, int | None, Path]]:
    """(notebook, iteration, folder whose DONE.json marks it finished) in running order."""
    steps = []
    if cfg.warmstart.enabled:
        steps.append(("00_warmstart", None, stage_dir(cfg, "warmstart")))
    steps.append(("00_baseline", 0, stage_dir(cfg, "eval", 0)))
    for k in range(1, cfg.iterations + 1):
        steps += [("01_collect", k, stage_dir(cfg, "trees", k)), ("02_revise", k, stage_dir(cfg, "data", k)),
                  ("03_train", k, stage_dir(cfg, "train", k)), ("04_evaluate", k, stage_dir(cfg, "eval", k))]
    steps.append(("05_report", None, None))  # always re-rendered: it only reads metrics files
    return steps


def run_notebook(name: str, params_file: Path, iteration: int | None, out_dir: Path, kernel: str = KERNEL) -> None:
    import papermill as pm
    out_dir.mkdir(parents=True, exist_ok=True)
    parameters = {"params_file": str(params_file)}
    if iteration is not None:
        parameters["iteration"] = iteration
    pm.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out_dir / f"{name}.ipynb"), parameters=parameters,
                        kernel_name=kernel, cwd=str(ROOT), progress_bar=False, log_output=True)


def run(params_file: str | Path, only: str | None = None, kernel: str = KERNEL) -> dict[str, float]:
    params_file = Path(params_file).resolve()
    cfg = load(params_file)
    steps = plan(cfg)
    for _, _, done_dir in steps:  # before any work: never mix outputs of different params
        if done_dir is not None:
            check_params(done_dir, cfg)
    timings: dict[str, float] = {}
    for name, iteration, done_dir in steps:
        if only and name != only:
            continue
        label = name if iteration is None else f"{name} (iteration {iteration})"
        if done_dir is not None and is_done(done_dir):
            print(f"[skip] {label}: done", flush=True)
            continue
        print(f"[run ] {label}", flush=True)
        start = time.time()
        out_dir = cfg.run_dir / ("report" if name == "05_report" else
                                 "warmstart" if iteration is None else f"iter_{iteration}")
        run_notebook(name, params_file, iteration, out_dir, kernel)
        timings[label] = time.time() - start
        print(f"[done] {label}: {timings[label]:.0f} s", flush=True)
    _print_timings(timings)
    return timings


def _print_timings(timings: dict[str, float]) -> None:
    if not timings:
        return
    print("\nstage times:")
    for label, seconds in timings.items():
        print(f"  {label:<32} {seconds:7.0f} s")
    print(f"  {'total':<32} {sum(timings.values()):7.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentr", description=__doc__.split("\n\n")[0])
    parser.add_argument("params", help="a params YAML, e.g. params/tiny.yaml")
    parser.add_argument("--only", help="run one stage notebook, e.g. 05_report")
    parser.add_argument("--kernel", default=KERNEL, help="Jupyter kernel name (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        run(args.params, args.only, args.kernel)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # a failed notebook: papermill names the cell; point at the executed copy
        if type(err).__name__ == "PapermillExecutionError":
            print(f"error: a stage notebook failed: {err.ename}: {err.evalue}\n"
                  "the executed notebook beside the stage's outputs shows the failing cell", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
