"""The notebooks' display helpers, on hand-made run folders (no model)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

from agentr_lib import show  # noqa: E402
from agentr_lib.config import from_dict  # noqa: E402
from agentr_lib.files import write_json  # noqa: E402
from agentr_lib.layout import RunLayout  # noqa: E402
from agentr_lib.mcts import Node, Tree  # noqa: E402
from agentr_lib.report import render_report  # noqa: E402

VARIANTS = ["agent_r", "eto", "agent_r-single", "direct_revision"]


def a_config(tmp_path, **params):
    return from_dict({"results_dir": str(tmp_path), "run_name": "r", "envs": ["textcraft", "sciworld"],
                      "study": {"variants": VARIANTS}, **params})


def test_config_shows_the_named_sections_as_yaml_and_marks_changed_values(tmp_path):
    cfg = a_config(tmp_path, envs=["textcraft"], mcts={"simulations": 2},
                   tasks={"textcraft": {"env_kwargs": {"max_goal_depth": 1}}})
    text = show.config(cfg, "mcts", "tasks").data
    block = text.split("```yaml\n")[1].split("```")[0]
    shown = yaml.safe_load(block)
    assert shown["mcts"]["simulations"] == 2 and shown["envs"] == ["textcraft"] and shown["seed"] == 0
    assert shown["tasks"] == {"textcraft": {"train": None, "test": None, "env_kwargs": {"max_goal_depth": 1},
                                            "demos": None}}, "the study's envs only"
    assert "train" not in shown and "model" not in shown, "only the sections asked for"
    assert "simulations: 2  # default: 8" in block and "candidates: 4\n" in block
    assert 'env_kwargs: {"max_goal_depth": 1}  # default: {}' in block
    assert str(cfg.run_dir) in text


def test_figures_are_returned_closed_so_a_cell_shows_them_once(tmp_path):
    cfg = a_config(tmp_path)
    run = RunLayout(cfg.run_dir, "agent_r")
    curve = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
    write_json(run.train(1) / "train_metrics.json", {"loss_curve": curve})
    root, leaf = Node(id=0, parent=None, depth=0, children=[1]), Node(id=1, parent=0, depth=1, terminal=True)
    tree = Tree(env="textcraft", task_id=3, instruction="craft", first_observation="", settings={}, nodes=[root, leaf])
    write_json(run.trees(1) / "textcraft" / "3.json", tree.to_dict())
    for fig in (show.loss_curve(cfg, 1), show.tree(cfg, 1), show.tree(cfg, 1, "eto")):  # iteration 1's trees: shared
        assert isinstance(fig, plt.Figure) and not plt.fignum_exists(fig.number)
    assert "no training metrics" in show.loss_curve(cfg)  # the warm-start did not run
    assert "no training metrics" in show.loss_curve(cfg, 1, "direct_revision")
    assert show.tree(cfg, 2) == "no trees"


def test_loss_curve_shows_every_training_of_a_stage(tmp_path):
    cfg = a_config(tmp_path)
    curve = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
    eto, single = RunLayout(cfg.run_dir, "eto"), RunLayout(cfg.run_dir, "agent_r-single")
    write_json(eto.train(1) / "sft" / "train_metrics.json", {"loss_curve": curve})
    write_json(eto.train(1) / "train_metrics.json", {"method": "dpo", "loss_curve": curve})
    for env in cfg.envs:
        write_json(single.train(1) / env / "train_metrics.json", {"loss_curve": curve})
    write_json(RunLayout(cfg.run_dir).warmstart / "train_metrics.json", {"loss_curve": curve})
    lines = {name: [line.get_label() for line in show.loss_curve(cfg, 1, name).axes[0].lines]
             for name in ("eto", "agent_r-single")}
    assert lines == {"eto": ["sft", "dpo"], "agent_r-single": ["textcraft", "sciworld"]}
    assert [line.get_linestyle() for line in show.loss_curve(cfg, 1, "eto").axes[0].lines] == ["-", "--"]
    assert show.loss_curve(cfg).axes[0].get_title() == "warm-start"


def test_unknown_variant_is_refused_in_one_line(tmp_path):
    import pytest

    from agentr_lib.config import ConfigError
    with pytest.raises(ConfigError, match="not one of this study's"):
        show.table1(a_config(tmp_path), "optimal")


def _evals(score):
    m = {"score": score, "ci": [0.0, 20.0], "n": 3, "turns": 2.0, "loop_rate": 0.1}
    return {"envs": {"textcraft": m}, "average": score, "recovery": {"envs": {"textcraft": m}, "average": score}}


def test_tables_read_the_runs_metrics(tmp_path):
    cfg = a_config(tmp_path)
    run = RunLayout(cfg.run_dir)
    write_json(run.eval(0) / "metrics.json", {"iteration": 0, **_evals(10.0)})
    write_json(run.of("agent_r").eval(1) / "metrics.json", {"iteration": 1, **_evals(20.0)})
    write_json(run.of("eto").eval(1) / "metrics.json", {"iteration": 1, **_evals(30.0)})
    for name, n in (("agent_r", 1), ("eto", 2)):
        write_json(run.of(name).data(1) / "metrics.json", {"envs": {"textcraft": {
            "trees": 2, "pairs": 1, "revision_samples": n, "good_samples": 0}}})
    every = show.scores(cfg)[["iteration", "variant", "env", "ours"]]
    assert every[every["env"] == "textcraft"].values.tolist() == [
        [0, "baseline", "textcraft", 10.0], [1, "agent_r", "textcraft", 20.0], [1, "eto", "textcraft", 30.0]]
    one = show.scores(cfg, "eto")
    assert one[one["env"] == "textcraft"]["variant"].tolist() == ["baseline", "eto"]
    assert len(show.recovery(cfg)) == 6 and len(show.recovery(cfg, "agent_r")) == 4  # textcraft + average rows
    assert show.table1(cfg)[["variant", "iteration", "revision"]].values.tolist() == [["agent_r", 1, 1]]
    assert show.table1(cfg, "eto")["revision"].tolist() == [2]


def _save_samples(path, samples):
    from datasets import Dataset
    Dataset.from_list(samples).save_to_disk(str(path))


def _sample(kind, replies=(), verdicts=(), sources=()):
    messages = [{"role": "user", "content": "craft a stick", "loss": False},
                {"role": "assistant", "content": f"Thought: {kind}\nAction: wait", "loss": True}]
    return {"messages": messages, "kind": kind, "env": "textcraft", "task_id": 3, "t_prime": len(replies) or None,
            "critique_replies": list(replies), "verdicts": list(verdicts), "verdict_sources": list(sources)}


def test_sample_and_critique_print_what_was_trained_and_what_the_verifier_said(tmp_path, capsys):
    cfg = a_config(tmp_path)
    run = RunLayout(cfg.run_dir)
    _save_samples(run.of("agent_r").dataset(1), [
        _sample("good"),
        _sample("revision", ["The move helps. Judgment: Good", "It loops here"], ["good", "bad"],
                ["parsed", "chosen"])])
    _save_samples(run.of("direct_revision").dataset(1), [_sample("direct_revision"), _sample("good")])
    show.sample(cfg, 1)
    out = capsys.readouterr().out
    assert out.startswith("revision sample, textcraft task 3") and "[LOSS] assistant: Thought: revision" in out
    show.sample(cfg, 1, "direct_revision")  # its splice stands in for a revision sample
    assert "Thought: direct_revision" in capsys.readouterr().out
    show.critique(cfg, 1)
    out = capsys.readouterr().out
    assert "t' = 2" in out and "--- step 1: good (parsed)" in out and "--- step 2: bad (chosen)" in out
    assert "It loops here" in out
    show.critique(cfg, 1, "direct_revision")
    assert "direct_revision splices without a verifier" in capsys.readouterr().out
    show.critique(cfg, 2, "eto")
    assert "no training samples in this iteration" in capsys.readouterr().out


def test_report_shows_the_markdown_with_each_figure_in_its_place(tmp_path, monkeypatch):
    cfg = a_config(tmp_path)
    shown = []
    monkeypatch.setattr(show, "display", shown.append)
    show.report(cfg)
    assert "no report yet" in shown.pop().data
    write_json(RunLayout(cfg.run_dir).eval(0) / "metrics.json", {"iteration": 0, **_evals(10.0)})
    written = render_report(cfg)
    show.report(cfg)
    images = [x for x in shown if not isinstance(x, show.Markdown)]
    assert len(images) == len(written["figures"]) > 0
    assert "## Main results (Table 2 layout)" in shown[0].data and "![" not in "".join(
        x.data for x in shown if isinstance(x, show.Markdown))
