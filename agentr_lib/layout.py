"""Where everything of a run lives, and the bookkeeping that makes a run resumable: the one module that knows.

A study compares variants (`study.variants`); what is the same for all of them is made once:

    results/<run>/warmstart/                      adapter/ (small models only) + 00_warmstart.ipynb
    results/<run>/iter_0/eval/                    the baseline: episodes + metrics.json     (iter_0/00_baseline.ipynb)
    results/<run>/iter_1/trees/<env>/             MCTS trees of the starting actor, one JSON per task
                                                  (iter_1/01_collect.ipynb)
and each variant's own iterations:
    results/<run>/<variant>/iter_k/trees/<env>/   MCTS trees with the variant's actor of iteration k-1 (k >= 2)
    results/<run>/<variant>/iter_k/data/          dataset/ (HF; ETO also preferences/) + metrics.json (Table 1)
    results/<run>/<variant>/iter_k/train/         adapter/ (one actor), or <env>/adapter/ (a "-single" variant)
    results/<run>/<variant>/iter_k/eval/<env>/    held-out episodes + metrics.json
    results/<run>/report/                         tables and figures of every variant  (report/05_report.ipynb)

Every stage folder holds, once the stage has finished, `DONE.json` (counts, timings, versions) and `config.yaml`
(the fully resolved params it ran with); from its first moment on, `params.json` pins the params that shape its
results, so a re-run skips done stages and refuses to mix outputs of different params.
"""
from __future__ import annotations

import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .config import Config, ConfigError, Variant
from .files import CorruptArtefact, read_json, write_json, write_yaml

# Knobs that change speed, not results: a resumed run may change them freely.
THROUGHPUT_KEYS = {"trees_in_flight", "episodes_in_flight", "critiques_in_flight", "generate_batch_size",
                   "prefix_cache_mb"}
DONE, PINNED, RESOLVED = "DONE.json", "params.json", "config.yaml"


class RunLayout:
    """The paths of one run (`results/<run>/`), as seen by one variant (`variant`; None: only the shared parts)."""

    def __init__(self, root: str | Path, variant: Variant | str | None = None):
        self.root = Path(root)
        self.variant = Variant(variant) if isinstance(variant, str) else variant

    def of(self, variant: Variant | str) -> RunLayout:
        return RunLayout(self.root, variant)

    @property
    def _own(self) -> Path:
        if self.variant is None:
            raise ValueError("a variant's path asked of a layout without a variant")
        return self.root / self.variant.name

    def iteration_dir(self, k: int) -> Path:
        """Iteration k's folder: shared for k = 0 (the baseline), else the variant's."""
        return self.root / "iter_0" if k == 0 else self._own / f"iter_{k}"

    @property
    def warmstart(self) -> Path:
        return self.root / "warmstart"

    @property
    def report(self) -> Path:
        return self.root / "report"

    def trees(self, k: int) -> Path:
        """Iteration k's trees: iteration 1's come from the starting actor, which every variant shares."""
        return self.root / "iter_1" / "trees" if k == 1 else self.iteration_dir(k) / "trees"

    def data(self, k: int) -> Path:
        return self.iteration_dir(k) / "data"

    def dataset(self, k: int) -> Path:
        return self.data(k) / "dataset"

    def preferences(self, k: int) -> Path:
        """ETO's good/bad pairs of iteration k (an HF dataset of prompt/chosen/rejected conversations)."""
        return self.data(k) / "preferences"

    def train(self, k: int) -> Path:
        return self.iteration_dir(k) / "train"

    def eval(self, k: int) -> Path:
        """Iteration k's held-out episodes (k = 0: the starting actor's baseline, shared)."""
        return self.iteration_dir(k) / "eval"

    def adapter(self, k: int, env: str | None = None) -> Path:
        """The actor after iteration k (k = 0: the warm-started one); a "-single" variant has one per `env`."""
        if k == 0:
            return self.warmstart / "adapter"
        return self.train(k) / env / "adapter" if self.variant.single else self.train(k) / "adapter"

    def iterations(self) -> list[int]:
        """The iterations of this variant that have a folder, in order (0, the shared baseline, when it has one)."""
        found = [int(p.name.split("_")[1]) for p in self._own.glob("iter_*") if p.name.split("_")[1].isdigit()]
        return sorted({0, *found} if self.iteration_dir(0).exists() else found)

    def metrics(self, stage: str) -> dict[int, dict]:
        """Each iteration's metrics.json of a stage ("eval", "data" or "train"); iterations without one are left out."""
        found = {k: getattr(self, stage)(k) / "metrics.json" for k in self.iterations()}
        return {k: read_json(p) for k, p in found.items() if p.exists()}


@dataclass(frozen=True)
class StageRun:
    """One notebook run of a study: which notebook, for which iteration and variant, what marks it done, where its
    record goes."""
    notebook: str
    iteration: int | None
    folder: Path | None  # whose DONE.json marks it finished; None: always re-run (the report only reads metrics)
    record_dir: Path  # the executed notebook lands here, beside what it made
    variant: str | None = None  # None: a stage every variant shares

    @property
    def label(self) -> str:
        where = [f"iteration {self.iteration}"] if self.iteration is not None else []
        where += [self.variant] if self.variant else []
        return f"{self.notebook} ({', '.join(where)})" if where else self.notebook


