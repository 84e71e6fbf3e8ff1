"""The real entry point end to end: every stage notebook through papermill, at micro scale (tiny random model)."""
import io
import json
import time
from pathlib import Path

import pytest
import yaml

from agentr_lib.console import ProgressLines, _html_progress_hook
from agentr_lib.pipeline import main, parse_overrides

MICRO = {
    "run_name": "micro",
    "iterations": 2,
    # toy: a random model's replies succeed or fail by their text, so trees hold good/bad pairs (TextCraft's do not)
    "envs": ["toy", "textcraft"],
    "study": {"variants": ["agent_r", "eto", "agent_r-single"]},
    "model": {"name": "tiny-random", "quantization": "nf4", "max_context_tokens": 768, "max_new_tokens": 12},
    "tasks": {"toy": {"train": 3, "test": 3, "demos": 2},
              "textcraft": {"train": 1, "test": 2, "env_kwargs": {"max_goal_depth": 1}, "demos": 3}},
    "warmstart": {"enabled": True, "demos_per_env": 2, "epochs": 1},  # textcraft's own `demos` wins
    "mcts": {"simulations": 2, "candidates": 2, "max_depth": 3},
    # a random verifier never ends its reply: cap it (the default, 500 tokens, is the paper's)
    "revision": {"alpha": [0.5], "force_verdict": True, "verifier_max_new_tokens": 16},
    "train": {"epochs": [1], "batch_size": 2, "max_length": 768},
    "evaluate": {"max_rounds": 3, "recovery_max_rounds": 2},
}
BASELINE_ONLY = {**MICRO, "iterations": 0, "warmstart": {"enabled": False}, "envs": ["textcraft"]}


def write_params(tmp_path, params) -> Path:
    path = tmp_path / "params" / "micro.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.slow
def test_whole_study_runs_resumes_and_reports(tmp_path, kernel, capfd):
    params = write_params(tmp_path, MICRO)
    assert main([str(params)]) == 0
    console = capfd.readouterr()  # the kernels write progress to the stderr they inherit
    assert "[run ] 00_warmstart" in console.out and "[done] 05_report" in console.out
    assert "  training [" in console.err, "the HF Trainer's bar (warm-start) reaches the console"
    assert "  evaluate: 100%|" in console.err and "  MCTS: 100%|" in console.err, "run_jobs' bars too"
    assert "without encryption" not in console.err and "KeyboardInterrupt" not in console.err
    run = tmp_path / "results" / "micro"
    for nb in ["warmstart/00_warmstart", "iter_0/00_baseline", "iter_1/01_collect", "agent_r/iter_1/02_revise",
               "eto/iter_1/03_train", "agent_r-single/iter_2/01_collect", "agent_r/iter_2/04_evaluate",
               "report/05_report"]:
        assert (run / f"{nb}.ipynb").exists(), nb
    assert json.loads((run / "warmstart" / "DONE.json").read_text())["demos"] == 3 + 2
    assert len(list((run / "iter_1" / "trees" / "toy").glob("*.json"))) == 3
    assert not (run / "agent_r" / "iter_1" / "trees").exists(), "iteration 1's trees are shared"

    def done(folder):
        return json.loads((run / folder / "DONE.json").read_text())

    for k in (1, 2):  # every variant's iterations pair, critique (agent_r), splice and train on real samples
        data = {v: json.loads((run / v / f"iter_{k}" / "data" / "metrics.json").read_text())["envs"]["toy"]
                for v in MICRO["study"]["variants"]}
        assert all(d["pairs"] > 0 for d in data.values()), data
        assert data["agent_r"]["revision"] > 0 and sum(data["agent_r"]["verdict_sources"].values()) > 0
        assert data["eto"]["revision"] == 0 and data["eto"]["good"] > 0
        assert done(f"agent_r/iter_{k}/train")["samples"] > 0
        assert done(f"eto/iter_{k}/train")["sft_samples"] > 0 and done(f"eto/iter_{k}/train")["pairs"] > 0
        assert done(f"agent_r-single/iter_{k}/train")["toy/samples"] > 0
        assert (run / "eto" / f"iter_{k}" / "data" / "preferences").is_dir()
        for env in ("toy", "textcraft"):
            assert (run / "agent_r-single" / f"iter_{k}" / "train" / env / "adapter").is_dir()
    for k, v in [(0, None), (1, "agent_r"), (2, "eto"), (2, "agent_r-single")]:
        metrics = json.loads((run / (v or "") / f"iter_{k}" / "eval" / "metrics.json").read_text())
        for env, n in (("toy", 3), ("textcraft", 2)):
            m = metrics["envs"][env]
            assert m["n"] == n and 0 <= m["score"] <= 100 and m["ci"][0] <= m["score"] <= m["ci"][1]
            assert 0 <= m["loop_rate"] <= 1 and 1 <= m["turns"] <= 3
    assert (run / "eto" / "iter_2" / "train" / "sft" / "adapter").is_dir()
    assert (run / "eto" / "iter_2" / "train" / "adapter").is_dir()
    report = (run / "report" / "report.md").read_text()
    assert "paper" in report and all(v in report for v in MICRO["study"]["variants"])
    assert (run / "report" / "report.html").stat().st_size > 10_000

    start = time.time()  # a finished study is skipped stage by stage without starting kernels (but the report)
    assert main([str(params)]) == 0
    assert time.time() - start < 60


