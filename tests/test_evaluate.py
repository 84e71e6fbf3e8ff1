from agentr_lib.batching import EnvPool, run_jobs
from agentr_lib.envs.base import StepResult, TextEnv
from agentr_lib.evaluate import bootstrap_ci, env_metrics, episode_job, find_loops, loop_stats, recovery_prefix
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

    def generate(self, conversations, num_samples=1, temperature=1.0, max_new_tokens=None, seeds=None):
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
