"""From search trees to training samples: good/bad pairs, model-guided critique, splice (PAPER.md steps 2-4).

- Paths: every root-to-leaf path whose leaf is terminal; its score is the leaf's reward.
- Pairs: (good g, bad b) with r(g) - r(b) > beta and r(g) >= alpha; every qualifying pair is used.
- Critique: the current actor, as verifier, judges the bad path one step at a time from where it leaves the good
  path (Table 4 prompt). "Good"/"Uncertain" go on; the first "Bad" (or an unparsable answer) is the transition
  point t' and stays in the prefix. No "Bad" at all: t' = the end of the bad path (= Direct-Revision).
- Splice: preamble / bad prefix up to t' (context only) / revision turn "Thought: <thought>\\nAction: wait" + "ok."
  / the good path from the node after the shared prefix (trained on).

t' is counted in actions: the bad prefix keeps bad-path steps 1..t' (1-based), so the revision length (actions
from the start of the bad trajectory to t') equals t'.

Methods (one code path, `method=`; study.variants names them), our reading of PAPER.md Tables 2, 3 and Figure 3:
- "agent_r": critique-chosen t' (kind "revision"), plus good paths r >= alpha (kind "good") if include_good.
- "direct_revision": t' = end of the bad path, no model call (kind "direct_revision"), plus good if include_good
  (Table 2's "Direct-Revision (+ good)").
- "optimal": only the self-generated paths with r = 1 (kind "optimal"): Table 3's "Optimal (self-generated r=1)".
- "optimal_good": the r = 1 paths (kind "optimal") plus the other good paths alpha <= r < 1 (kind "good"):
  Figure 3's "Optimal+Good"; the paper does not define it further.
- "eto": the good paths r >= alpha (kind "good") for its SFT, and the (good, bad) pairs as preferences for its DPO
  (`preference_pairs`; train stage: SFT, then DPO).
"""
from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

from .batching import Policy, Request, derive_seed, run_jobs
from .config import RevisionCfg
from .mcts import Tree
from .trajectory import SYSTEM_PROMPT, format_reply, message, preamble, step_messages

EPS = 1e-9  # float slack for the alpha/beta tests: 0.9 - 0.7 is 0.20000000000000007 in floats, which is not > 0.2

# PAPER.md Table 5, the paper's ten revision thoughts, drawn uniformly. The released code's list has 20
# sentences (partly different wording) of which only the first 10 are reachable (`randint(0, 9)`); the paper's
# list is what we use.
REVISION_THOUGHTS = (
    "I realize my approach was flawed. I need to revise it.",
    "I took the wrong actions. I need to identify the right path.",
    "My actions were incorrect. I must adjust my strategy.",
    "I see an error in my actions. I need to fix it.",
    "My judgment was incorrect. I need to rethink it.",
    "I overlooked something important. I need to address it.",
    "I recognize my mistake. Let's find a better solution.",
    "I recognize my failure. I need to learn and move forward.",
    "My decision was wrong. I should reevaluate.",
    "I made an error. I must determine how to correct it.",
)
REVISION_ACTION = "wait"
REVISION_OBSERVATION = "ok."  # the fake observation after the revision turn (official: lowercase, with a period)

# PAPER.md Table 4. The official prompt says "a science task" for every env; the paper's wording is generic.
VERIFIER_PROMPT = """You are a good verifier of interactive environments. You will be given a history log that \
memorizes an agent interacting with the environment to solve a task. The format of the log is
###
Action: Action
Observation: Observation
###
Log:
Task Description: {task}
{history}Current Action: {action}
Current Observation: {observation}
You need to verify whether the current action is good or bad or uncertain.
- A good action is one that is greatly helpful to solve the task.
- A bad action is one that is greatly harmful to solve the task.
- An uncertain action is one that is neither good nor bad. You cannot judge based on the current information.
You must give reasons first and then give the response with the format: Judgment: <Good or Bad or Uncertain>"""


@dataclass
class Path:
    """A root-to-leaf path of a tree: node ids from the first action to the leaf, scored by the leaf reward."""
    nodes: list[int]
    score: float

    @property
    def leaf(self) -> int:
        return self.nodes[-1]


