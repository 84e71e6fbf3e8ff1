"""ScienceWorld env: task ids, splits, stepping, mapping, replay, failure, JVM handling.

Tests that need the simulator share one env (one JVM, ~2 s to start) and are skipped when no Java runtime is
installed; the pure-Python tests (Java check, JVM options, action choice) always run.
"""
import gc
import os
import random
import time

import pytest

from agentr_lib.envs import sciworld
from agentr_lib.envs.sciworld import (
    NO_MATCH,
    NUM_GAMES,
    JavaNotFoundError,
    SciWorldEnv,
    choose_action,
    java_executable,
    java_tool_options,
)

needs_java = pytest.mark.skipif(java_executable() is None,
                                reason="ScienceWorld needs a Java runtime (apt-get install openjdk-17-jre-headless)")

SHORT_TASK = 3236  # find-non-living-thing, variation 0: a 5-action gold path
FIND_LIVING = 2936  # find-living-thing, variation 0: starts in the hallway next to a picture
ORDER_SENSITIVE = 1822  # test-conductivity: three "wood cup" objects whose listing order varies with hash codes


@pytest.fixture(scope="module")
def env():
    if java_executable() is None:
        pytest.skip("no Java runtime")
    e = SciWorldEnv()
    yield e
    pid = e.java_pid
    e.close()
    assert not _alive(pid), "the JVM outlived close()"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead too (the parent may not have reaped it yet)
        return f.read().split()[2] != "Z"


