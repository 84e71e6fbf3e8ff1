"""Pairing, critique and splice on a hand-built tree, compared message by message (loss flags included)."""
import random
import re

import pytest

from agentr_lib.config import RevisionCfg
from agentr_lib.mcts import Node, Tree
from agentr_lib.revision import (
    REVISION_THOUGHTS,
    Path,
    build_revision_samples,
    critique_job,
    good_paths,
    leaf_paths,
    make_pairs,
    parse_verdict,
    splice,
)

INSTRUCTION, FIRST = "Say a, then b.", "task 0: say a then b"


def hand_tree(env="choice", rewarded=True):
    """
    0 root
    |- 1 a
    |  |- 3 b   r=1  (done)            good G1 = [1, 3]
    |  |- 4 c
    |  |  |- 6 d   r=0 (depth limit)   bad  B1 = [1, 4, 6]
    |  |  '- 7 f   r=1 (done)          good G2 = [1, 4, 7]
    |  '- 5 e   r=0.8 (done)                G3 = [1, 5]
    '- 2 x   failed, r=0               bad  B2 = [2]
    """
    one = 1.0 if rewarded else 0.0
    spec = [  # id, parent, action, reward, terminal, failed
        (1, 0, "a", 0.0, False, False), (2, 0, "x", 0.0, True, True), (3, 1, "b", one, True, False),
        (4, 1, "c", 0.0, False, False), (5, 1, "e", 0.8 * one, True, False), (6, 4, "d", 0.0, True, False),
        (7, 4, "f", one, True, False),
    ]
    nodes = [Node(id=0, parent=None, depth=0, observation=FIRST, visits=5, value=2.8 * one)]
    for i, parent, action, reward, terminal, failed in spec:
        nodes.append(Node(id=i, parent=parent, depth=nodes[parent].depth + 1,
                          response=f"Thought: t{i}\nAction: {action}", action=action, observation=f"obs {action}",
                          reward=reward, terminal=terminal, failed=failed, done=terminal and not failed))
        nodes[parent].children.append(i)
    return Tree(env=env, task_id=0, instruction=INSTRUCTION, first_observation=FIRST, settings={}, nodes=nodes)


def pre():
    return [{"role": "system", "content": "You are a helpful assistant.", "loss": False},
            {"role": "user", "content": INSTRUCTION, "loss": False},
            {"role": "assistant", "content": "Ok.", "loss": False},
            {"role": "user", "content": FIRST, "loss": False}]


def turn(i, action, loss):
    return [{"role": "assistant", "content": f"Thought: t{i}\nAction: {action}", "loss": loss},
            {"role": "user", "content": f"obs {action}", "loss": False}]


def revision(thought):
    assert thought in REVISION_THOUGHTS
    return [{"role": "assistant", "content": f"Thought: {thought}\nAction: wait", "loss": True},
            {"role": "user", "content": "ok.", "loss": False}]


def thought_of(messages):
    [thought] = [m["content"][len("Thought: "):-len("\nAction: wait")] for m in messages
                 if m["role"] == "assistant" and m["content"].endswith("\nAction: wait")]
    return thought


class Verifier:
    """Answers by the action under judgement: `verdicts[action]` is the reply text."""

    def __init__(self, replies):
        self.replies, self.judged, self.prompts, self.calls = replies, [], [], 0

    def generate(self, conversations, num_samples=1, temperature=1.0, max_new_tokens=None, seeds=None, stop="action"):
        self.calls += 1
        out = []
        for conv in conversations:
            prompt = conv[-1]["content"]
            action = re.search(r"Current Action: (.*)", prompt).group(1)
            self.judged.append(action)
            self.prompts.append(prompt)
            out.append([self.replies[action]] * num_samples)
        return out


def path(tree, leaf):
    return Path(tree.path(leaf), tree.nodes[leaf].reward)


# ---------------------------------------------------------------------------------------------------------


