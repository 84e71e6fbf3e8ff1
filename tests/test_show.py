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


def a_config(tmp_path, **params):
    return from_dict({"results_dir": str(tmp_path), "run_name": "r", "envs": ["textcraft"], **params})


def test_config_shows_the_named_sections_as_yaml_and_marks_changed_values(tmp_path):
    cfg = a_config(tmp_path, mcts={"simulations": 2}, tasks={"textcraft": {"env_kwargs": {"max_goal_depth": 1}}})
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
    run = RunLayout(cfg.run_dir)
    curve = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
    write_json(run.train(1) / "train_metrics.json", {"loss_curve": curve})
    root, leaf = Node(id=0, parent=None, depth=0, children=[1]), Node(id=1, parent=0, depth=1, terminal=True)
    tree = Tree(env="textcraft", task_id=3, instruction="craft", first_observation="", settings={}, nodes=[root, leaf])
    write_json(run.trees(1) / "textcraft" / "3.json", tree.to_dict())
    for fig in (show.loss_curve(cfg, 1), show.tree(cfg, 1)):
        assert isinstance(fig, plt.Figure) and not plt.fignum_exists(fig.number)
    assert "no training metrics" in show.loss_curve(cfg)  # the warm-start did not run


def test_tables_read_the_runs_metrics(tmp_path):
    cfg = a_config(tmp_path)
    run = RunLayout(cfg.run_dir)
    m = {"score": 10.0, "ci": [0.0, 20.0], "n": 3, "turns": 2.0, "loop_rate": 0.1}
    write_json(run.eval(0) / "metrics.json", {"iteration": 0, "envs": {"textcraft": m},
                                              "recovery": {"envs": {"textcraft": m}}})
    write_json(run.data(1) / "metrics.json", {"envs": {"textcraft": {"trees": 2, "pairs": 1, "revision_samples": 1,
                                                                     "good_samples": 0}}})
    assert show.scores(cfg)[["iteration", "env", "ours"]].values.tolist() == [[0, "textcraft", 10.0]]
    assert len(show.recovery(cfg)) == 1
    assert show.table1(cfg)[["iteration", "revision"]].values.tolist() == [[1, 1]]