# ---- pure Python ----
def test_missing_java_gives_one_clear_error(monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(sciworld.shutil, "which", lambda name: None)

    def no_py4j(*args, **kwargs):
        raise AssertionError("py4j must not be started without Java")

    import scienceworld.scienceworld as package
    monkeypatch.setattr(package, "launch_gateway", no_py4j)
    with pytest.raises(JavaNotFoundError) as info:
        SciWorldEnv()
    message = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert "java not found on PATH" in message and "openjdk-17-jre-headless" in message and "make setup" in message


def test_java_home_without_java_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(JavaNotFoundError, match="has no bin/java"):
        SciWorldEnv()


def test_java_options_keep_the_users_own():
    assert sorted(java_tool_options("").split()) == sorted(sciworld.JAVA_OPTIONS)
    combined = java_tool_options("-Xmx2g -XX:+UseG1GC -Dfoo=1")
    assert "-Xmx2g -XX:+UseG1GC -Dfoo=1" in combined
    assert "-Xmx512m" not in combined and "UseSerialGC" not in combined  # two collectors: the JVM would not start
    assert combined.index("Unlock") < combined.index("-XX:hashCode=2")
    # the user's own hash mode wins, and the unlock flag still comes before it
    combined = java_tool_options("-XX:hashCode=5")
    assert "hashCode=2" not in combined and combined.index("Unlock") < combined.index("hashCode=5")


def test_choose_action_exact_then_overlap_then_pass_through():
    valid = {"open door to kitchen", "go to kitchen", "look at kitchen", "focus on orange", "focus on picture"}
    assert choose_action("go to kitchen", valid) == "go to kitchen"
    assert choose_action("open the door to the kitchen", valid) == "open door to kitchen"
    # ties (2 shared words each) go to the shortest, then the alphabetically first
    assert choose_action("go kitchen now", valid) == "go to kitchen"
    assert choose_action("focus on apple", valid) == "focus on orange"
    assert choose_action("xyzzy", valid) == "xyzzy"


# ---- with the simulator ----
@needs_java
def test_game_list_is_agentgyms(env):
    assert len(env.games) == NUM_GAMES == 4639
    assert env.games[0] == sciworld.Game("1-1", "boil", 0)
    assert not {g.task_key for g in env.games} & sciworld.EXCLUDED_TASKS
    assert env.games[FIND_LIVING] == sciworld.Game("4-1", "find-living-thing", 0)
    with pytest.raises(ValueError):
        env.reset(NUM_GAMES)


@needs_java
def test_splits(env):
    test, train = env.task_ids("test"), env.task_ids("train")
    assert len(test) == len(set(test)) == 200
    assert not set(test) & set(train)
    assert len(train) == 2246 and all(0 <= i < NUM_GAMES for i in train + test)
    env._sim.load("use-thermometer", 0)  # task 2-1 = ids 120..659; cross-check with the package's own split
    package_train = {120 + v for v in env._sim.get_variations_train()} - set(test)
    assert package_train == {i for i in train if 120 <= i < 660}
    with pytest.raises(ValueError):
        env.task_ids("dev")



@needs_java
def test_task_types_filter_both_splits(env):
    lifespan = SciWorldEnv(task_types=["7-1", "lifespan-shortest-lived"])  # a key and a name
    try:
        test, train = lifespan.task_ids("test"), lifespan.task_ids("train")
        assert test and set(test) < set(env.task_ids("test"))  # Agent-R's test ids that are lifespan tasks
        assert {lifespan.games[i].task_key for i in test} == {"7-1"}  # 7-2 has no Agent-R test id
        assert {lifespan.games[i].task_key for i in train} == {"7-1", "7-2"}
        assert set(train) < set(env.task_ids("train"))
    finally:
        lifespan.close()
    with pytest.raises(ValueError, match="lifespan-longest-lived"):  # the message lists the known types
        SciWorldEnv(task_types=["7-9"])

@needs_java
def test_first_observation_is_task_then_room(env):
    obs = env.reset(SHORT_TASK)
    task, room = obs.split("\n", 1)
    assert task.startswith("Your task is to find a(n) non-living thing.")
    assert room.startswith("This room is called the hallway.")


@pytest.fixture(scope="module")
def short_demo(env):
    return env.demonstrate(SHORT_TASK)


@needs_java
def test_gold_path_reaches_reward_one(env, short_demo):
    assert len(short_demo.thoughts) == len(short_demo.actions) > 0
    env.reset(SHORT_TASK)
    results = [env.step(a) for a in short_demo.actions]
    assert [r.reward for r in results[:-1]] == sorted(r.reward for r in results[:-1])  # the score only grows here
    assert results[-1].reward == 1.0 and results[-1].done
    assert [r.info["action"] for r in results] == short_demo.actions  # the demonstration holds what step ran


@needs_java
def test_fast_path_matches_the_packages_step(env, short_demo):
    env.reset(SHORT_TASK)
    ours = [env.step(a) for a in short_demo.actions]
    package = env._sim  # the package's own step: recomputes look, inventory, valid actions every time
    package.load("find-non-living-thing", 0)
    first, _ = package.reset()
    assert env.reset(SHORT_TASK).endswith("\n" + first)
    for action, result in zip(short_demo.actions, ours):
        observation, _, done, info = package.step(action)
        assert (observation, info["score"], done) == (result.observation, result.info["score"], result.done)


@needs_java
@pytest.mark.parametrize("action", ["", "xyzzy", "héllo ☃ 日本 🙂", "x" * 5000, "\n\t"])
def test_invalid_actions_give_zero_reward(env, action):
    env.reset(SHORT_TASK)
    result = env.step(action)
    assert result.observation == NO_MATCH
    assert result.reward == 0.0 and not result.done


@needs_java
def test_free_commands_pass_through_and_text_is_mapped(env):
    env.reset(SHORT_TASK)
    for action in ("look around", "Inventory", "wait1", "task"):
        assert env.step(action).info["action"] == action.lower()
    result = env.step("OPEN the door to the kitchen please")
    assert result.info["action"] == "open door to kitchen" and result.observation == "The door is now open."


@needs_java
def test_wrong_focus_fails(env):
    env.reset(FIND_LIVING)
    result = env.step("focus on picture")  # a picture is not alive
    assert result.info["action"] == "focus on picture"
    assert result.reward == -1.0 and result.done and result.info["score"] < 0


@needs_java
def test_same_id_same_first_observation(env):
    first = env.reset(ORDER_SENSITIVE)
    env.reset(0)
    env.reset(FIND_LIVING)
    assert env.reset(ORDER_SENSITIVE) == first


@needs_java
def test_replay_restores_the_live_observation(env):
    # random valid actions on the order-sensitive task; this replay diverged before hash codes were fixed
    rng = random.Random(0)
    env.reset(0)
    live = [env.reset(ORDER_SENSITIVE)]
    actions = []
    for _ in range(9):
        candidates = sorted(a for a in env.valid_actions()
                            if not a.startswith(("focus", "connect", "disconnect")))
        actions.append(rng.choice(candidates))
        live.append(env.step(actions[-1]).observation)
    actions.append("look around")
    live.append(env.step("look around").observation)
    env.reset(FIND_LIVING)  # something else in between
    assert env.replay(ORDER_SENSITIVE, actions) == live[-1]
    replayed = [env.reset(ORDER_SENSITIVE)] + [env.step(a).observation for a in actions]
    assert replayed == live


@needs_java
@pytest.mark.slow
def test_second_instance_agrees_and_dies_with_its_object(env):
    other = SciWorldEnv()
    pid = other.java_pid
    assert other.reset(ORDER_SENSITIVE) == env.reset(ORDER_SENSITIVE)  # same task, another JVM
    assert other.step("open door to hallway").observation == env.step("open door to hallway").observation
    del other
    gc.collect()
    deadline = time.time() + 10
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "an unreferenced env left its JVM running"