def test_leaf_paths_and_pairs_at_the_edges():
    tree = hand_tree()
    paths = leaf_paths(tree)
    assert {(tuple(p.nodes), p.score) for p in paths} == {((2,), 0.0), ((1, 3), 1.0), ((1, 5), 0.8), ((1, 4, 6), 0.0),
                                                         ((1, 4, 7), 1.0)}
    # alpha = 1.0 accepts r = 1 (>=); 1.0 - 0.8 = 0.2 = beta is rejected (strict >)
    pairs = {(g.leaf, b.leaf) for g, b in make_pairs(paths, alpha=1.0, beta=0.2)}
    assert pairs == {(3, 2), (3, 6), (7, 2), (7, 6)}
    assert {(g.leaf, b.leaf) for g, b in make_pairs(paths, alpha=0.8, beta=0.2)} == pairs | {(5, 2), (5, 6)}
    assert {(g.leaf, b.leaf) for g, b in make_pairs(paths, alpha=0.5, beta=0.1)} == pairs | {(5, 2), (5, 6), (3, 5),
                                                                                           (7, 5)}
    assert make_pairs(paths, alpha=1.01, beta=0.2) == []
    assert [p.leaf for p in good_paths(paths, 0.8)] == [3, 5, 7]
    # float edges: 0.9 - 0.7 and 0.7 - 0.5 are beta = 0.2 up to rounding: both rejected; 0.71 - 0.5 is not
    p = [Path([1], 0.9), Path([2], 0.7), Path([3], 0.5), Path([4], 0.71)]
    assert {(g.nodes[0], b.nodes[0]) for g, b in make_pairs(p, alpha=0.5, beta=0.2)} == {(1, 3), (4, 3)}
    assert {(g.nodes[0], b.nodes[0]) for g, b in make_pairs([Path([1], 0.5), Path([2], 0.2)], 0.5, 0.2)} == {(1, 2)}


@pytest.mark.parametrize("reply, verdict", [
    ("Judgement: bad", "bad"), ("judgment:Good", "good"), ("**Judgment:** Uncertain", "uncertain"),
    ("The move wastes a turn, so it is bad.", "bad"), ("", "unparsable"), ("Judgment: Good, not bad", "good"),
    ("Judgment: **Bad**", "bad"), ("JUDGMENT: UNCERTAIN.", "uncertain"), ("Judgment: maybe", "unparsable"),
    ("Judgment: Good at first... wait. Judgement: Bad", "bad"), ("I cannot tell.", "unparsable"),
    ("Judgment: Goodness knows", "unparsable"), ("good start, but bad", "bad"),
])
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) == verdict


def build(trees, verifier, method="agent_r", alpha=1.0, include_good=False, seed=0, **revision):
    revision = RevisionCfg(beta=0.2, include_good=include_good, critiques_in_flight=3, **revision)
    return build_revision_samples(trees, verifier, revision, method, alpha, seed=seed)


def test_splice_bad_at_step_2():
    tree = hand_tree()
    verifier = Verifier({"c": "c undoes progress. Judgment: Bad", "d": "Judgment: Good", "x": "Judgment: Bad"})
    samples, _ = build([tree], verifier)
    [s] = [s for s in samples if (s["good_leaf"], s["bad_leaf"]) == (3, 6)]
    assert s["messages"] == pre() + turn(1, "a", False) + turn(4, "c", False) + revision(thought_of(s["messages"])) \
        + turn(3, "b", True)
    assert (s["kind"], s["t_prime"], s["revision_length"], s["verdicts"]) == ("revision", 2, 2, ["bad"])
    assert (s["env"], s["task_id"]) == ("choice", 0)