@dataclass
class Critique:
    t_prime: int  # bad-path steps kept in the prefix (1-based, inclusive)
    thought: str  # the revision thought drawn for this pair
    verdicts: list[str] = field(default_factory=list)  # per judged step: good / bad / uncertain / unparsable
    replies: list[str] = field(default_factory=list)  # the verifier's full answers, for inspection
    sources: list[str] = field(default_factory=list)  # per judged step: "parsed" (from the text) or "chosen"


# ---------------------------------------------------------------------------------------------------------
# paths and pairs


def leaf_paths(tree: Tree) -> list[Path]:
    return [Path(tree.path(leaf.id), leaf.reward) for leaf in tree.leaves()]


def good_paths(paths: list[Path], alpha: float) -> list[Path]:
    return [p for p in paths if p.score >= alpha - EPS]


def make_pairs(paths: list[Path], alpha: float, beta: float) -> list[tuple[Path, Path]]:
    """Every (good, bad) with r(g) - r(b) > beta and r(g) >= alpha, best good paths first.

    The official code tests r(g) > alpha (and compares against the env-var strings, which raises on Python 3);
    the paper says r(g) >= alpha, so alpha = 1.0 accepts r = 1. A gap of exactly beta is rejected (strict >).
    """
    ranked = sorted(paths, key=lambda p: -p.score)  # stable: ties keep the tree's leaf order
    return [(g, b) for g in good_paths(ranked, alpha) for b in ranked
            if b is not g and g.score - b.score > beta + EPS]


def shared_prefix(good: Path, bad: Path) -> int:
    """How many leading steps (nodes) the two paths share."""
    n = 0
    while n < min(len(good.nodes), len(bad.nodes)) and good.nodes[n] == bad.nodes[n]:
        n += 1
    return n


# ---------------------------------------------------------------------------------------------------------
# critique

_MARKER = re.compile(r"judge?ment\s*:", re.IGNORECASE)
_VERDICT = re.compile(r"\b(good|bad|uncertain)\b", re.IGNORECASE)


def parse_verdict(reply: str) -> str:
    """'good', 'bad', 'uncertain' or 'unparsable' from a verifier reply.

    After the last "Judgment:"/"Judgement:" (any case) the first verdict word wins ("Judgment: Good, not bad" is
    good; "Judgment: **Bad**" is bad). Without a marker we take the *last* verdict word of the whole reply, since
    the prompt asks for reasons first and the verdict last (the official code reads the whole reply and calls it
    good if "good" or "uncertain" appears anywhere, which a reasoned "bad" answer easily trips).
    """
    markers = list(_MARKER.finditer(reply))
    if markers:
        found = _VERDICT.search(reply, markers[-1].end())
        return found.group(1).lower() if found else "unparsable"
    words = _VERDICT.findall(reply)
    return words[-1].lower() if words else "unparsable"


def verifier_prompt(tree: Tree, bad: Path, index: int, history_start: int = 0) -> str:
    """The Table 4 prompt judging bad-path step `index` (0-based); history = the steps before it."""
    steps = tree.steps(bad.nodes[:index + 1])
    history = "".join(f"Action: {s.action}\nObservation: {s.observation}\n" for s in steps[history_start:index])
    current = steps[index]
    return VERIFIER_PROMPT.format(task=tree.first_observation, history=history, action=current.action,
                                  observation=current.observation)


def _verifier_conversation(tree: Tree, bad: Path, index: int, fits) -> list[dict]:
    # One user message (plus the usual system prompt). The official code cuts the history 6 characters at a time
    # from the front while it is too long; we drop whole steps from the front instead.
    start = 0
    while True:
        conv = [message("system", SYSTEM_PROMPT), message("user", verifier_prompt(tree, bad, index, start))]
        if fits is None or fits(conv) or start >= index:
            return conv
        start += 1


VERDICTS = ("Good", "Bad", "Uncertain")