def plan(cfg: Config) -> list[StageRun]:
    """The stage notebooks of a study in running order: the shared start (warm-start, baseline, iteration-1 trees),
    then iteration by iteration every variant's stages, so that an early iteration's comparison is ready first."""
    run = RunLayout(cfg.run_dir, cfg.variants[0])
    steps = []
    if cfg.warmstart.enabled:
        steps.append(StageRun("00_warmstart", None, run.warmstart, run.warmstart))
    steps.append(StageRun("00_baseline", 0, run.eval(0), run.iteration_dir(0)))
    if cfg.iterations >= 1:
        steps.append(StageRun("01_collect", 1, run.trees(1), run.trees(1).parent))  # shared: no variant
    for k in range(1, cfg.iterations + 1):
        for variant in cfg.variants:
            own = run.of(variant)
            at = own.iteration_dir(k)
            if k > 1:
                steps.append(StageRun("01_collect", k, own.trees(k), at, variant.name))
            steps += [StageRun("02_revise", k, own.data(k), at, variant.name),
                      StageRun("03_train", k, own.train(k), at, variant.name),
                      StageRun("04_evaluate", k, own.eval(k), at, variant.name)]
    steps.append(StageRun("05_report", None, None, run.report))
    return steps


# The stage notebook that fills each stage folder (iter_0/eval is the baseline's).
STAGE_OF_FOLDER = {"warmstart": "00_warmstart", "trees": "01_collect", "data": "02_revise", "train": "03_train",
                   "eval": "04_evaluate"}


def redo_hint(path: Path) -> str:
    """How to redo a bad artefact: delete it, and its finished stage's DONE.json (else the stage counts as done),
    then re-run that stage."""
    for folder in [path, *list(Path(path).parents)[:3]]:
        stage = "00_baseline" if folder.name == "eval" and folder.parent.name == "iter_0" else \
            STAGE_OF_FOLDER.get(folder.name)
        if stage and (folder / DONE).is_file():
            return f"delete it and {folder / DONE}, then re-run {stage}"
        if stage:
            return f"delete it and re-run {stage}"
    return "delete it and re-run the stage that made it"


CorruptArtefact.redo_hint = staticmethod(redo_hint)  # a corrupt artefact names the stage that redoes it


# --- done markers and params pinning ------------------------------------------------------------------------------
def params_fingerprint(cfg: Config) -> dict:
    """The params that shape results (not the run's name, its length, or throughput knobs)."""
    def strip(d):
        return {k: strip(v) if isinstance(v, dict) else v for k, v in d.items() if k not in THROUGHPUT_KEYS}
    d = strip(cfg.to_dict())
    for k in ("run_name", "results_dir", "iterations", "study"):  # which variants run shapes no stage's results
        d.pop(k)
    return d


def is_done(folder: Path) -> bool:
    return (Path(folder) / DONE).exists()


def done_info(folder: Path) -> dict:
    return read_json(Path(folder) / DONE)


def require_done(folder: Path, message: str) -> None:
    """An upstream stage must have finished before this one reads its outputs."""
    if not is_done(folder):
        raise ConfigError(message)


def check_params(folder: Path, cfg: Config) -> None:
    """Refuse, with one clear message, when `folder` holds outputs made with other params."""
    pinned = Path(folder) / PINNED
    if not pinned.exists():
        return
    theirs, mine = read_json(pinned), params_fingerprint(cfg)
    if theirs != mine:
        changed = sorted(k for k in mine if theirs.get(k) != mine[k])
        raise ConfigError(f"{folder} was made with other params (differing sections: {', '.join(changed)}); "
                          f"set run_name to a new name, or delete {folder} to redo it")


def claim(folder: Path, cfg: Config) -> None:
    """Pin `folder` to these params (after checking it holds nothing made with other params), and clear what a
    killed earlier attempt left half-written."""
    check_params(folder, cfg)
    Path(folder).mkdir(parents=True, exist_ok=True)
    remove_leftovers(folder)
    write_json(Path(folder) / PINNED, params_fingerprint(cfg))


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete the temporary files and folders of atomic writes (files.py: `.tmp-*`, `.old-*`) under `folder`.

    Only a kill leaves them (a finished write renames its temporary into place), and only the stage that owns the
    folder writes there, so when that stage starts again they are garbage — which a reader globbing `*.json` would
    otherwise take for a tree or an episode."""
    import shutil
    found = sorted(p for pattern in (".tmp-*", ".old-*") for p in Path(folder).rglob(pattern))
    for path in found:  # a temporary folder's own contents may be listed after it: gone already
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return found


@contextmanager
def stage(cfg: Config, folder: Path, **counts):
    """Claim the folder, time the work; at the end (only when the body finished) write the resolved config and
    DONE.json, in that order, so that a done stage always has its config beside it."""
    claim(folder, cfg)
    start = time.time()
    info: dict = dict(counts)
    yield info
    info.update(seconds=round(time.time() - start, 1), versions=_versions(), finished=time.strftime("%F %T"))
    write_yaml(Path(folder) / RESOLVED, cfg.to_dict())
    write_json(Path(folder) / DONE, info)


def _versions() -> dict:
    import torch
    import transformers
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}