def test_splice_good_then_bad_and_the_verifier_prompt():
    tree = hand_tree()
    verifier = Verifier({"c": "Judgment: Good", "d": "reasons... Judgment: Bad", "x": "Judgment: Uncertain"})
    bad, good = path(tree, 6), path(tree, 3)
    job = critique_job(tree, good, bad, 1.0, random.Random(0))
    request = next(job)
    assert request.num_samples == 1 and request.temperature == 1.0 and len(request.conversation) == 2
    with pytest.raises(StopIteration) as stop:
        while True:
            request = job.send(verifier.generate([request.conversation])[0])
    critique = stop.value.value
    assert (critique.t_prime, critique.verdicts) == (3, ["good", "bad"])
    assert verifier.judged == ["c", "d"]  # the shared step "a" is not judged
    prompt = verifier.prompts[1]
    assert f"Task Description: {FIRST}\nAction: a\nObservation: obs a\nAction: c\nObservation: obs c\n" \
           "Current Action: d\nCurrent Observation: obs d\n" in prompt
    assert prompt.startswith("You are a good verifier of interactive environments.")
    assert prompt.endswith("Judgment: <Good or Bad or Uncertain>")
    assert splice(tree, good, bad, critique.t_prime, critique.thought) == pre() + turn(1, "a", False) \
        + turn(4, "c", False) + turn(6, "d", False) + revision(critique.thought) + turn(3, "b", True)


def test_no_bad_is_a_direct_revision():
    tree = hand_tree()
    verifier = Verifier({"c": "Judgment: Uncertain", "d": "Judgment: Good", "x": "Judgment: Good"})
    samples, stats = build([tree], verifier)
    direct, _ = build([tree], None, method="direct_revision")
    for s, d in zip(samples, direct):
        assert (s["good_leaf"], s["bad_leaf"]) == (d["good_leaf"], d["bad_leaf"])
        assert s["messages"] == d["messages"]  # same splice point and, per pair, the same drawn thought
        assert s["t_prime"] == d["t_prime"] == len(tree.path(s["bad_leaf"]))
        assert (s["kind"], d["kind"], d["verdicts"]) == ("revision", "direct_revision", [])
    s = next(s for s in direct if (s["good_leaf"], s["bad_leaf"]) == (3, 6))
    assert s["messages"] == pre() + turn(1, "a", False) + turn(4, "c", False) + turn(6, "d", False) \
        + revision(thought_of(s["messages"])) + turn(3, "b", True)
    assert stats["choice"]["no_bad"] == 4


def test_t_prime_inside_the_shared_prefix():
    tree = hand_tree()
    good, bad = path(tree, 7), path(tree, 6)  # share a, c
    thought = REVISION_THOUGHTS[3]
    # flagged "a": the good continuation restarts right after the kept prefix (c, f), nothing skipped
    assert splice(tree, good, bad, 1, thought) == pre() + turn(1, "a", False) + revision(thought) \
        + turn(4, "c", True) + turn(7, "f", True)
    assert splice(tree, good, bad, 2, thought) == pre() + turn(1, "a", False) + turn(4, "c", False) \
        + revision(thought) + turn(7, "f", True)
    assert splice(tree, good, bad, 3, thought) == pre() + turn(1, "a", False) + turn(4, "c", False) \
        + turn(6, "d", False) + revision(thought) + turn(7, "f", True)


