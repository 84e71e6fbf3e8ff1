"""Held-out evaluation: episodes, scores with confidence intervals, error recovery, loop statistics.

Scores follow the paper (PAPER.md step 6): an episode's score is the reward of its last step (a negative reward
ends it with score 0); WebShop and SciWorld report the average score ×100, TextCraft the success rate %.
"""
from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .batching import Policy, Request, derive_seed, env_pools, run_jobs
from .config import ConfigError, EvaluateCfg
from .envs.base import TextEnv
from .files import CorruptArtefact, is_readable, read_json, write_json
from .trajectory import Episode, Step, conversation, parse_action

MAX_LOOP_LENGTH = 5  # longest repeated action block counted (the paper's Figure 4 shows lengths 1-5)


def episode_job(env: TextEnv, task_id: int, max_rounds: int, temperature: float = 1.0,
                prefix: list[Step] | None = None, seed: int | None = None) -> Generator[Request, list[str], Episode]:
    """Play one episode with the policy; `prefix` replays given steps first (error-recovery evaluation).

    At test time "Action: wait" goes to the env like any other action (PAPER.md step 6). `seed` (the episode's)
    seeds each round's reply.
    """
    first = env.reset(task_id)
    episode = Episode(env=env.name, task_id=task_id, first_observation=first)
    for step in prefix or []:
        result = env.step(step.action)
        episode.steps.append(Step(step.response, step.action, result.observation, result.reward, result.done))
    for round_ in range(max_rounds):
        if episode.steps and episode.steps[-1].done:
            break
        (reply,) = yield Request(conversation(env.instruction, first, episode.steps), 1, temperature,
                                 seed=None if seed is None else derive_seed(seed, round_))
        action = parse_action(reply)
        result = env.step(action)
        failed = result.reward < 0
        episode.steps.append(Step(reply, action, result.observation, result.reward, result.done or failed))
    last = episode.steps[-1].reward if episode.steps else 0.0
    episode.score = max(0.0, float(last))
    episode.success = episode.score >= 1.0
    return episode


def recovery_prefix(episode: Episode, seed: int) -> list[Step]:
    """Cut a failed episode at a random step (Table 3): the agent continues from there.

    The cut drops at least one step, so the continued episode never starts finished, and keeps at least one where
    it can; seeded per task so that every evaluated actor continues from the same point.
    """
    n = len(episode.steps)
    if n < 2:
        # A one-step failure has no step to keep *and* one to drop: kept whole, its last (done) step would make the
        # continuation a sure 0. It is continued from the start instead: the actor plays the first observation.
        return []
    rng = random.Random(f"{seed}-{episode.env}-{episode.task_id}")
    return list(episode.steps[:rng.randint(1, n - 1)])


# --- a stage's episodes -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EpisodePlan:
    """One episode to play: which task of which env, where its file goes, how many rounds it may take, and (error
    recovery) the steps it starts from."""
    env: str
    task_id: int
    out_dir: Path
    max_rounds: int
    prefix: tuple[Step, ...] = ()
    seed: int | None = None  # the episode's replies are drawn from streams seeded by it (`episode_job`)

    @property
    def path(self) -> Path:
        return self.out_dir / f"{self.task_id}.json"


def play_episodes(plans: list[EpisodePlan], policy: Policy, make_env: Callable[[str], TextEnv], temperature: float,
                  in_flight: int, label: str = "evaluate") -> None:
    """Play the plans together (one batched generate call serves every episode in flight); one file per episode,
    so a killed run resumes with the episodes whose file is missing (or unreadable)."""
    todo = [p for p in plans if not is_readable(p.path, load_episode)]  # an unreadable file: played again

    def play(pool, plan: EpisodePlan):
        episode = yield from pool.borrowing(episode_job, plan.task_id, plan.max_rounds, temperature, list(plan.prefix),
                                            plan.seed)
        write_json(plan.path, episode.to_dict())

    with env_pools({p.env for p in todo}, make_env) as pools:
        run_jobs((play(pools[p.env], p) for p in todo), policy, in_flight=in_flight, progress=label, total=len(todo))


