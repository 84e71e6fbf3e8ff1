"""MCTS on a toy env with scripted policies: every number below is worked out by hand in the comments."""
import hashlib
import json
import random

import pytest

from agentr_lib.config import MCTSCfg
from agentr_lib.envs.base import StepResult, TextEnv
from agentr_lib.mcts import Node, Tree, collect_trees, load_tree, save_tree, search_job, select_child, uct


class ChoiceEnv(TextEnv):
    """Say "a" then "b" to win (reward 1); "x" fails (reward -1); anything else: 0 and go on, forever."""
    name = "choice"
    instruction = "Say a, then b."

    def __init__(self, snapshots: bool = True):
        self.snapshots, self.history, self.task = snapshots, [], None
        self.resets = self.steps = 0
        self.closed = False

    def task_ids(self, split):
        return list(range(6))

    def reset(self, task_id):
        self.task, self.history = task_id, []
        self.resets += 1
        return f"task {task_id}: say a then b"

    def step(self, action):
        self.steps += 1
        self.history.append(action)
        if action == "x":
            return StepResult("boom", -1.0, True)
        if self.history == ["a", "b"]:
            return StepResult("solved", 1.0, True)
        return StepResult("at " + "/".join(self.history), 0.0, False)

    def snapshot(self):
        return (self.task, list(self.history)) if self.snapshots else None

    def restore(self, state):
        self.task, history = state
        self.history = list(history)

    def close(self):
        self.closed = True


def actions_in(conversation):
    """The actions taken so far, read back from the conversation (assistant turns after the preamble)."""
    return tuple(m["content"].rsplit("Action:", 1)[1].strip() for m in conversation[4:] if m["role"] == "assistant")


class TablePolicy:
    """Replies chosen by the path so far: `table[actions] -> action list` (default: `default`)."""

    def __init__(self, table, default=("c",)):
        self.table, self.default, self.calls, self.requests = table, default, 0, []

    def generate(self, conversations, num_samples=1, temperature=1.0, max_new_tokens=None, seeds=None, stop="action"):
        self.calls += 1
        out = []
        for conv in conversations:
            path = actions_in(conv)
            self.requests.append((path, num_samples, temperature))
            out.append([f"Thought: go\nAction: {a}" for a in self.table.get(path, self.default)])
        return out


def search(table, settings, env=None, seed=0, default=("c",)):
    env = env or ChoiceEnv()
    policy = TablePolicy(table, default)
    job = search_job(env, 0, settings, random.Random(seed))
    request = next(job)
    try:
        while True:
            request = job.send(policy.generate([request.conversation], request.num_samples, request.temperature)[0])
    except StopIteration as stop:
        return stop.value, policy


def by_action(tree, parent=0):
    return {tree.nodes[i].action: tree.nodes[i] for i in tree.nodes[parent].children}


def test_first_simulation_by_hand():
    # root -> {a, x} (3 replies, "a" twice: merged); x fails at once. a -> {b (wins), c}; c -> {d, e} at the
    # depth limit 3. Terminal leaves: x (0), b (1), d (0), e (0) => root visits 4, value 1; every node closes,
    # so simulation 2 never starts: 3 expansions in all.
    tree, policy = search({(): ["a", "x", "a"], ("a",): ["b", "c"], ("a", "c"): ["d", "e"]},
                          MCTSCfg(simulations=2, candidates=3, max_depth=3))
    root, top = tree.root, by_action(tree)
    assert len(root.children) == 2 and set(top) == {"a", "x"}  # duplicate "a" merged
    assert (root.visits, root.value, root.terminal) == (4, 1.0, True)
    a, x = top["a"], top["x"]
    assert (a.visits, a.value, a.terminal) == (3, 1.0, True)
    assert (x.visits, x.value, x.reward, x.failed, x.terminal, x.done) == (1, 0.0, 0.0, True, True, True)
    b, c = by_action(tree, a.id)["b"], by_action(tree, a.id)["c"]
    assert (b.reward, b.done, b.visits, b.value) == (1.0, True, 1, 1.0)
    assert (c.visits, c.value, c.terminal, c.reward) == (2, 0.0, True, 0.0)
    assert {n.depth for n in map(tree.nodes.__getitem__, c.children)} == {3}
    assert {n.action for n in tree.leaves()} == {"x", "b", "d", "e"}
    assert policy.calls == 3
    assert all(n == 3 and t == 1.0 for _, n, t in policy.requests)  # k candidates at temperature 1.0


def test_closed_subtree_is_never_reentered():
    # root -> {a, c}; a -> {x}: a closes at once. c -> cc -> ccc (depth 3, terminal). Whatever order the
    # unvisited-first tie-break picks, 8 simulations expand root, a, c, cc exactly once each and stop early.
    table = {(): ["a", "c"], ("a",): ["x"]}
    for seed in range(6):
        tree, policy = search(table, MCTSCfg(simulations=8, candidates=2, max_depth=3), seed=seed)
        a = by_action(tree)["a"]
        assert a.terminal and tree.nodes[a.children[0]].failed
        assert policy.calls == 4 and sorted(p for p, _, _ in policy.requests) == [(), ("a",), ("c",), ("c", "c")]
        assert (tree.root.visits, tree.root.value, tree.root.terminal) == (2, 0.0, True)
        assert len(tree.nodes) == 6