def test_counts_variants_and_skipped_trees():
    trees = [hand_tree(), hand_tree(env="other", rewarded=False)]
    verifier = Verifier({"c": "Judgment: Good", "d": "Judgment: Bad", "x": "no idea"})
    samples, stats = build(trees, verifier, include_good=True)
    # pairs (3,2): x unparsable -> t'=1; (3,6): c good, d bad -> t'=3; (7,2): t'=1; (7,6): only d judged -> t'=3
    revisions = {(s["good_leaf"], s["bad_leaf"]): (s["t_prime"], s["verdicts"]) for s in samples
                 if s["kind"] == "revision"}
    assert revisions == {(3, 2): (1, ["unparsable"]), (3, 6): (3, ["good", "bad"]), (7, 2): (1, ["unparsable"]),
                         (7, 6): (3, ["bad"])}
    assert stats["choice"] == {"trees": 1, "trees_skipped": 0, "paths": 5, "good_paths": 2, "pairs": 4, "revision": 4,
                               "direct_revision": 0, "good": 2, "optimal": 0, "no_bad": 0, "mean_revision_length": 2.0,
                               "verdicts": {"good": 1, "bad": 2, "uncertain": 0, "unparsable": 2},
                               "verdict_sources": {"parsed": 5, "chosen": 0},
                               "revision_samples": 4, "good_samples": 2}  # Table 1's columns
    assert stats["other"]["trees"] == 1 and stats["other"]["trees_skipped"] == 1 and stats["other"]["pairs"] == 0
    assert all(s["env"] == "choice" for s in samples)
    # batched, 3 in flight: call 1 judges x, c, x; call 2 judges d (pair 3,6) and d (pair 7,6, started late)
    assert verifier.calls == 2 and sorted(verifier.judged) == ["c", "d", "d", "x", "x"]
    good = next(s for s in samples if s["kind"] == "good" and s["good_leaf"] == 7)
    assert good["messages"] == pre() + turn(1, "a", True) + turn(4, "c", True) + turn(7, "f", True)
    assert (good["bad_leaf"], good["t_prime"], good["verdicts"]) == (None, None, [])

    # deterministic given the seed; another seed draws other thoughts
    again, _ = build(trees, Verifier(verifier.replies), include_good=True)
    assert again == samples
    other, _ = build(trees, Verifier(verifier.replies), include_good=True, seed=1)
    assert [s["messages"] for s in other] != [s["messages"] for s in samples]

    def kinds(method, **kw):
        return sorted((s["kind"], s["good_leaf"]) for s in build(trees, None, method, **kw)[0])

    # each method means what the paper's tables mean: Optimal keeps only r = 1 paths, whatever include_good says
    assert kinds("optimal") == kinds("optimal", alpha=0.5, include_good=True) == [("optimal", 3), ("optimal", 7)]
    assert kinds("optimal_good", alpha=0.8) == [("good", 5), ("optimal", 3), ("optimal", 7)]
    assert kinds("eto", alpha=0.8) == [("good", 3), ("good", 5), ("good", 7)]  # its SFT half; pairs: its DPO
    assert kinds("direct_revision", alpha=0.8) == [("direct_revision", 3)] * 2 + [("direct_revision", 5)] * 2 \
        + [("direct_revision", 7)] * 2
    assert kinds("direct_revision", alpha=0.8, include_good=True).count(("good", 5)) == 1
    with pytest.raises(ValueError, match="verifier"):
        build(trees, None, "agent_r")


def test_verifier_history_trimmed_from_the_front():
    tree = hand_tree()
    verifier = Verifier({"c": "Judgment: Good", "d": "Judgment: Bad"})
    fits = lambda conv: "Action: a\n" not in conv[-1]["content"]
    job = critique_job(tree, path(tree, 3), path(tree, 6), 1.0, random.Random(0), fits=fits)
    request = next(job)
    with pytest.raises(StopIteration):
        while True:
            request = job.send(verifier.generate([request.conversation])[0])
    assert "Action: a\n" not in verifier.prompts[1] and "Action: c\nObservation: obs c\n" in verifier.prompts[1]


