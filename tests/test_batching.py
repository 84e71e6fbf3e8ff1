"""run_jobs' requests: grouping by sampling setting and stop rule, choice requests, and what a request refuses."""
import pytest

from agentr_lib.batching import Request, run_jobs


class Recorder:
    """Replies with the stop rule it was asked for; chooses the last choice; records every call."""

    def __init__(self):
        self.calls = []

    def generate(self, conversations, num_samples=1, temperature=1.0, max_new_tokens=None, seeds=None, stop="action"):
        self.calls.append(("generate", len(conversations), num_samples, temperature, max_new_tokens, stop))
        return [[f"{stop}:{conv[0]['content']}"] * num_samples for conv in conversations]

    def choose(self, conversations, reply_prefixes, choices):
        self.calls.append(("choose", len(conversations), tuple(reply_prefixes), choices))
        return [choices[-1]] * len(conversations)


def conv(text):
    return [{"role": "user", "content": text}]


def asking(*requests):
    """A job that yields `requests` in turn and returns what it received."""
    got = []
    for request in requests:
        got.append((yield request))
    return got


def test_requests_are_grouped_by_stop_rule():
    policy = Recorder()
    jobs = [asking(Request(conv("a"))), asking(Request(conv("b"), stop="none")), asking(Request(conv("c")))]
    results = run_jobs(jobs, policy, in_flight=3)
    assert sorted(results) == [[["action:a"]], [["action:c"]], [["none:b"]]]
    assert sorted(policy.calls) == [("generate", 1, 1, 1.0, None, "none"), ("generate", 2, 1, 1.0, None, "action")]


def test_a_choices_request_gets_one_chosen_string():
    policy = Recorder()
    choices = ("Good", "Bad", "Uncertain")
    jobs = [asking(Request(conv("a"), stop="none"), Request(conv("a"), choices=choices, reply_prefix="hm\nJudgment:")),
            asking(Request(conv("b"), choices=list(choices), reply_prefix="no\nJudgment:"))]
    results = run_jobs(jobs, policy, in_flight=2)
    assert sorted(results) == [[["Uncertain"]], [["none:a"], ["Uncertain"]]]
    # b's choice comes in the first round (with a's reply), a's in the second: one choose call each
    assert policy.calls[1:] == [("choose", 1, ("no\nJudgment:",), choices), ("choose", 1, ("hm\nJudgment:",), choices)]


def test_choice_requests_in_one_round_share_a_call():
    policy = Recorder()
    choices = ("Good", "Bad")
    jobs = [asking(Request(conv(t), choices=choices, reply_prefix=t)) for t in "xy"]
    assert run_jobs(jobs, policy, in_flight=2) == [[["Bad"]], [["Bad"]]]
    assert policy.calls == [("choose", 2, ("x", "y"), choices)]


def test_a_policy_without_choose_is_named():
    class GenerateOnly:
        def generate(self, conversations, **kwargs):
            return [["x"] for _ in conversations]

    with pytest.raises(TypeError, match="GenerateOnly.*choose"):
        run_jobs([asking(Request(conv("a"), choices=("Good",)))], GenerateOnly())


def test_a_choice_outside_the_choices_is_refused():
    class Stray(Recorder):
        def choose(self, conversations, reply_prefixes, choices):
            return ["Maybe"] * len(conversations)

    with pytest.raises(ValueError, match="one of"):
        run_jobs([asking(Request(conv("a"), choices=("Good", "Bad")))], Stray())


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="stop rule"):
        Request(conv("a"), stop="judgment")
    with pytest.raises(ValueError, match="choices"):
        Request(conv("a"), choices=())
    with pytest.raises(ValueError, match="choices"):
        Request(conv("a"), choices=("Good", ""))
    with pytest.raises(ValueError, match="reply_prefix"):
        Request(conv("a"), reply_prefix="Judgment:")
    assert Request(conv("a"), choices=["Good", "Bad"]).choices == ("Good", "Bad")  # hashable, for grouping
