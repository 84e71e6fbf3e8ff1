import pytest

from agentr_lib.batching import EnvPool, run_jobs
from agentr_lib.config import ConfigError, EvaluateCfg
from agentr_lib.envs.base import StepResult, TextEnv
from agentr_lib.evaluate import (
    NO_FAILURE_NOTE,
    bootstrap_ci,
    env_metrics,
    episode_job,
    evaluate_actor,
    find_loops,
    loop_stats,
    recovery_plans,
    recovery_prefix,
)
from agentr_lib.files import write_json
from agentr_lib.trajectory import Episode, Step


class CounterEnv(TextEnv):
    """Say "up" three times to win; "boom" fails (negative reward); anything else changes nothing."""
    name = "counter"
    instruction = "Count to three."

    def task_ids(self, split):
        return [0, 1, 2]

    def reset(self, task_id):
        self.count = 0
        return f"task {task_id}: count is 0"

    def step(self, action):
        if action == "boom":
            return StepResult("exploded", -1.0, True)
        if action == "up":
            self.count += 1
            return StepResult(f"count is {self.count}", float(self.count == 3), self.count == 3)
        return StepResult("nothing happens", 0.0, False)


class ScriptedPolicy:
    """Replies by task: task 0 counts up, task 1 explodes, task 2 dithers."""
    def __init__(self):
        self.calls = []

    def generate(self, conversations, num_samples=1, temperature=1.0, max_new_tokens=None, seeds=None, stop="action"):
        self.calls.append(len(conversations))
        replies = {"0": "Thought: go\nAction: up", "1": "Action: boom", "2": "Thought: hm\nAction: look"}
        return [[replies[conv[3]["content"].split(":")[0][-1]]] * num_samples for conv in conversations]


def test_episodes_run_together_and_score_like_the_paper():
    policy = ScriptedPolicy()
    with EnvPool(CounterEnv) as pool:
        eps = run_jobs((pool.borrowing(episode_job, t, 5) for t in (0, 1, 2)), policy, in_flight=3)
        assert len(pool.envs) == 3
    eps = {e.task_id: e for e in eps}
    assert eps[0].success and eps[0].score == 1.0 and len(eps[0].steps) == 3
    assert eps[1].score == 0.0 and len(eps[1].steps) == 1  # failure ends the episode with score 0
    assert not eps[2].success and len(eps[2].steps) == 5  # max_rounds
    assert policy.calls[0] == 3  # all three episodes answered by one batched call


def test_env_pool_reuses_envs_when_in_flight_is_small():
    with EnvPool(CounterEnv) as pool:
        run_jobs((pool.borrowing(episode_job, t, 5) for t in (0, 1, 2, 0, 1)), ScriptedPolicy(), in_flight=2)
        assert len(pool.envs) == 2


def test_recovery_continues_from_the_cut():
    failed = Episode("counter", 0, "task 0", [Step("Action: look", "look", "x")] * 4, 0.0, False)
    prefix = recovery_prefix(failed, seed=0)
    assert 1 <= len(prefix) <= 3 and prefix == recovery_prefix(failed, seed=0)
    with EnvPool(CounterEnv) as pool:
        (ep,) = run_jobs([pool.borrowing(episode_job, 0, 5, prefix=prefix)], ScriptedPolicy())
    assert ep.actions[:len(prefix)] == ["look"] * len(prefix) and ep.success


def test_a_one_step_failure_is_continued_from_the_start():
    # kept whole, the prefix would end on the failure's done step: the continuation would be a sure 0
    failed = Episode("counter", 0, "task 0", [Step("Action: boom", "boom", "exploded", -1.0, True)], 0.0, False)
    assert recovery_prefix(failed, seed=0) == []
    policy = ScriptedPolicy()
    with EnvPool(CounterEnv) as pool:
        (ep,) = run_jobs([pool.borrowing(episode_job, 0, 5, prefix=[])], policy)
    assert ep.first_observation == "task 0: count is 0" and ep.actions == ["up"] * 3 and ep.success
    assert policy.calls == [1, 1, 1]  # the actor played every step, from the first observation


def test_a_cut_never_ends_on_a_finished_step():
    for n in range(2, 8):
        steps = [Step("Action: look", "look", "x")] * (n - 1) + [Step("Action: boom", "boom", "exploded", -1.0, True)]
        for seed in range(20):
            prefix = recovery_prefix(Episode("counter", seed, "", steps, 0.0, False), seed)
            assert 1 <= len(prefix) <= n - 1 and not any(s.done for s in prefix)