def test_one_simulation_expands_one_unvisited_child():
    # root -> {a, c}; both children of either are terminal at depth 2 => one simulation = 2 expansions,
    # and the rng decides which of a / c; over a few seeds both get picked.
    table = {(): ["a", "c"], ("a",): ["b", "z"], ("c",): ["d"]}
    first = set()
    for seed in range(12):
        tree, policy = search(table, MCTSCfg(simulations=1, candidates=2, max_depth=2), seed=seed)
        assert policy.calls == 2
        expanded = [n.action for n in tree.nodes[1:] if n.children]
        assert len(expanded) == 1
        first.add(expanded[0])
        assert tree.root.visits == (2 if expanded == ["a"] else 1)
        assert tree.root.value == (1.0 if expanded == ["a"] else 0.0)
    assert first == {"a", "c"}
    tree, _ = search(table, MCTSCfg(simulations=2, candidates=2, max_depth=2))
    assert (tree.root.visits, tree.root.value) == (3, 1.0)
    assert (by_action(tree)["a"].visits, by_action(tree)["a"].value) == (2, 1.0)


def test_depth_limit_is_twenty_actions():
    tree, policy = search({}, MCTSCfg(simulations=8, candidates=4))  # always "c": a single chain
    assert len(tree.nodes) == 21 and max(n.depth for n in tree.nodes) == 20  # paper: 20, not the code's 21
    assert policy.calls == 20
    assert [n.depth for n in tree.leaves()] == [20]
    assert all(n.terminal and n.visits == 1 for n in tree.nodes)


def _node(i, visits, value, terminal=False):
    return Node(id=i, parent=0, depth=1, visits=visits, value=value, terminal=terminal)


def test_uct_choice_by_hand():
    # parent N = 10. A: 2/4 + 0.25*sqrt(ln10/4) = 0.690; B: 0/1 + 0.25*sqrt(ln10) = 0.379; C terminal (skipped).
    root = Node(id=0, parent=None, depth=0, visits=10, value=3, children=[1, 2, 3])
    tree = Tree("t", 0, "", "", {}, [root, _node(1, 4, 2.0), _node(2, 1, 0.0), _node(3, 5, 5.0, terminal=True)])
    assert uct(tree.nodes[1], 10, 0.25) == pytest.approx(0.5 + 0.25 * (2.302585 / 4) ** 0.5, abs=1e-6)
    assert select_child(tree, root, 0.25, random.Random(0)).id == 1
    tree.nodes[2].value = 0.5  # B: 0.5 + 0.379 = 0.879 > 0.690
    assert select_child(tree, root, 0.25, random.Random(0)).id == 2
    tree.nodes[2].value = 0.4
    assert select_child(tree, root, 0.0, random.Random(0)).id == 1  # c = 0: pure exploitation, 0.5 > 0.4
    # unvisited children come first, ties at random (seeded)
    tree.nodes += [_node(4, 0, 0.0), _node(5, 0, 0.0)]
    root.children += [4, 5]
    assert {select_child(tree, root, 0.25, random.Random(s)).id for s in range(20)} == {4, 5}
    for n in tree.nodes[1:]:
        n.terminal = True
    assert select_child(tree, root, 0.25, random.Random(0)) is None


def test_snapshot_and_replay_give_identical_trees():
    table = {(): ["a", "c", "x"], ("a",): ["b", "c", "d"], ("c",): ["a", "b"], ("c", "a"): ["b", "x"]}
    settings = MCTSCfg(simulations=8, candidates=3, max_depth=4)
    copy_env, replay_env = ChoiceEnv(snapshots=True), ChoiceEnv(snapshots=False)
    t1, _ = search(table, settings, env=copy_env, seed=3)
    t2, _ = search(table, settings, env=replay_env, seed=3)
    assert t1.to_dict() == t2.to_dict()
    assert copy_env.resets == 1 and replay_env.resets > 1  # the copy path never replays
    assert t1.stats["replays"] == 0 and t2.stats["replays"] == replay_env.resets - 1
    assert copy_env.steps == len(t1.nodes) - 1  # one env step per distinct candidate, nothing else
    # the cursor skips a replay when the env already holds the node's state (at least the root's first candidate)
    assert t2.stats["replays"] < len(t2.nodes) - 1


