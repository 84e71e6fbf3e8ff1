"""The real entry point end to end: every stage notebook through papermill, at micro scale (tiny random model)."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from agentr_lib.pipeline import KERNEL, main

MICRO = {
    "run_name": "micro",
    "iterations": 2,
    "envs": ["textcraft"],
    "model": {"name": "tiny-random", "quantization": "nf4", "max_context_tokens": 768, "max_new_tokens": 12},
    "tasks": {"textcraft": {"train": 2, "test": 3, "env_kwargs": {"max_goal_depth": 1}, "demos": 3}},
    "warmstart": {"enabled": True, "demos_per_env": 2, "epochs": 1},  # textcraft's own `demos` wins
    "mcts": {"simulations": 2, "candidates": 2, "max_depth": 3},
    "revision": {"alpha": [0.0]},  # a random model never succeeds: α = 0 still exercises pairing and the splice
    "train": {"epochs": [1], "batch_size": 2, "max_length": 768},
    "evaluate": {"max_rounds": 3, "recovery_max_rounds": 2},
}


@pytest.fixture(scope="module")
def kernel():
    from jupyter_client.kernelspec import KernelSpecManager
    if KERNEL not in KernelSpecManager().find_kernel_specs():
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", sys.prefix, "--name", KERNEL],
                       check=True, capture_output=True)
    return KERNEL


def write_params(tmp_path, params) -> Path:
    path = tmp_path / "params" / "micro.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.slow
def test_whole_study_runs_resumes_and_reports(tmp_path, kernel):
    params = write_params(tmp_path, MICRO)
    assert main([str(params)]) == 0
    run = tmp_path / "results" / "micro"
    for nb in ["warmstart/00_warmstart", "iter_0/00_baseline", "iter_1/01_collect", "iter_1/02_revise",
               "iter_1/03_train", "iter_2/04_evaluate", "report/05_report"]:
        assert (run / f"{nb}.ipynb").exists(), nb
    assert json.loads((run / "warmstart" / "DONE.json").read_text())["demos"] == 3
    assert len(list((run / "iter_1" / "trees" / "textcraft").glob("*.json"))) == 2
    for k in (0, 1, 2):
        metrics = json.loads((run / f"iter_{k}" / "eval" / "metrics.json").read_text())
        m = metrics["envs"]["textcraft"]
        assert m["n"] == 3 and 0 <= m["score"] <= 100 and m["ci"][0] <= m["score"] <= m["ci"][1]
        assert 0 <= m["loop_rate"] <= 1 and 1 <= m["turns"] <= 3
    assert (run / "iter_2" / "train" / "adapter").exists()
    for png in ["scores", "loops", "revision_length", "trajectories"]:
        assert (run / "report" / f"{png}.png").stat().st_size > 1000
    assert "paper" in (run / "report" / "report.md").read_text()

    start = time.time()  # a finished study is skipped stage by stage without starting kernels (but the report)
    assert main([str(params)]) == 0
    assert time.time() - start < 60


@pytest.mark.slow
def test_changed_params_refuse_to_mix_outputs(tmp_path, kernel, capsys):
    params = write_params(tmp_path, {**MICRO, "iterations": 0, "warmstart": {"enabled": False}})
    assert main([str(params), "--only", "00_baseline"]) == 0
    write_params(tmp_path, {**MICRO, "iterations": 0, "warmstart": {"enabled": False},
                            "evaluate": {"max_rounds": 2}})
    assert main([str(params), "--only", "00_baseline"]) == 2
    assert "other params" in capsys.readouterr().err


def test_bad_params_stop_before_any_work(tmp_path, capsys):
    params = write_params(tmp_path, {**MICRO, "mcts": {"simulatons": 2}})
    assert main([str(params)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'mcts.simulatons'" in err and "Traceback" not in err
    assert not (tmp_path / "results").exists()
