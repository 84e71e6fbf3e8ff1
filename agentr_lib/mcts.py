"""Monte Carlo tree search over an environment, driven by a sampling policy (PAPER.md, Method step 1).

One search per training task. A *simulation* walks from the root down to a terminal node; every node it reaches
that has no children yet is *expanded*: the policy samples `candidates` replies at `temperature`, identical
replies are merged, and each distinct reply is stepped in the env to give one child (reply + the observation it
produced). There is no separate random rollout: the branching descent is the simulation (as in the official code).

- Terminal: the env says done, the depth limit is hit, or the step reward is negative (a failure: `failed=True`,
  reward clipped to 0).
- Back-propagation: right after an expansion, each terminal child adds (visits += 1, value += its reward) to
  itself and every ancestor, undiscounted; a node whose children are all terminal becomes terminal ("closed"),
  so later simulations never enter it again. The search stops early when the root closes.
- Selection: unvisited open children first (ties at random), else the best UCT = Q/N + c·sqrt(ln N_parent / N);
  terminal children are never selected.

A search is a batching *job* (see batching.py): `search_job` yields one `Request` per expansion, so
`collect_trees` can advance many trees together and answer all their pending expansions with one generate call.

Tree artefact (DESIGN.md, "Artefact formats"): `{env, task_id, instruction, first_observation, settings, seed,
nodes}` with a flat node list `{id, parent, depth, response, action, observation, reward, visits, value, terminal,
failed, done, children}`; the root is node 0 (depth 0, its observation is the reset observation).
"""
from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .batching import Policy, Request, derive_seed, env_pools, run_jobs
from .config import MCTSCfg
from .envs.base import TextEnv
from .files import CorruptArtefact, is_readable, read_json, write_json
from .trajectory import Step, conversation, parse_action, trim_context


@dataclass
class Node:
    id: int
    parent: int | None
    depth: int  # number of actions from the root
    response: str = ""  # the agent's full reply (thought + action), stripped
    action: str = ""  # the parsed action that went to the env
    observation: str = ""
    reward: float = 0.0  # the env reward of this node's own step (failures clipped to 0)
    visits: int = 0
    value: float = 0.0  # summed reward of the terminal nodes below (and including) this node
    terminal: bool = False
    failed: bool = False  # the env returned a negative reward
    done: bool = False  # the env said done (as opposed to a depth cut or a failure)
    children: list[int] = field(default_factory=list)


@dataclass
class Tree:
    env: str
    task_id: int
    instruction: str
    first_observation: str
    settings: dict
    nodes: list[Node]
    seed: int | None = None
    stats: dict = field(default_factory=dict, compare=False, repr=False)  # run-time counters, not saved

    @property
    def root(self) -> Node:
        return self.nodes[0]

    def path(self, node_id: int) -> list[int]:
        """Node ids from the first action down to `node_id` (the root excluded)."""
        ids = []
        while node_id != 0:
            ids.append(node_id)
            node_id = self.nodes[node_id].parent
        return ids[::-1]

    def steps(self, node_ids: list[int]) -> list[Step]:
        nodes = [self.nodes[i] for i in node_ids]
        return [Step(n.response, n.action, n.observation, n.reward, n.done) for n in nodes]

    def actions(self, node_id: int) -> list[str]:
        return [self.nodes[i].action for i in self.path(node_id)]

    def leaves(self) -> list[Node]:
        """Terminal nodes without children: the ends of the root-to-leaf paths that revision pairs up."""
        return [n for n in self.nodes[1:] if n.terminal and not n.children]

    def to_dict(self) -> dict:
        return {"env": self.env, "task_id": self.task_id, "instruction": self.instruction,
                "first_observation": self.first_observation, "settings": dict(self.settings), "seed": self.seed,
                "nodes": [asdict(n) for n in self.nodes]}

    @classmethod
    def from_dict(cls, d: dict) -> Tree:
        return cls(env=d["env"], task_id=d["task_id"], instruction=d["instruction"],
                   first_observation=d["first_observation"], settings=d.get("settings", {}),
                   nodes=[Node(**n) for n in d["nodes"]], seed=d.get("seed"))


def save_tree(tree: Tree, path: str | Path) -> None:
    write_json(path, tree.to_dict())


def load_tree(path: str | Path, redo: str | None = None) -> Tree:
    """A saved tree; CorruptArtefact (naming the file, and `redo` or how to redo it) when it is not one."""
    d = read_json(path, redo)
    try:
        return Tree.from_dict(d)
    except (KeyError, TypeError, AttributeError, IndexError) as err:
        raise CorruptArtefact(path, f"not a tree: {type(err).__name__}: {err}", redo) from None


def load_trees(folder: str | Path, envs: Iterable[str]) -> list[Tree]:
    """The trees of `envs` under `folder/<env>/`, env by env, each env's in file-name order."""
    redo = (f"delete it and {Path(folder) / 'DONE.json'}, then re-run 01_collect: only that task is searched again"
            if (Path(folder) / "DONE.json").is_file() else None)
    return [load_tree(p, redo) for env in envs for p in sorted((Path(folder) / env).glob("*.json"))]