def test_tree_round_trip(tmp_path):
    tree, _ = search({(): ["a", "x"], ("a",): ["b"]}, MCTSCfg(max_depth=3))
    save_tree(tree, tmp_path / "t.json")
    again = load_tree(tmp_path / "t.json")
    assert again == tree and again.to_dict() == tree.to_dict()
    d = json.loads((tmp_path / "t.json").read_text())
    assert set(d) == {"env", "task_id", "instruction", "first_observation", "settings", "seed", "nodes"}
    assert d["settings"]["max_depth"] == 3 and d["nodes"][0]["observation"] == d["first_observation"]
    assert set(d["nodes"][1]) >= {"id", "parent", "depth", "response", "action", "observation", "reward", "visits",
                                  "value", "terminal", "failed"}
    assert tree.steps(tree.path(tree.leaves()[0].id))[0].action in {"a", "x"}


class HashPolicy:
    """Replies that depend only on the conversation (task and path), like a seeded sampler would."""

    def __init__(self, fail_after=None):
        self.calls, self.fail_after = 0, fail_after

    def generate(self, conversations, num_samples=1, temperature=1.0, max_new_tokens=None, seeds=None, stop="action"):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("killed")
        out = []
        for conv in conversations:
            key = (conv[3]["content"] + "|".join(actions_in(conv))).encode()
            digits = hashlib.sha256(key).digest()
            out.append([f"Thought: {d % 7}\nAction: {'abcxdab'[d % 7]}" for d in digits[:num_samples]])
        return out


def test_collect_trees_resume_gives_identical_files(tmp_path):
    settings = MCTSCfg(simulations=4, candidates=3, max_depth=4)
    made = []

    def make_env():
        made.append(ChoiceEnv())
        return made[-1]

    ids = list(range(6))

    def collect(out, policy, in_flight=4):  # one env here; test_collect_trees_serves_every_env_in_one_run: several
        stats = collect_trees({"choice": ids}, lambda name: make_env(), policy,
                              settings.model_copy(update={"trees_in_flight": in_flight}), out, seed=7, progress=False)
        return {**stats, **stats["envs"]["choice"]}

    stats = collect(tmp_path / "full", HashPolicy(), in_flight=3)
    full = {p.name: p.read_bytes() for p in (tmp_path / "full" / "choice").iterdir()}
    assert sorted(full) == [f"{i}.json" for i in ids]
    assert stats["trees"] == 6 and stats["skipped"] == 0 and stats["generate_calls"] > 0
    assert stats["envs_made"] <= 3 and len(made) == stats["envs_made"] and all(e.closed for e in made)
    assert stats["nodes"] == sum(len(json.loads(b)["nodes"]) for b in full.values())

    # a run killed part-way leaves whole files only; the rerun fills in the rest, byte for byte the same
    part = tmp_path / "part"
    with pytest.raises(RuntimeError, match="killed"):
        collect(part, HashPolicy(fail_after=15), in_flight=3)
    written = {p.name for p in (part / "choice").iterdir()}
    assert 0 < len(written) < 6 and written <= set(full)
    stats = collect(part, HashPolicy(), in_flight=2)
    assert stats["skipped"] == len(written) and stats["trees"] == 6 - len(written)
    assert {p.name: p.read_bytes() for p in (part / "choice").iterdir()} == full

    # delete one file: only that tree is searched again, same content
    (part / "choice" / "4.json").unlink()
    policy = HashPolicy()
    stats = collect(part, policy)
    assert stats["trees"] == 1 and stats["skipped"] == 5
    assert (part / "choice" / "4.json").read_bytes() == full["4.json"]
    assert collect(part, policy)["trees"] == 0

    # another run seed changes the tie-breaks: some tree's nodes differ
    other = collect_trees({"choice": ids}, lambda name: make_env(), HashPolicy(), settings, tmp_path / "other", seed=8,
                          progress=False)
    assert other["envs"]["choice"]["trees"] == 6
    nodes = lambda d, name: json.loads((d / "choice" / name).read_text())["nodes"]
    assert any(nodes(tmp_path / "other", n) != nodes(tmp_path / "full", n) for n in full)


def test_collect_trees_serves_every_env_in_one_run(tmp_path):
    """Trees of two envs advance together: their expansions share generate calls, files land per env."""
    class OtherEnv(ChoiceEnv):
        name = "other"

    policy = HashPolicy()
    settings = MCTSCfg(simulations=2, candidates=2, max_depth=3, trees_in_flight=4)
    make_env = lambda name: OtherEnv() if name == "other" else ChoiceEnv()
    both = collect_trees({"choice": [0, 1], "other": [0, 2]}, make_env, policy, settings, tmp_path / "both", seed=7,
                         progress=False)
    assert {n: s["trees"] for n, s in both["envs"].items()} == {"choice": 2, "other": 2}
    assert sorted(p.name for p in (tmp_path / "both" / "other").iterdir()) == ["0.json", "2.json"]
    separate = 0
    for name, ids in (("choice", [0, 1]), ("other", [0, 2])):
        alone = HashPolicy()
        collect_trees({name: ids}, make_env, alone, settings, tmp_path / "alone", seed=7, progress=False)
        separate += alone.calls
    assert policy.calls < separate  # the envs' expansions rode in the same calls
    tree_file = lambda run: (tmp_path / run / "choice" / "1.json").read_bytes()
    assert tree_file("both") == tree_file("alone")