def critique_job(tree: Tree, good: Path, bad: Path, verifier_temperature: float, rng: random.Random,
                 fits: Callable[[list[dict]], bool] | None = None, max_new_tokens: int | None = None,
                 seed: int | None = None, force_verdict: bool = False) -> Generator[Request, list[str], Critique]:
    """Walk the bad path from its divergence from the good path; t' = the first step judged bad (or unparsable).

    Paper: the walk starts at the divergence (steps shared with the good path are not judged). The official code
    judges from the first action, so a flagged shared step can happen there (`splice` still handles it).
    `seed` (the pair's) seeds the verifier's reply at each step. The reply is read whole (stop "none"): the agent's
    stop rule would end it at the first quoted "Action:" line, before its verdict. `force_verdict`: a reply without a
    verdict gets "Judgment:" appended and the verifier's most likely verdict word after it (small verifiers).
    """
    critique = Critique(t_prime=len(bad.nodes), thought=rng.choice(REVISION_THOUGHTS))
    for index in range(shared_prefix(good, bad), len(bad.nodes)):
        conv = _verifier_conversation(tree, bad, index, fits)
        (reply,) = yield Request(conv, num_samples=1, temperature=verifier_temperature, max_new_tokens=max_new_tokens,
                                 seed=None if seed is None else derive_seed(seed, index), stop="none")
        verdict, source = parse_verdict(reply), "parsed"
        if verdict == "unparsable" and force_verdict:
            (chosen,) = yield Request(conv, choices=VERDICTS, reply_prefix=reply.rstrip() + "\nJudgment:")
            verdict, source = chosen.lower(), "chosen"
        critique.verdicts.append(verdict)
        critique.replies.append(reply)
        critique.sources.append(source)
        if verdict not in ("good", "uncertain"):
            critique.t_prime = index + 1
            break
    return critique


# ---------------------------------------------------------------------------------------------------------
# splice


def revision_turn(thought: str, layout: str = "compact") -> list[dict]:
    """The revision turn, in the reply layout the env's instruction asks for (trajectory.REPLY_LAYOUTS)."""
    return [message("assistant", format_reply(thought, REVISION_ACTION, layout), loss=True),
            message("user", REVISION_OBSERVATION)]


def splice(tree: Tree, good: Path, bad: Path, t_prime: int, thought: str, layout: str = "compact") -> list[dict]:
    """Preamble / bad steps 1..t' (no loss) / revision turn (loss) / good continuation (loss on agent turns).

    The good continuation starts at the node after the shared prefix. If t' lies inside the shared prefix, it
    starts right after the truncated bad prefix instead (official behaviour: the code skips good nodes while
    they equal the kept bad prefix), so no good step is lost.
    """
    resume = min(t_prime, shared_prefix(good, bad))
    return (preamble(tree.instruction, tree.first_observation)
            + step_messages(tree.steps(bad.nodes[:t_prime]), loss=False)
            + revision_turn(thought, layout)
            + step_messages(tree.steps(good.nodes[resume:]), loss=True))


def path_messages(tree: Tree, path: Path) -> list[dict]:
    """A good-only sample: loss on every agent turn (not on the preamble's "Ok.")."""
    return preamble(tree.instruction, tree.first_observation) + step_messages(tree.steps(path.nodes), loss=True)


# ---------------------------------------------------------------------------------------------------------
# building the data set


def _sample(tree: Tree, messages: list[dict], kind: str, good: Path, bad: Path | None = None,
            critique: Critique | None = None) -> dict:
    return {"messages": messages, "kind": kind, "env": tree.env, "task_id": tree.task_id, "good_leaf": good.leaf,
            "bad_leaf": bad.leaf if bad else None, "t_prime": critique.t_prime if critique else None,
            "revision_length": critique.t_prime if critique else None,
            "verdicts": list(critique.verdicts) if critique else [],
            # provenance: what the verifier wrote at each judged step, and whether its verdict was read or chosen
            "critique_replies": list(critique.replies) if critique else [],
            "verdict_sources": list(critique.sources) if critique else []}


def _path_samples(tree: Tree, paths: list[Path], method: str, alpha: float, include_good: bool) -> list[dict]:
    """A method's good-only samples: r = 1 paths as "optimal" for the Optimal methods, the other (or, for the rest,
    all) paths with r >= alpha as "good" where the method keeps them."""
    keeps_good = method in ("optimal_good", "eto") or (include_good and method in ("agent_r", "direct_revision"))
    out = []
    for p in good_paths(paths, alpha if method != "optimal" else 1.0):
        if method in ("optimal", "optimal_good") and p.score >= 1.0 - EPS:
            out.append(_sample(tree, path_messages(tree, p), "optimal", p))
        elif keeps_good:
            out.append(_sample(tree, path_messages(tree, p), "good", p))
    return out