# ---------------------------------------------------------------------------------------------------------
# selection and back-propagation


def uct(child: Node, parent_visits: int, c: float) -> float:
    # Natural log, summed value over visits, no prior (the official code stores a prior but never uses it).
    return child.value / child.visits + c * math.sqrt(math.log(parent_visits) / child.visits)


def select_child(tree: Tree, node: Node, c: float, rng: random.Random) -> Node | None:
    """The child to descend into, or None when every child is terminal."""
    open_children = [tree.nodes[i] for i in node.children if not tree.nodes[i].terminal]
    if not open_children:
        return None
    unvisited = [ch for ch in open_children if ch.visits == 0]
    if unvisited:
        return rng.choice(unvisited)
    scores = [uct(ch, node.visits, c) for ch in open_children]
    best = max(scores)
    return rng.choice([ch for ch, s in zip(open_children, scores) if s == best])


def backpropagate(tree: Tree, leaf: Node) -> None:
    """Add the terminal `leaf`'s reward to it and its ancestors; close every node whose children are all terminal."""
    node = leaf
    while node is not None:
        node.visits += 1
        node.value += leaf.reward
        if node.children:
            node.terminal = all(tree.nodes[i].terminal for i in node.children)
        node = tree.nodes[node.parent] if node.parent is not None else None


# ---------------------------------------------------------------------------------------------------------
# the search job


class _EnvCursor:
    """Puts the env into a node's state before a candidate step: by copy when the env offers snapshots, else by
    reset + replay. It remembers which node's state the env is in, so descending into the child that was stepped
    last costs nothing. Snapshots are kept only for open nodes not yet expanded (each node expands once).
    Contract on the env: `restore(state)` must copy, not alias, `state`: one snapshot is restored once per candidate."""

    def __init__(self, env: TextEnv, task_id: int, tree: Tree, first_snapshot):
        self.env, self.task_id, self.tree = env, task_id, tree
        self.snapshots = None if first_snapshot is None else {0: first_snapshot}
        self.at = 0
        self.seconds = 0.0
        self.replays = 0

    def step_from(self, node: Node, action: str):
        t = time.perf_counter()
        if self.at != node.id:
            if self.snapshots is not None:
                self.env.restore(self.snapshots[node.id])
            else:
                self.env.replay(self.task_id, self.tree.actions(node.id))
                self.replays += 1
        result = self.env.step(action)
        self.at = -1  # the env now holds the new child's state; `arrived` names it
        self.seconds += time.perf_counter() - t
        return result

    def arrived(self, child: Node) -> None:
        self.at = child.id
        if self.snapshots is not None and not child.terminal:
            t = time.perf_counter()
            self.snapshots[child.id] = self.env.snapshot()
            self.seconds += time.perf_counter() - t

    def expanded(self, node: Node) -> None:
        if self.snapshots is not None:
            self.snapshots.pop(node.id, None)


def _is_terminal(child: Node, max_depth: int) -> bool:
    # Paper: at most 20 actions, so a node at depth == max_depth is terminal. The official code tests
    # `depth > MAX_DEPTH`, which allows MAX_DEPTH + 1 actions (off by one); we follow the paper.
    return child.done or child.failed or child.depth >= max_depth


def _expand(tree: Tree, node: Node, replies: list[str], cursor: _EnvCursor, settings: MCTSCfg) -> None:
    seen: set[str] = set()
    new: list[Node] = []
    for reply in replies:
        response = reply.strip()
        if response in seen:  # duplicate replies are merged (official: by the full response text)
            continue
        seen.add(response)
        action = parse_action(response)
        observation, reward, done, _ = cursor.step_from(node, action)
        child = Node(id=len(tree.nodes), parent=node.id, depth=node.depth + 1, response=response, action=action,
                     observation=observation, reward=float(reward), done=bool(done))
        if child.reward < 0:  # failure (SciWorld): terminal, worth 0
            child.failed, child.reward = True, 0.0
        child.terminal = _is_terminal(child, settings.max_depth)
        tree.nodes.append(child)
        node.children.append(child.id)
        cursor.arrived(child)
        new.append(child)
    cursor.expanded(node)
    # All children exist before any back-propagation, so the "all children terminal" test sees the full set.
    for child in new:
        if child.terminal:
            backpropagate(tree, child)


def _expansion_request(tree: Tree, node: Node, settings: MCTSCfg, fits, seed: int | None) -> Request:
    conv = conversation(tree.instruction, tree.first_observation, tree.steps(tree.path(node.id)))
    if fits is not None:  # optional trimming here; by default the policy (the actor) trims to its context budget
        conv = trim_context(conv, fits)
    return Request(conv, num_samples=settings.candidates, temperature=settings.temperature,
                   seed=None if seed is None else derive_seed(seed, node.id))  # candidate j: (this seed, j)


