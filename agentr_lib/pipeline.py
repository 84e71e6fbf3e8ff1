"""Run a whole study: every stage notebook through papermill, iteration by iteration.

    python -m agentr_lib.pipeline params/tiny.yaml            # the whole study (done stages are skipped)
    python -m agentr_lib.pipeline params/tiny.yaml --dry-run  # what would run, what is done, in order
    python -m agentr_lib.pipeline params/tiny.yaml --only 05_report
    python -m agentr_lib.pipeline params/tiny.yaml --variant direct_revision   # the shared start + one variant
    python -m agentr_lib.pipeline params/tiny.yaml --set mcts.simulations=4 --set "envs=[textcraft]"

`--set KEY=VALUE` (repeatable) overrides any params key for this run: KEY is a dotted path into the params file,
VALUE is read as YAML (4, 0.5, true, null, [a, b], {k: v}). Every notebook gets the overrides as its `overrides`
parameter (by hand: `papermill notebooks/01_collect.ipynb out.ipynb -p params_file params/tiny.yaml -p iteration 1
-y "overrides: {mcts: {simulations: 4}}"`); they are params like any other, so a stage done without them refuses to
mix with them (the check runs for every stage of the study before any work).

Each executed notebook is saved beside the outputs it made, so every number has the notebook that produced it.
A stage whose DONE.json exists is skipped without starting a kernel, so re-running a finished study takes seconds.

The console shows a line per stage and, while a stage runs, its progress bars: every kernel loads console.py as an
IPython extension (`--ext`), which mirrors the notebook's bars (tqdm widgets, the HF Trainer's HTML bar) as lines on
the kernel's stderr, the console it inherited from this process; the notebook keeps its widgets. Kernels talk over
IPC (unix sockets in a private temporary folder) rather than TCP on localhost, so they have no unencrypted ports to
warn about.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from .config import ConfigError, deep_merge, load_config
from .layout import StageRun, check_params, is_done, plan

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
KERNEL = "agentr-kit"
EXTENSION = "agentr_lib.console"  # the IPython extension every stage kernel loads: its progress on our console


def run(params_file: str | Path, only: str | None = None, kernel: str = KERNEL, overrides: dict | None = None,
        variant: str | None = None, dry_run: bool = False) -> dict[str, float]:
    """Run the study's stages in order (or only the stage notebook `only`, only the shared stages and those of
    `variant`); return the seconds each took. `dry_run`: print the plan (done or to run) and run nothing."""
    params_file = Path(params_file).resolve()
    overrides = overrides or {}
    cfg = load_config(params_file, overrides)
    steps = select(plan(cfg), cfg, only, variant)
    for step in steps:  # before any work: never mix outputs of different params
        if step.folder is not None:
            check_params(step.folder, cfg)
    if dry_run:
        for step in steps:
            state = "done" if step.folder is not None and is_done(step.folder) else "to run"
            print(f"[{state:<6}] {step.label}  ->  {step.record_dir}", flush=True)
        return {}
    timings: dict[str, float] = {}
    for step in steps:
        if step.folder is not None and is_done(step.folder):
            print(f"[skip] {step.label}: done", flush=True)
            continue
        print(f"[run ] {step.label}", flush=True)
        start = time.time()
        run_notebook(step, params_file, overrides, kernel)
        timings[step.label] = time.time() - start
        print(f"[done] {step.label}: {timings[step.label]:.0f} s", flush=True)
    _print_timings(timings)
    return timings


def select(steps: list[StageRun], cfg, only: str | None, variant: str | None) -> list[StageRun]:
    """The steps `--only` (a stage notebook) and `--variant` (the shared stages and that variant's) leave."""
    names = list(dict.fromkeys(s.notebook for s in steps))
    if only and only not in names:
        raise ConfigError(f"--only {only}: not a stage of this study ({', '.join(names)})")
    if variant and variant not in cfg.study.variants:
        raise ConfigError(f"--variant {variant}: not a variant of this study ({', '.join(cfg.study.variants)})")
    return [s for s in steps if (not only or s.notebook == only) and (not variant or s.variant in (None, variant))]


def run_notebook(step: StageRun, params_file: Path, overrides: dict, kernel: str = KERNEL) -> None:
    """Execute one stage notebook with papermill; the executed copy lands in the step's record folder."""
    import papermill as pm
    step.record_dir.mkdir(parents=True, exist_ok=True)
    parameters = {"params_file": str(params_file), "overrides": overrides}
    if step.iteration is not None:
        parameters["iteration"] = step.iteration
    if step.variant is not None:
        parameters["variant"] = step.variant
    with tempfile.TemporaryDirectory(prefix="agentr-kernel-") as sockets:
        pm.execute_notebook(str(NOTEBOOKS / f"{step.notebook}.ipynb"), str(step.record_dir / f"{step.notebook}.ipynb"),
                            parameters=parameters, kernel_name=kernel, cwd=str(ROOT), progress_bar=False,
                            extra_arguments=[f"--ext={EXTENSION}"], config=kernel_transport(sockets))


def kernel_transport(sockets: str):
    """jupyter_client's KernelManager settings: IPC, its sockets in the folder `sockets`.

    Over TCP (the default) every kernel logs "Kernel is running over TCP without encryption" (ipykernel's
    IPKernelApp.init_sockets): its ports on localhost are open to every local user. Unix sockets in a private
    (0700) temporary folder are not, and IPC is what that warning recommends. Windows has no IPC transport.
    """
    from traitlets.config import Config
    if os.name != "posix":
        return Config()
    return Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(sockets, "kernel")}})


def parse_overrides(assignments: list[str]) -> dict:
    """`--set` values → nested overrides: ["mcts.simulations=4", "envs=[textcraft]"] →
    {"mcts": {"simulations": 4}, "envs": ["textcraft"]}."""
    overrides: dict = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set mcts.simulations=4")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({err})") from None
        for part in reversed(key.split(".")):
            value = {part: value}
        overrides = deep_merge(overrides, value)
    return overrides


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
    parser.add_argument("--variant", help="run the shared stages and this variant's (study.variants), e.g. eto")
    parser.add_argument("--dry-run", action="store_true", help="print what would run and what is done; run nothing")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a params key, e.g. --set mcts.simulations=4 (repeatable; VALUE is YAML)")
    parser.add_argument("--kernel", default=KERNEL, help="Jupyter kernel name (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        run(args.params, args.only, args.kernel, parse_overrides(args.overrides), args.variant, args.dry_run)
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