def _pair_rng(seed: int, tree: Tree, good: Path, bad: Path) -> random.Random:
    # per pair, so the thought drawn does not depend on the order in which batched critiques finish
    return random.Random(derive_seed(seed, tree.env, tree.task_id, good.leaf, bad.leaf))


def _empty_stats() -> dict:
    return {"trees": 0, "trees_skipped": 0, "paths": 0, "good_paths": 0, "pairs": 0, "revision": 0,
            "direct_revision": 0, "good": 0, "optimal": 0, "no_bad": 0, "mean_revision_length": None,
            "verdicts": {"good": 0, "bad": 0, "uncertain": 0, "unparsable": 0},
            "verdict_sources": {"parsed": 0, "chosen": 0}}


def build_revision_samples(trees: list[Tree | dict], policy: Policy | None, revision: RevisionCfg, method: str,
                           alpha: float, seed: int = 0, fits: Callable[[list[dict]], bool] | None = None,
                           progress: bool = False, layouts: dict[str, str] | None = None) -> tuple[list[dict], dict]:
    """Training samples from search trees, and per-env counts (PAPER.md Table 1, Figure 5).

    `method` is the variant's data recipe (module docstring); `revision` gives β, whether good paths are kept, the
    verifier's sampling and the pair cap (`max_pairs_per_tree`: a seeded sample of a tree's pairs, kept in pair
    order; None takes every qualifying pair, as the paper does); `alpha` is this iteration's α. `policy` is the
    verifier (the current actor); only "agent_r" calls it, with prompts that `fits` accepts. Samples come out in a
    fixed order (tree order; per tree: revision samples pair by pair, then path samples), deterministic given `seed`
    and a deterministic policy. `layouts`: each env's reply layout (its `prompt` kwarg; default compact), which the
    revision turn follows.
    """
    trees = [Tree.from_dict(t) if isinstance(t, dict) else t for t in trees]
    stats: dict[str, dict] = {}
    pairs: list[tuple[int, Tree, Path, Path]] = []
    path_samples: dict[int, list[dict]] = {}
    for i, tree in enumerate(trees):
        s = stats.setdefault(tree.env, _empty_stats())
        tree_pairs, path_samples[i] = _pairs_and_paths(tree, revision, method, alpha, seed, s)
        if method in ("agent_r", "direct_revision"):
            pairs += [(i, tree, g, b) for g, b in tree_pairs]

    critiques = _critiques([p[1:] for p in pairs], policy, method, seed, revision, progress, fits)
    revision_samples: dict[int, list[dict]] = {}
    kind = "revision" if method == "agent_r" else "direct_revision"
    for (i, tree, good, bad), critique in zip(pairs, critiques):
        layout = (layouts or {}).get(tree.env, "compact")
        sample = _sample(tree, splice(tree, good, bad, critique.t_prime, critique.thought, layout), kind, good, bad,
                         critique)
        revision_samples.setdefault(i, []).append(sample)
        s = stats[tree.env]
        for verdict, source in zip(critique.verdicts, critique.sources):
            s["verdicts"][verdict] += 1
            s["verdict_sources"][source] += 1
        # the verifier passed every step: t' falls back to the end of the bad path (= a direct revision)
        s["no_bad"] += kind == "revision" and all(v in ("good", "uncertain") for v in critique.verdicts)

    samples = [x for i in range(len(trees)) for x in revision_samples.get(i, []) + path_samples.get(i, [])]
    for env, s in stats.items():
        _count_samples(s, [x for x in samples if x["env"] == env])
    return samples, stats


def _pairs_and_paths(tree: Tree, revision: RevisionCfg, method: str, alpha: float, seed: int,
                     s: dict) -> tuple[list[tuple[Path, Path]], list[dict]]:
    """One tree's (good, bad) pairs (capped by `max_pairs_per_tree`) and its path samples; counts go into `s`."""
    s["trees"] += 1
    if tree.root.value <= 0:  # no leaf rewarded: nothing good to learn from (official: skip the tree)
        s["trees_skipped"] += 1
        return [], []
    paths = leaf_paths(tree)
    pairs = tree_pairs(tree, paths, revision, alpha, seed)
    s["paths"] += len(paths)
    s["good_paths"] += len(good_paths(paths, alpha))
    s["pairs"] += len(pairs)
    return pairs, _path_samples(tree, paths, method, alpha, revision.include_good)