def test_dry_run_lists_the_plan_and_variant_selects(tmp_path, capsys):
    params = write_params(tmp_path, MICRO)
    assert main([str(params), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 1 + 1 + 3 * 3 + 3 * 4 + 1 and all(line.startswith("[to run]") for line in lines)
    assert main([str(params), "--dry-run", "--variant", "eto"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 + 3 + 4 + 1 and not any("agent_r" in line for line in lines)
    assert main([str(params), "--variant", "ppo"]) == 2
    assert "not a variant of this study" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_changed_params_refuse_to_mix_outputs(tmp_path, kernel, capsys):
    params = write_params(tmp_path, BASELINE_ONLY)
    assert main([str(params), "--only", "00_baseline"]) == 0
    write_params(tmp_path, {**BASELINE_ONLY, "evaluate": {"max_rounds": 2}})
    assert main([str(params), "--only", "00_baseline"]) == 2
    assert "other params" in capsys.readouterr().err


@pytest.mark.slow
def test_overrides_reach_the_notebook_and_are_pinned(tmp_path, kernel, capsys):
    params = write_params(tmp_path, BASELINE_ONLY)
    assert main([str(params), "--only", "00_baseline", "--set", "evaluate.max_rounds=2"]) == 0
    eval0 = tmp_path / "results" / "micro" / "iter_0" / "eval"
    assert yaml.safe_load((eval0 / "config.yaml").read_text())["evaluate"]["max_rounds"] == 2
    assert json.loads((eval0 / "metrics.json").read_text())["envs"]["textcraft"]["turns"] <= 2
    assert main([str(params), "--only", "00_baseline"]) == 2  # without the override: other params than the pinned
    assert "other params" in capsys.readouterr().err


def test_set_options_become_nested_overrides():
    assert parse_overrides(["mcts.simulations=4", "mcts.c_uct=0.5", "envs=[textcraft, webshop]",
                            "train.general_data=null", "tasks.textcraft={train: 2}"]) == {
        "mcts": {"simulations": 4, "c_uct": 0.5}, "envs": ["textcraft", "webshop"], "train": {"general_data": None},
        "tasks": {"textcraft": {"train": 2}}}


@pytest.mark.parametrize("option, message", [("mcts.simulatons=2", "unknown key 'mcts.simulatons'"),
                                             ("mcts.simulations", "expected KEY=VALUE"),
                                             ("mcts.simulations=[1", "not valid YAML")])
def test_bad_overrides_stop_before_any_work(tmp_path, capsys, option, message):
    params = write_params(tmp_path, MICRO)
    assert main([str(params), "--set", option]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_only_names_a_stage_of_the_study(tmp_path, capsys):
    params = write_params(tmp_path, {**MICRO, "warmstart": {"enabled": False}})
    assert main([str(params), "--only", "00_warmstart"]) == 2
    assert "not a stage of this study" in capsys.readouterr().err


def test_progress_lines_show_a_bars_first_state_then_at_most_every_interval_and_its_last():
    out = io.StringIO()
    lines = ProgressLines(out, every=3600)
    for n in range(4):
        lines.show("bar", f"{n}/5")
    lines.show("other", "a")
    assert out.getvalue() == "  0/5\n  a\n"
    lines.show("bar", "5/5", final=True)  # a tqdm bar that closes
    lines.show("other", "b")  # a bar that never closes: its last state comes at the end of the cell
    lines.flush()
    assert out.getvalue() == "  0/5\n  a\n  5/5\n  b\n"


def test_the_trainers_html_bar_becomes_a_console_line():
    from transformers.utils.notebook import html_progress_bar
    out = io.StringIO()
    hook = _html_progress_hook(ProgressLines(out))
    label = "[3/6 00:01 < 00:01, 2.50 it/s, Epoch 0.50/1]"
    msg = {"content": {"data": {"text/html": html_progress_bar(3, 6, "", label) + "<table></table>"},
                       "transient": {"display_id": "d1"}}}
    assert hook(msg) is msg and hook({"content": {"data": {"text/plain": "x"}}}) is not None
    assert out.getvalue() == f"  training {label}\n"


def test_bad_params_stop_before_any_work(tmp_path, capsys):
    params = write_params(tmp_path, {**MICRO, "mcts": {"simulatons": 2}})
    assert main([str(params)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'mcts.simulatons'" in err and "Traceback" not in err
    assert not (tmp_path / "results").exists()
