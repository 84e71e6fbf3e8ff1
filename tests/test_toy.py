"""The toy env: outcomes that hash the action text, so a random model's search trees hold good/bad pairs."""
import random
import string
import time
from types import SimpleNamespace

import pytest

from agentr_lib import revision
from agentr_lib.config import MCTSCfg, ModelCfg, TasksCfg, WarmstartCfg
from agentr_lib.envs import TextEnv, make_env, registry, select_tasks
from agentr_lib.envs.toy import FAILURE, NOTHING, SUCCESS, ToyEnv, outcome
from agentr_lib.trajectory import parse_action


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_letters + " ") for _ in range(rng.randint(1, 30)))


def play(env: ToyEnv, task_id: int, actions: list[str]) -> list[tuple]:
    env.reset(task_id)
    return [tuple(env.step(a))[:3] for a in actions]


def test_rewards_are_a_function_of_task_step_and_action():
    env = ToyEnv()
    rng = random.Random(0)
    for _ in range(50):
        task, actions = rng.randrange(60), [random_text(rng) for _ in range(3)]
        assert play(env, task, actions) == play(ToyEnv(), task, actions)  # same (task, step, text): same result
    assert outcome(3, 1, "  Open  THE box ") == outcome(3, 1, "open the box")  # case and spacing do not count
    assert outcome(3, 1, "") == outcome(3, 1, "   ") == NOTHING
    # the step number counts: the same text has different outcomes at different steps for some actions
    assert any(outcome(0, 1, f"a{i}") != outcome(0, 2, f"a{i}") for i in range(20))


def test_both_outcomes_occur_about_a_third_each():
    rng = random.Random(1)
    counts = {SUCCESS: 0, FAILURE: 0, NOTHING: 0}
    for _ in range(3000):
        counts[outcome(rng.randrange(60), rng.randint(1, 3), random_text(rng))] += 1
    assert all(800 < n < 1200 for n in counts.values()), counts


def test_step_results_and_the_step_limit():
    env = ToyEnv(max_steps=2)
    assert "2 tries" in env.instruction and len(env.instruction.split()) < 45  # short: prompts stay small
    first = env.reset(5)
    assert "Box 5" in first
    nothing = [a for a in (f"n{i}" for i in range(100)) if outcome(5, 1, a) == NOTHING and outcome(5, 2, a) == NOTHING]
    win = next(a for a in (f"w{i}" for i in range(100)) if outcome(5, 2, a) == SUCCESS)
    lose = next(a for a in (f"l{i}" for i in range(100)) if outcome(5, 1, a) == FAILURE)
    assert play(env, 5, [nothing[0], win]) == [("Nothing happens.", 0.0, False),
                                               ("The box opens. Task solved.", 1.0, True)]
    assert play(env, 5, [lose])[0][1:] == (0.0, True)  # a failure ends the episode unrewarded
    assert play(env, 5, nothing[:2])[-1] == ("Nothing happens. You are out of tries.", 0.0, True)
    assert tuple(env.step(win))[1:3] == (0.0, True)  # after the end: no second reward
    with pytest.raises(ValueError):
        ToyEnv(max_steps=0)
    with pytest.raises(ValueError):
        env.reset(60)


def test_snapshot_restore_matches_replay():
    env, rng = ToyEnv(max_steps=5), random.Random(2)
    env.reset(7)
    env.step("")
    state = env.snapshot()
    action = random_text(rng)
    after = tuple(env.step(action))
    env.restore(state)
    assert tuple(env.step(action)) == after
    env.replay(7, [""])
    assert tuple(env.step(action)) == after


def test_demonstrations_succeed():
    env = ToyEnv()
    for task in env.task_ids("train")[:10] + env.task_ids("test")[:5]:
        demo = env.demonstrate(task)
        assert demo.task_id == task and len(demo.thoughts) == len(demo.actions) == 1
        assert play(env, task, demo.actions)[-1][1:] == (1.0, True)
        assert demo.actions[0].startswith("action ")
        assert parse_action(env.format_reply(demo.thoughts[0], demo.actions[0])) == demo.actions[0]


def fake_cfg(iterations=1, warmstart=False, **tasks) -> SimpleNamespace:
    """What registry.check_tasks reads of a Config (the Config's envs list may not allow "toy" yet)."""
    task_cfg = TasksCfg(**tasks)
    return SimpleNamespace(envs=["toy"], iterations=iterations, tasks_for=lambda name: task_cfg,
                           warmstart=WarmstartCfg(enabled=warmstart, demos_per_env=5))


def test_registry_makes_it_and_checks_its_task_counts():
    env = make_env("toy", max_steps=4)
    assert isinstance(env, TextEnv) and env.name == "toy" and env.max_steps == 4
    train, test = env.task_ids("train"), env.task_ids("test")
    assert (len(train), len(test)) == (40, 20) and not set(train) & set(test)
    assert select_tasks(train, 5, seed=1) == select_tasks(make_env("toy").task_ids("train"), 5, seed=1)
    assert registry.check_tasks(fake_cfg(train=40, test=20)) == []
    (bad,) = registry.check_tasks(fake_cfg(train=41, test=20))
    assert bad.key == "tasks.toy.train" and "at most 40" in bad.allowed
    (bad,) = registry.check_tasks(fake_cfg(test=21))
    assert bad.key == "tasks.toy.test" and "at most 20" in bad.allowed
    (bad,) = registry.check_tasks(fake_cfg(train=38, warmstart=True))  # 5 demos from the 2 left over
    assert bad.key == "warmstart.demos_per_env" and "at most 2" in bad.allowed
    (bad,) = registry.check_tasks(fake_cfg(env_kwargs={"max_steps": 0}))
    assert bad.key == "tasks.toy.env_kwargs" and "max_steps" in bad.allowed
    (bad,) = registry.check_tasks(fake_cfg(env_kwargs={"max_steps": "3"}))
    assert bad.key == "tasks.toy.env_kwargs.max_steps" and bad.allowed == "expected int"
    (bad,) = registry.check_tasks(fake_cfg(env_kwargs={"steps": 3}))
    assert bad.unknown and bad.allowed == "max_steps"


@pytest.mark.usefixtures("one_thread")
def test_tiny_random_search_trees_hold_good_bad_pairs(tmp_path):
    from agentr_lib.actor import load_actor
    from agentr_lib.mcts import collect_trees, load_trees
    actor = load_actor(ModelCfg(name="tiny-random", quantization="none", compute_dtype="fp32",
                                max_context_tokens=512, max_new_tokens=12))
    start = time.perf_counter()
    # 6 trees: each holds a pair with odds above 1 in 2 (60 trees measured), so none in six is a broken env
    settings = MCTSCfg(simulations=2, candidates=2, max_depth=3, trees_in_flight=6)
    stats = collect_trees({"toy": list(range(6))}, make_env, actor, settings, tmp_path, seed=0, progress=False)
    trees = load_trees(tmp_path, ["toy"])
    pairs = [revision.make_pairs(revision.leaf_paths(tree), alpha=0.5, beta=0.2) for tree in trees]
    assert stats["envs"]["toy"]["trees"] == len(trees) == 6
    assert sum(map(len, pairs)) > 0 and stats["envs"]["toy"]["rewarded_trees"] > 0
    assert any(leaf.reward == 0 for tree in trees for leaf in tree.leaves())
    assert time.perf_counter() - start < 60  # ~1 s here: a pipeline test can afford it