NO_FAILURE_NOTE = "the baseline failed no task of this env"


def recovery_plans(baseline_dir: Path, envs: Iterable[str], out_dir: Path, max_rounds: int,
                   seed: int) -> list[EpisodePlan]:
    """Table 3: the baseline's failed episodes, cut at a random step, to be continued by the actor under test.

    A missing baseline raises ConfigError: without it there would be no plan, and the metrics would read n = 0 as
    if the baseline had failed nothing. A baseline that failed nothing gives no plan for that env (legitimately).
    """
    plans = []
    for env in envs:
        for ep in baseline_episodes(baseline_dir, env):
            if ep.score <= 0:
                cut = recovery_prefix(ep, seed)
                plans.append(EpisodePlan(env, ep.task_id, out_dir / env, max_rounds, tuple(cut),
                                         derive_seed(seed, env, ep.task_id, "recovery", len(cut))))
    return plans


def baseline_episodes(baseline_dir: Path, env: str) -> list[Episode]:
    """The baseline's episodes of `env`; ConfigError (one line, naming the folder) when there are none."""
    folder = Path(baseline_dir) / env
    if not Path(baseline_dir).is_dir():
        raise ConfigError(f"error recovery continues the baseline's failures, but {baseline_dir} does not exist: "
                          "run 00_baseline first")
    episodes = load_episodes(folder) if folder.is_dir() else []
    if not episodes:  # an empty folder is a baseline that never played this env, too
        raise ConfigError(f"error recovery continues the baseline's failures, but the baseline has no {env} "
                          f"episode ({folder}): 00_baseline must run with {env} first")
    return episodes


def evaluate_actor(policy: Policy, tasks: dict[str, list[int]], make_env: Callable[[str], TextEnv],
                   settings: EvaluateCfg, out_dir: Path, baseline_dir: Path, seed: int) -> dict:
    """Held-out episodes of every env's test `tasks` (files under `out_dir/<env>/`), error recovery of the baseline's
    failures (`out_dir/recovery/<env>/`), and the metrics of both.

    When `out_dir` is the baseline itself, its failures are known only after its episodes: recovery runs second;
    otherwise the recovery episodes (whose starting points are known) ride along with the test episodes.
    """
    def play(plans, label):
        play_episodes(plans, policy, make_env, settings.temperature, settings.episodes_in_flight, label)

    def recovery():
        return recovery_plans(baseline_dir, tasks, out_dir / "recovery", settings.recovery_max_rounds, seed)

    is_baseline = Path(out_dir) == Path(baseline_dir)
    test = [EpisodePlan(env, t, out_dir / env, settings.max_rounds, seed=derive_seed(seed, env, t, "test"))
            for env, ids in tasks.items() for t in ids]
    rescue = recovery() if settings.recovery and not is_baseline else []
    play(test + rescue, "evaluate")
    if settings.recovery and is_baseline:
        rescue = recovery()
        play(rescue, "recovery")
    metrics = summarize({env: load_episodes(out_dir / env) for env in tasks}, seed)
    if settings.recovery:
        metrics["recovery"] = summarize({env: load_episodes(out_dir / "recovery" / env) for env in tasks}, seed)
        for env in set(tasks) - {p.env for p in rescue}:  # n = 0 here is a result, not a missing baseline
            metrics["recovery"]["envs"][env]["note"] = NO_FAILURE_NOTE
    return metrics


# --- loops ------------------------------------------------------------------------------------------------------
def find_loops(actions: list[str], max_length: int = MAX_LOOP_LENGTH) -> list[tuple[int, int]]:
    """Back-to-back repeats of an action block, as (block length L, repetitions k ≥ 2).

    Our exact reading of the paper's Figure 4 ("a sequence length of 2 with an average count of 5 means the agent
    repeats the same sequence of two actions 5 times"): a loop of length L is a block of L actions that occurs k ≥ 2
    times *consecutively*; the block must be primitive (not itself a repeat of a shorter block, so "a a a a" is one
    loop of length 1 with k = 4, not also a loop of length 2); a run is counted once, at its maximal k.
    """
    loops = []
    for length in range(1, max_length + 1):
        i = 0
        while i + 2 * length <= len(actions):
            block = actions[i:i + length]
            k = 1
            while actions[i + k * length:i + (k + 1) * length] == block:
                k += 1
            if k >= 2 and _is_primitive(block):
                loops.append((length, k))
                i += k * length
            else:
                i += 1
    return loops