def test_draw_tree_highlights_the_pair(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    from agentr_lib.tree_view import draw_tree

    fig = draw_tree(hand_tree(), highlight=(3, 6))
    ax = fig.axes[0]
    widths = {tuple(line.get_xydata()[1]): line.get_linewidth() for line in ax.lines}
    assert len(ax.lines) == 7 and sum(w > 1 for w in widths.values()) == 4  # edges to a, b (good); c, d (bad)
    assert "root value 2.8 / 5 visits" in ax.get_title()
    fig.savefig(tmp_path / "tree.png")
    plain = draw_tree(hand_tree(), highlight=None).axes[0]
    assert all(line.get_linewidth() < 1 for line in plain.lines)


def test_every_critique_reply_is_kept_with_its_sample_and_read_whole():
    tree = hand_tree()
    quoted = "Action: c\nObservation: obs c\nThis undoes progress.\nJudgment: Bad"  # quotes the log first
    verifier = Verifier({"c": quoted, "d": "Judgment: Good", "x": "Judgment: Bad"})
    samples, _ = build([tree], verifier)
    s = next(s for s in samples if (s["good_leaf"], s["bad_leaf"]) == (3, 6))
    assert s["critique_replies"] == [quoted] and s["verdict_sources"] == ["parsed"] and s["verdicts"] == ["bad"]
    job = critique_job(tree, path(tree, 3), path(tree, 6), 1.0, random.Random(0))
    assert next(job).stop == "none", "the verifier's reply is not cut at its first quoted Action line"


class Chooser(Verifier):
    """A verifier that writes no verdict; asked to choose, it picks `pick[action]`."""

    def __init__(self, replies, pick):
        super().__init__(replies)
        self.pick, self.asked = pick, []

    def choose(self, conversations, reply_prefixes, choices):
        self.asked += reply_prefixes
        return [self.pick[re.search(r"Current Action: (.*)", c[-1]["content"]).group(1)] for c in conversations]


def test_a_reply_without_a_verdict_gets_the_most_likely_one_when_forced():
    tree = hand_tree()
    replies = {"c": "hmm", "d": "I think so", "x": "Judgment: Bad"}
    verifier = Chooser(replies, {"c": "Good", "d": "Bad"})
    samples, stats = build([tree], verifier, force_verdict=True)
    s = next(s for s in samples if (s["good_leaf"], s["bad_leaf"]) == (3, 6))
    assert (s["verdicts"], s["verdict_sources"], s["t_prime"]) == (["good", "bad"], ["chosen", "chosen"], 3)
    assert verifier.asked[0] == "hmm\nJudgment:"
    assert stats["choice"]["verdict_sources"] == {"parsed": 2, "chosen": 3}  # x twice; c, d for (3, 6); d for (7, 6)
    unforced, _ = build([tree], Verifier(replies))  # the paper's rule: no verdict counts as Bad at once
    s = next(s for s in unforced if (s["good_leaf"], s["bad_leaf"]) == (3, 6))
    assert (s["verdicts"], s["t_prime"]) == (["unparsable"], 2)


def test_eto_preference_pairs_part_where_the_paths_do():
    from agentr_lib.revision import preference_pairs
    tree = hand_tree()
    pairs = preference_pairs([tree, hand_tree(env="other", rewarded=False)], RevisionCfg(beta=0.2), alpha=1.0)
    assert {(p["good_leaf"], p["bad_leaf"]) for p in pairs} == {(3, 2), (3, 6), (7, 2), (7, 6)}
    p = next(p for p in pairs if (p["good_leaf"], p["bad_leaf"]) == (7, 6))
    assert p["prompt"] == pre() + turn(1, "a", False) + turn(4, "c", False)
    assert p["chosen"] == turn(7, "f", True) and p["rejected"] == turn(6, "d", True)
    capped = preference_pairs([tree], RevisionCfg(beta=0.2, max_pairs_per_tree=2), alpha=1.0)
    assert len(capped) == 2 and capped == preference_pairs([tree], RevisionCfg(beta=0.2, max_pairs_per_tree=2), 1.0)


def test_the_revision_turn_follows_the_envs_reply_layout():
    tree = hand_tree()
    samples, _ = build([tree], None, "direct_revision")
    react, _ = build_revision_samples([tree], None, RevisionCfg(beta=0.2, include_good=False), "direct_revision", 1.0,
                                      layouts={"choice": "react"})
    turn_of = {(s["good_leaf"], s["bad_leaf"]): next(m["content"] for m in s["messages"]
                                                      if m["content"].endswith("wait")) for s in samples}
    assert len(react) == len(samples) == 4
    for s in react:
        thought = turn_of[s["good_leaf"], s["bad_leaf"]].split("\n")[0].removeprefix("Thought: ")
        assert f"Thought:\n{thought}\nAction:\nwait" in [m["content"] for m in s["messages"]]
