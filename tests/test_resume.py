"""Same params, same seed → same artefacts, through the real entry point (papermill, a kernel per stage):
(a) a micro study run twice gives byte-identical trees, episodes, metrics, datasets and adapters;
(c) a study whose whole process group is SIGKILLed inside every stage — warm-start training (after a checkpoint),
    collect, revise, evaluate, report — and re-run each time ends with exactly what the unbroken run made, with
    nothing lost, duplicated or left half-written.

Kill points are drawn at random (the seed is printed: `pytest -s` shows it; AGENTR_KILL_SEED replays one).
One job is in flight at a time (`*_in_flight: 1`): what a resume changes is which requests share a batch, and fp32
sums (hence, rarely, a sampled token) depend on a batch's padding (README, reproducibility); with one job in flight a
resumed run batches exactly as the unbroken one did. KV reuse is off (`prefix_cache_mb: 0`) for the same reason: a
resumed process starts with an empty store, so it would prefill whole a prompt whose prefix the unbroken run reused
from an earlier episode, and a prefix computed in another split rounds differently (one sampled token of a random
model flipped so, in one of the kill draws). With both, the comparison is exact.
"""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from agentr_lib.pipeline import main

ROOT = Path(__file__).resolve().parent.parent
STUDY = {
    "run_name": "repro",
    "iterations": 1,
    "envs": ["textcraft", "toy"],  # toy: a random model's trees hold pairs, so revise critiques and train trains
    "model": {"name": "tiny-random", "quantization": "none", "compute_dtype": "fp32", "max_context_tokens": 768,
              "max_new_tokens": 12, "prefix_cache_mb": 0},
    "tasks": {"textcraft": {"train": 3, "test": 3, "env_kwargs": {"max_goal_depth": 1}, "demos": 3},
              "toy": {"train": 2, "test": 2, "demos": 1}},
    "warmstart": {"enabled": True, "epochs": 1, "max_length": 768},
    "mcts": {"simulations": 2, "candidates": 2, "max_depth": 3, "trees_in_flight": 1},
    "revision": {"alpha": [0.5], "critiques_in_flight": 1, "force_verdict": True, "verifier_max_new_tokens": 16},
    "train": {"epochs": [1], "batch_size": 1, "grad_accum": 1, "max_length": 768, "save_steps": 1},
    "evaluate": {"max_rounds": 3, "recovery_max_rounds": 2, "episodes_in_flight": 1},
}


def write_study(folder: Path) -> Path:
    path = folder / "params" / "repro.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(STUDY))
    return path


def artefacts(run: Path) -> dict:
    """What a study made that must not depend on how it ran: trees, episodes, metrics, datasets, the report, the
    adapters' tensors. (DONE.json, train_metrics.json and the executed notebooks hold timings, config.yaml the
    results folder: left out.)"""
    from datasets import load_from_disk
    made = {}
    for path in sorted(run.rglob("*")):
        rel = str(path.relative_to(run))
        if path.name in ("DONE.json", "train_metrics.json", "config.yaml") or path.suffix == ".ipynb" \
                or "checkpoints" in rel:
            continue
        if path.suffix in (".json", ".md", ".yaml") and path.is_file():
            made[rel] = path.read_bytes()
        elif path.name == "adapter_model.safetensors":
            made[rel] = {k: v.tolist() for k, v in load_file(path).items()}
        elif path.name == "dataset" and path.is_dir():
            made[rel] = load_from_disk(str(path)).to_list()
    return made


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory, kernel) -> dict:
    params = write_study(tmp_path_factory.mktemp("unbroken"))
    assert main([str(params)]) == 0
    made = artefacts(params.parent.parent / "results" / "repro")
    assert len([k for k in made if k.startswith("iter_1/trees/") and k.count("/") == 3]) == 5
    assert len(made["agent_r/iter_1/data/dataset"]) > 0, "the resumed stages include real revision and training"
    adapters = {f"{stage}/adapter/adapter_model.safetensors" for stage in ("warmstart", "agent_r/iter_1/train")}
    assert adapters <= set(made)
    episodes = [k for k in made if k.startswith(("iter_0/eval/", "agent_r/iter_1/eval/")) and "recovery" not in k
                and not k.endswith(("metrics.json", "params.json"))]
    assert len(episodes) == 2 * 5  # test episodes of both actors
    return made


@pytest.mark.slow
def test_the_same_study_twice_makes_the_same_artefacts(tmp_path, unbroken):
    params = write_study(tmp_path)
    assert main([str(params)]) == 0
    again = artefacts(tmp_path / "results" / "repro")
    assert again.keys() == unbroken.keys()
    assert [k for k in again if again[k] != unbroken[k]] == []


def kill_points(rng: random.Random) -> dict:
    """stage notebook -> a moment inside it (a predicate on the run folder) at which the process group is killed."""
    def files(pattern, n):
        return lambda run: len(list(run.glob(pattern))) >= n
    return {
        "00_warmstart": files("warmstart/checkpoints/checkpoint-*/trainer_state.json", 1),  # mid-epoch, checkpointed
        "01_collect": files("iter_1/trees/*/*.json", rng.randint(1, 4)),  # of 5 trees
        "02_revise": files("agent_r/iter_1/data/params.json", 1),  # claimed, the verifier loaded
        "04_evaluate": files("agent_r/iter_1/eval/*/*.json", rng.randint(1, 4)),  # of 5 test episodes (+ recovery)
        "05_report": files("report", 1),
    }


def run_until_killed(params: Path, run: Path, moment, rng: random.Random, timeout: float = 300) -> bool:
    """Start the pipeline in a process group of its own; SIGKILL the group once `moment(run)` holds. False if the
    study finished first."""
    proc = subprocess.Popen([sys.executable, "-m", "agentr_lib.pipeline", str(params)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        if moment(run):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(rng.uniform(0.01, 0.1))
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"the pipeline neither reached the kill point nor finished in {timeout} s")
    return False


@pytest.mark.slow
def test_a_study_killed_inside_every_stage_ends_as_the_unbroken_one(tmp_path, unbroken):
    seed = int(os.environ.get("AGENTR_KILL_SEED", random.randrange(10**6)))
    print(f"kill points drawn with AGENTR_KILL_SEED={seed}")
    rng = random.Random(seed)
    points = kill_points(rng)
    params = write_study(tmp_path)
    run = tmp_path / "results" / "repro"
    killed = [stage for stage, moment in points.items() if run_until_killed(params, run, moment, rng)]
    assert killed == list(points), f"these stages finished before their kill point: {set(points) - set(killed)}"
    assert main([str(params)]) == 0
    resumed = artefacts(run)
    assert resumed.keys() == unbroken.keys()  # nothing lost, nothing extra (no duplicate, no temporary file)
    assert [k for k in resumed if resumed[k] != unbroken[k]] == []
    assert not [p for p in run.rglob("*") if p.name.startswith((".tmp-", ".old-"))]