def tree_pairs(tree: Tree, paths: list[Path], revision: RevisionCfg, alpha: float,
               seed: int) -> list[tuple[Path, Path]]:
    """A tree's qualifying (good, bad) pairs; at most `max_pairs_per_tree`, a seeded sample kept in pair order."""
    pairs = make_pairs(paths, alpha, revision.beta)
    cap = revision.max_pairs_per_tree
    if cap is not None and len(pairs) > cap:
        keep = random.Random(derive_seed(seed, tree.env, tree.task_id)).sample(range(len(pairs)), cap)
        pairs = [pairs[j] for j in sorted(keep)]
    return pairs


def preference_pair(tree: Tree, good: Path, bad: Path) -> dict:
    """ETO's preference sample: the conversation up to where the paths part (prompt), then each one's continuation:
    the good path's (chosen) and the bad path's (rejected), agent turns and observations alternating."""
    shared = shared_prefix(good, bad)
    prompt = preamble(tree.instruction, tree.first_observation) + step_messages(tree.steps(good.nodes[:shared]),
                                                                                loss=False)
    return {"prompt": prompt, "chosen": step_messages(tree.steps(good.nodes[shared:]), loss=True),
            "rejected": step_messages(tree.steps(bad.nodes[shared:]), loss=True), "env": tree.env,
            "task_id": tree.task_id, "good_leaf": good.leaf, "bad_leaf": bad.leaf, "good_score": good.score,
            "bad_score": bad.score}


def preference_pairs(trees: list[Tree | dict], revision: RevisionCfg, alpha: float, seed: int = 0) -> list[dict]:
    """ETO's good/bad pairs of every tree with a rewarded leaf: the same pairs (and cap) the revision methods use."""
    out = []
    for tree in (Tree.from_dict(t) if isinstance(t, dict) else t for t in trees):
        if tree.root.value > 0:
            out += [preference_pair(tree, g, b) for g, b in tree_pairs(tree, leaf_paths(tree), revision, alpha, seed)]
    return out


def _count_samples(s: dict, samples: list[dict]) -> None:
    """An env's sample counts by kind, the paper's Table 1 columns, and the mean revision length (Figure 5)."""
    counts = Counter(x["kind"] for x in samples)
    for k in ("revision", "direct_revision", "good", "optimal"):
        s[k] = counts[k]
    lengths = [x["revision_length"] for x in samples if x["revision_length"] is not None]
    s["mean_revision_length"] = sum(lengths) / len(lengths) if lengths else None
    s["revision_samples"] = s["revision"] + s["direct_revision"]
    s["good_samples"] = s["good"] + s["optimal"]


def _critiques(pairs, policy, method, seed, revision: RevisionCfg, progress, fits) -> list[Critique]:
    """One Critique per pair, in pair order: by the verifier for "agent_r", at the end of the bad path otherwise."""
    if method != "agent_r":
        return [Critique(t_prime=len(bad.nodes), thought=_pair_rng(seed, tree, good, bad).choice(REVISION_THOUGHTS))
                for tree, good, bad in pairs]
    if pairs and policy is None:
        raise ValueError("method 'agent_r' needs a policy to act as the verifier")

    def job(i, tree, good, bad):
        critique = yield from critique_job(tree, good, bad, revision.verifier_temperature,
                                           _pair_rng(seed, tree, good, bad), fits, revision.verifier_max_new_tokens,
                                           derive_seed(seed, tree.env, tree.task_id, good.leaf, bad.leaf, "verifier"),
                                           revision.force_verdict)
        return i, critique

    done = run_jobs((job(i, *p) for i, p in enumerate(pairs)), policy, in_flight=revision.critiques_in_flight,
                    progress="critique" if progress else None, total=len(pairs))
    return [c for _, c in sorted(done, key=lambda r: r[0])]