def _is_primitive(block: list[str]) -> bool:
    n = len(block)
    return not any(n % d == 0 and block == block[:d] * (n // d) for d in range(1, n))


def loop_stats(episodes: list[Episode], max_length: int = MAX_LOOP_LENGTH) -> dict:
    """Per block length: loops found, their mean repetition count, and the share of episodes that have one."""
    counts = defaultdict(list)  # length -> repetition counts of every loop of that length
    episodes_with = defaultdict(int)  # length -> episodes with at least one loop of that length
    with_any = 0
    for ep in episodes:
        loops = find_loops(ep.actions, max_length)
        with_any += bool(loops)
        for length in {L for L, _ in loops}:
            episodes_with[length] += 1
        for length, k in loops:
            counts[length].append(k)
    n = max(len(episodes), 1)
    by_length = {str(L): {"loops": len(counts[L]),
                          "mean_count": float(np.mean(counts[L])) if counts[L] else 0.0,
                          "episodes_share": episodes_with[L] / n}
                 for L in range(1, max_length + 1)}
    return {"loop_rate": with_any / n, "loops_by_length": by_length}


# --- metrics ----------------------------------------------------------------------------------------------------
def bootstrap_ci(values: list[float], seed: int = 0, resamples: int = 2000, level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval of the mean (small test sets: a normal approximation is poor at 0 or 1)."""
    if not values:
        return [0.0, 0.0]
    x = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return [float(lo), float(hi)]


def env_metrics(episodes: list[Episode], env: str, seed: int = 0) -> dict:
    """One env's numbers on the paper's scale: success % for TextCraft, average reward ×100 otherwise."""
    values = [float(ep.success) if env == "textcraft" else ep.score for ep in episodes]
    revisions = [sum(a.strip().lower() == "wait" for a in ep.actions) for ep in episodes]
    return {
        "score": 100 * float(np.mean(values)) if values else 0.0,
        "ci": [100 * v for v in bootstrap_ci(values, seed)],
        "n": len(episodes),
        "metric": "success rate %" if env == "textcraft" else "average reward x100",
        "success_rate": 100 * float(np.mean([ep.success for ep in episodes])) if episodes else 0.0,
        "turns": float(np.mean([len(ep.steps) for ep in episodes])) if episodes else 0.0,
        "revision_turns": float(np.mean(revisions)) if revisions else 0.0,
        **loop_stats(episodes),
    }


def summarize(per_env: dict[str, list[Episode]], seed: int = 0) -> dict:
    envs = {env: env_metrics(eps, env, seed) for env, eps in per_env.items()}
    return {"envs": envs, "average": average_score(envs)}


def average_score(envs: dict[str, dict]) -> float | None:
    """The mean of the envs' scores, over the envs that have episodes: an env with none (recovery, where the
    baseline failed no task of it) measured nothing, and a 0 for it would pull the average down. None: no env has."""
    scores = [m["score"] for m in envs.values() if m["n"] > 0]
    return float(np.mean(scores)) if scores else None


def load_episode(path: str | Path) -> Episode:
    """A saved episode; CorruptArtefact (naming the file and how to redo it) when it is not one."""
    d = read_json(path)
    try:
        return Episode.from_dict(d)
    except (KeyError, TypeError, AttributeError) as err:
        raise CorruptArtefact(path, f"not an episode: {type(err).__name__}: {err}") from None


def load_episodes(folder: str | Path) -> list[Episode]:
    return [load_episode(p) for p in sorted(Path(folder).glob("*.json"))]