def baseline(folder, env="counter", scores=(0.0,)):
    """A baseline's episode files: one per score, one step each."""
    for task, score in enumerate(scores):
        ep = Episode(env, task, f"task {task}", [Step("Action: up", "up", "x", score, True)], score, score >= 1)
        write_json(folder / env / f"{task}.json", ep.to_dict())


def test_recovery_without_a_baseline_says_so(tmp_path):
    with pytest.raises(ConfigError, match="00_baseline") as err:
        recovery_plans(tmp_path / "eval_0", ["counter"], tmp_path / "out", 5, seed=0)
    assert str(tmp_path / "eval_0") in str(err.value) and "\n" not in str(err.value)
    baseline(tmp_path / "eval_0", "counter")
    with pytest.raises(ConfigError, match="no other episode.*00_baseline must run with other") as err:
        recovery_plans(tmp_path / "eval_0", ["counter", "other"], tmp_path / "out", 5, seed=0)
    assert str(tmp_path / "eval_0" / "other") in str(err.value)
    (tmp_path / "eval_0" / "empty").mkdir()
    with pytest.raises(ConfigError, match="no empty episode"):
        recovery_plans(tmp_path / "eval_0", ["empty"], tmp_path / "out", 5, seed=0)
    (plan,) = recovery_plans(tmp_path / "eval_0", ["counter"], tmp_path / "out", 5, seed=0)
    assert plan.prefix == ()  # its one-step failure: played from the start


def test_a_baseline_that_failed_nothing_gives_n_0_with_a_note(tmp_path):
    settings = EvaluateCfg(max_rounds=5, recovery_max_rounds=5, episodes_in_flight=2)
    base = tmp_path / "eval_0"
    # the baseline itself: task 0 counts to three, task 1 explodes (one step: continued from the start)
    m = evaluate_actor(ScriptedPolicy(), {"counter": [0, 1]}, lambda name: CounterEnv(), settings, base, base, 0)
    assert m["recovery"]["envs"]["counter"]["n"] == 1 and "note" not in m["recovery"]["envs"]["counter"]
    m = evaluate_actor(ScriptedPolicy(), {"counter": [0]}, lambda name: CounterEnv(), settings, tmp_path / "only0",
                       tmp_path / "only0", 0)
    assert m["recovery"]["envs"]["counter"]["n"] == 0
    assert m["recovery"]["envs"]["counter"]["note"] == NO_FAILURE_NOTE
    # a later actor against a baseline that failed nothing: the same note, and no episode played for it
    m = evaluate_actor(ScriptedPolicy(), {"counter": [0]}, lambda name: CounterEnv(), settings, tmp_path / "eval_1",
                       tmp_path / "only0", 0)
    assert m["recovery"]["envs"]["counter"] == {**m["recovery"]["envs"]["counter"], "n": 0, "note": NO_FAILURE_NOTE}


def test_find_loops_reads_back_to_back_primitive_blocks():
    assert find_loops(list("aaaa")) == [(1, 4)]  # not also (2, 2): "aa" is not primitive
    assert find_loops(list("xababab")) == [(2, 3)]
    assert find_loops(list("abcabcz")) == [(3, 2)]
    assert find_loops(list("abcd")) == []
    assert find_loops(list("aabb")) == [(1, 2), (1, 2)]


def test_loop_stats_averages_counts_by_length():
    eps = [Episode("e", i, "", [Step("", a, "") for a in acts]) for i, acts in enumerate(["aaa", "abab", "xyz"])]
    stats = loop_stats(eps)
    assert stats["loop_rate"] == 2 / 3
    assert stats["loops_by_length"]["1"] == {"loops": 1, "mean_count": 3.0, "episodes_share": 1 / 3}
    assert stats["loops_by_length"]["2"]["mean_count"] == 2.0


def test_bootstrap_interval_brackets_the_mean():
    lo, hi = bootstrap_ci([0, 1, 1, 0, 1, 1, 1, 0], seed=1)
    assert lo < 0.625 < hi and 0 <= lo and hi <= 1
    assert bootstrap_ci([1, 1, 1]) == [1.0, 1.0]


def test_metrics_use_the_papers_scales():
    eps = [Episode("webshop", 0, "", [Step("", "a", "")], 0.5, False),
           Episode("webshop", 1, "", [Step("", "wait", "")], 1.0, True)]
    m = env_metrics(eps, "webshop")
    assert m["score"] == 75.0 and m["success_rate"] == 50.0 and m["revision_turns"] == 0.5
    assert env_metrics(eps, "textcraft")["score"] == 50.0  # TextCraft: success rate