def search_job(env: TextEnv, task_id: int, settings: MCTSCfg, rng: random.Random,
               fits: Callable[[list[dict]], bool] | None = None,
               seed: int | None = None) -> Generator[Request, list[str], Tree]:
    """One MCTS search as a batching job: yields one Request per expansion (k samples), returns the Tree.

    `env` belongs to this job for its whole life (its state is moved around between candidate steps). `seed` (the
    tree's) seeds each expansion's samples by node: the tree depends on it alone, not on the trees it is batched with.
    """
    t = time.perf_counter()
    first_observation = env.reset(task_id)
    tree = Tree(env=env.name, task_id=task_id, instruction=env.instruction, first_observation=first_observation,
                settings=settings.model_dump(exclude={"trees_in_flight"}),  # a speed knob: never in an artefact
                nodes=[Node(id=0, parent=None, depth=0, observation=first_observation)])
    cursor = _EnvCursor(env, task_id, tree, env.snapshot())
    cursor.seconds += time.perf_counter() - t
    expansions = simulations = 0
    for _ in range(settings.simulations):
        if tree.root.terminal:  # every path explored: nothing left to simulate
            break
        simulations += 1
        node = tree.root
        while not node.terminal:
            if not node.children:
                replies = yield _expansion_request(tree, node, settings, fits, seed)
                _expand(tree, node, replies, cursor, settings)
                expansions += 1
            child = select_child(tree, node, settings.c_uct, rng)
            if child is None:  # all children terminal (back-propagation has closed `node` already)
                node.terminal = True
                break
            node = child
    tree.stats = {"simulations": simulations, "expansions": expansions, "env_s": cursor.seconds,
                  "replays": cursor.replays}
    return tree


# ---------------------------------------------------------------------------------------------------------
# collecting many trees


def tree_path(out_dir: str | Path, task_id: int) -> Path:
    return Path(out_dir) / f"{task_id}.json"


class _TimedPolicy:
    def __init__(self, policy: Policy):
        self.policy, self.seconds, self.calls = policy, 0.0, 0

    def generate(self, conversations, num_samples=1, temperature=1.0, max_new_tokens=None, seeds=None, stop="action"):
        t = time.perf_counter()
        try:
            return self.policy.generate(conversations, num_samples=num_samples, temperature=temperature,
                                        max_new_tokens=max_new_tokens, seeds=seeds, stop=stop)
        finally:
            self.seconds += time.perf_counter() - t
            self.calls += 1


def collect_trees(tasks: Mapping[str, list[int]], make_env: Callable[[str], TextEnv], policy: Policy,
                  settings: MCTSCfg, out_dir: str | Path, seed: int, progress: bool = True,
                  fits: Callable[[list[dict]], bool] | None = None) -> dict:
    """Search every (env, task) in `tasks`, `settings.trees_in_flight` trees at a time, writing
    `out_dir/<env>/<task_id>.json`.

    Trees of every env are in flight together, so one batched generate call serves the expansions of all of them.
    Resume: tasks whose file exists (and reads back) are skipped, and each task's rng comes from (seed, env name,
    task id), so a killed run loses at most the trees in flight and a re-run produces the same files (given a policy
    that answers the same conversation the same way). Envs come from one pool per env name (at most
    `trees_in_flight` envs each: SciWorld envs are JVMs, expensive to make) and are closed at the end.
    Returns {"envs": {env: tree counts}, plus the run's totals}.
    """
    t0 = time.perf_counter()
    # done = a tree file that reads back; an unreadable one (tampering, disk trouble) is searched again
    todo = {name: [t for t in ids if not is_readable(tree_path(Path(out_dir) / name, t), load_tree)]
            for name, ids in tasks.items()}
    per_env = {name: {"trees": 0, "skipped": len(tasks[name]) - len(todo[name]), "nodes": 0, "leaves": 0,
                      "rewarded_trees": 0, "expansions": 0, "env_s": 0.0} for name in tasks}
    stats = {"envs": per_env, "generate_calls": 0, "wall_s": 0.0, "policy_s": 0.0, "envs_made": 0}
    timed = _TimedPolicy(policy)

    def job(env: TextEnv, env_name: str, task_id: int):
        task_seed = derive_seed(seed, env_name, task_id)
        tree = yield from search_job(env, task_id, settings, random.Random(task_seed), fits, task_seed)
        tree.seed = task_seed
        save_tree(tree, tree_path(Path(out_dir) / env_name, task_id))
        # a small summary, not the tree: run_jobs keeps every result until the end
        return env_name, {"nodes": len(tree.nodes), "leaves": len(tree.leaves()), "rewarded": tree.root.value > 0,
                          **tree.stats}

    def tally(result):
        env_name, summary = result
        s = per_env[env_name]
        s["trees"] += 1
        for key in ("nodes", "leaves", "expansions", "env_s"):
            s[key] += summary[key]
        s["rewarded_trees"] += summary["rewarded"]

    with env_pools(todo, make_env) as pools:
        jobs = (pools[name].borrowing(job, name, t) for name, ids in todo.items() for t in ids)
        try:
            run_jobs(jobs, timed, in_flight=settings.trees_in_flight, on_result=tally,
                     progress="MCTS" if progress else None, total=sum(map(len, todo.values())))
        finally:
            stats["envs_made"] = sum(len(pool.envs) for pool in pools.values())
    stats.update(generate_calls=timed.calls, policy_s=timed.seconds, wall_s=time.perf_counter() - t0)
    return stats
