"""The stages of the loop, one function each; every notebook calls exactly one of them.

Layout of a run (DESIGN.md):
    results/<run>/warmstart/              adapter/ (small models only)
    results/<run>/iter_0/eval/            baseline episodes + metrics.json
    results/<run>/iter_k/trees/<env>/     MCTS trees, one JSON per task
    results/<run>/iter_k/data/            revision + good samples (HF dataset) + metrics.json
    results/<run>/iter_k/train/adapter/   the actor after iteration k (checkpoints beside it)
    results/<run>/iter_k/eval/<env>/      held-out episodes + metrics.json
    results/<run>/report/                 tables and figures
A stage is done when its DONE.json exists; its params.json pins the params it was made with, so a re-run skips
done stages and refuses to mix outputs of different params.
"""
from __future__ import annotations

import platform
import time
from contextlib import contextmanager
from pathlib import Path

from .config import Config, ConfigError, load_config
from .trajectory import read_json, write_json_atomic

# Knobs that change speed, not results: a resumed run may change them freely.
THROUGHPUT_KEYS = {"trees_in_flight", "episodes_in_flight", "critiques_in_flight", "generate_batch_size",
                   "prefix_cache_mb"}


# --- bookkeeping --------------------------------------------------------------------------------------------
def stage_dir(cfg: Config, name: str, iteration: int | None = None) -> Path:
    base = cfg.run_dir if iteration is None else cfg.run_dir / f"iter_{iteration}"
    return base / name


def params_fingerprint(cfg: Config) -> dict:
    """The params that shape results (not the run's name, its length, or throughput knobs)."""
    def strip(d):
        return {k: strip(v) if isinstance(v, dict) else v for k, v in d.items() if k not in THROUGHPUT_KEYS}
    d = strip(cfg.to_dict())
    for k in ("run_name", "results_dir", "iterations"):
        d.pop(k)
    return d


def is_done(folder: Path) -> bool:
    return (folder / "DONE.json").exists()


def require_done(folder: Path, message: str) -> None:
    """An upstream stage must have finished before this one reads its outputs."""
    if not is_done(folder):
        raise ConfigError(message)


def check_params(folder: Path, cfg: Config) -> None:
    """Refuse, with one clear message, when `folder` holds outputs made with other params."""
    pinned = folder / "params.json"
    if not pinned.exists():
        return
    theirs, mine = read_json(pinned), params_fingerprint(cfg)
    if theirs != mine:
        changed = sorted(k for k in mine if theirs.get(k) != mine[k])
        raise ConfigError(f"{folder} was made with other params (differing sections: {', '.join(changed)}); "
                          f"set run_name to a new name, or delete {folder} to redo it")


def claim(folder: Path, cfg: Config) -> None:
    """Pin `folder` to these params (after checking it holds nothing made with other params)."""
    check_params(folder, cfg)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "params.json", params_fingerprint(cfg))


@contextmanager
def stage(cfg: Config, folder: Path, **counts):
    """Claim the folder, time the work, write DONE.json at the end (only when the body finished)."""
    claim(folder, cfg)
    start = time.time()
    info: dict = dict(counts)
    yield info
    info.update(seconds=round(time.time() - start, 1), versions=_versions(), finished=time.strftime("%F %T"))
    write_json_atomic(folder / "DONE.json", info)


def _versions() -> dict:
    import torch
    import transformers
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}


def load(params_file: str | Path, overrides: dict | None = None) -> Config:
    """Load params; a relative results_dir is taken from the project root (the folder above params/)."""
    cfg = load_config(params_file, overrides)
    if not Path(cfg.results_dir).is_absolute():
        root = Path(params_file).resolve().parent.parent
        cfg.results_dir = str(root / cfg.results_dir)
    return cfg


# --- actors -------------------------------------------------------------------------------------------------
def actor_settings(cfg: Config):
    from .actor import ActorSettings
    m = cfg.model
    return ActorSettings(model=m.name, quantization=m.quantization, compute_dtype=m.compute_dtype, device=m.device,
                         max_context_tokens=m.max_context_tokens, max_new_tokens=m.max_new_tokens,
                         generate_batch_size=m.generate_batch_size, prefix_cache_mb=m.prefix_cache_mb,
                         lora_r=m.lora_r, lora_alpha=m.lora_alpha, lora_dropout=m.lora_dropout, seed=cfg.seed)


def adapter_of(cfg: Config, iteration: int) -> Path | None:
    """The actor after `iteration` (0 = the starting actor: warm-started or the base model)."""
    if iteration == 0 and not cfg.warmstart.enabled:
        return None
    path = (stage_dir(cfg, "train", iteration) if iteration > 0 else stage_dir(cfg, "warmstart")) / "adapter"
    if not path.exists():
        raise ConfigError(f"the actor of iteration {iteration} is missing ({path}); run the earlier stages first")
    return path


def load_actor_at(cfg: Config, iteration: int, trainable: bool = False):
    from .actor import load_actor
    adapter = adapter_of(cfg, iteration)
    return load_actor(actor_settings(cfg), adapter=str(adapter) if adapter else None, trainable=trainable)


def make_env_for(cfg: Config, name: str):
    from .envs import make_env
    return make_env(name, **cfg.tasks_for(name).env_kwargs)


def tasks_of(cfg: Config, env_name: str, split: str) -> list[int]:
    from .envs import select_tasks
    env = make_env_for(cfg, env_name)
    try:
        n = getattr(cfg.tasks_for(env_name), split)
        return select_tasks(env, split, n, seed=cfg.seed)
    finally:
        env.close()


# --- 00 warm-start ----------------------------------------------------------------------------------------------
def demo_samples(env, demo, fits) -> list[dict]:
    """A scripted expert episode as training conversations (loss on every agent turn).

    Training keeps a conversation's first max_length tokens, so a long episode (a WebShop session, a SciWorld
    protocol) would never teach its later actions (the click on a result, the Buy). A conversation that does not
    `fit` is cut into windows trimmed as the actor's own context is at inference (old turns dropped,
    `trim_context`) that together hold every action (`covering_windows`); the first is kind "demo", the rest
    "demo_window".
    """
    from .trajectory import Step, conversation
    first = env.reset(demo.task_id)
    steps = []
    for thought, action in zip(demo.thoughts, demo.actions):
        result = env.step(action)
        steps.append(Step(f"Thought: {thought}\nAction: {action}", action, result.observation, result.reward,
                          result.done))
    messages = conversation(env.instruction, first, steps, loss=True)
    sample = {"messages": messages, "kind": "demo", "env": env.name, "task_id": demo.task_id}
    return fitted(sample, fits, window_kind="demo_window")


def fitted(sample: dict, fits, window_kind: str | None = None) -> list[dict]:
    """`sample` as it is if its messages `fit`, else the windows that together train each of its trained turns
    (`covering_windows`: old turns dropped as in the actor's context at inference). Training keeps a conversation's
    first max_length tokens, so without this a long sample would lose its last turns — for a revision sample, the
    revision turn and the good continuation, i.e. all it teaches. Windows after the first get `window_kind` if given;
    each says which it is (`window`). Samples that are not agent episodes (general chat data) are left alone."""
    if sample.get("kind") == "general" or fits(sample["messages"]):
        return [sample]
    from .trajectory import covering_windows
    return [{**sample, "messages": window, "window": i,
             "kind": window_kind if i and window_kind else sample["kind"]}
            for i, window in enumerate(covering_windows(sample["messages"], fits))]


def warmstart(cfg: Config) -> dict:
    """Teach a small model the action format from a few scripted demonstrations (off in the paper's settings)."""
    folder = stage_dir(cfg, "warmstart")
    if is_done(folder):
        return read_json(folder / "DONE.json")
    if not cfg.warmstart.enabled:
        return {"skipped": "warmstart.enabled is false"}
    from .envs import select_tasks
    w = cfg.warmstart
    max_length = w.max_length or cfg.train.max_length
    with stage(cfg, folder) as info:
        actor = _load_base_trainable(cfg)
        fits = lambda messages: actor.count_tokens(messages) <= max_length  # noqa: E731
        samples = []
        for name in cfg.envs:
            env = make_env_for(cfg, name)
            try:
                used = set(select_tasks(env, "train", cfg.tasks_for(name).train, seed=cfg.seed))
                pool = [t for t in env.task_ids("train") if t not in used]  # demos never show an MCTS task
                demos = cfg.tasks_for(name).demos or w.demos_per_env
                chosen = select_tasks(_Subset(env, pool), "train", demos, seed=cfg.seed + 1)
                samples += [s for t in chosen for s in demo_samples(env, env.demonstrate(t), fits)]
            finally:
                env.close()
        info.update(demos=sum(s["kind"] == "demo" for s in samples))
        info.update(_train(cfg, samples, folder, iteration=0, epochs=w.epochs, learning_rate=w.learning_rate,
                           grad_accum=w.grad_accum, max_length=max_length, actor=actor))
    return info


class _Subset:
    """An env seen through a restricted train pool (for task selection only)."""
    def __init__(self, env, pool):
        self.env, self.pool = env, pool

    def task_ids(self, split):
        return self.pool


# --- 01 collect -----------------------------------------------------------------------------------------------
def collect(cfg: Config, iteration: int) -> dict:
    """MCTS with the actor of iteration-1 on every env's training tasks; one tree file per task (resumable)."""
    from .mcts import MCTSSettings, collect_trees
    folder = stage_dir(cfg, "trees", iteration)
    if is_done(folder):
        return read_json(folder / "DONE.json")
    m = cfg.mcts
    settings = MCTSSettings(simulations=m.simulations, candidates=m.candidates, temperature=m.temperature,
                            max_depth=m.max_depth, c_uct=m.c_uct, max_new_tokens=cfg.model.max_new_tokens)
    with stage(cfg, folder) as info:
        actor = load_actor_at(cfg, iteration - 1)
        tasks = {name: tasks_of(cfg, name, "train") for name in cfg.envs}
        info.update(collect_trees(tasks, lambda name: make_env_for(cfg, name), actor, settings, folder,
                                  seed=cfg.seed + 1000 * iteration, in_flight=m.trees_in_flight))
    return info


# --- 02 revise ------------------------------------------------------------------------------------------------
def revise(cfg: Config, iteration: int) -> dict:
    """Pairs, self-critique with the current actor, splices → the iteration's training data (HF dataset)."""
    from .data import save_data
    from .mcts import Tree
    from .revision import build_revision_samples
    folder = stage_dir(cfg, "data", iteration)
    if is_done(folder):
        return read_json(folder / "DONE.json")
    trees_dir = stage_dir(cfg, "trees", iteration)
    require_done(trees_dir, f"no finished trees for iteration {iteration}: run 01_collect first")
    trees = [Tree.from_dict(read_json(p)) for name in cfg.envs for p in sorted((trees_dir / name).glob("*.json"))]
    actor = load_actor_at(cfg, iteration - 1)
    r = cfg.revision
    with stage(cfg, folder) as info:
        budget = cfg.model.max_context_tokens - r.verifier_max_new_tokens
        samples, stats = build_revision_samples(
            trees, actor, variant=r.variant, alpha=cfg.alpha_at(iteration), beta=r.beta, include_good=r.include_good,
            seed=cfg.seed + iteration, verifier_temperature=r.verifier_temperature, in_flight=r.critiques_in_flight,
            progress=True, fits=lambda messages: actor.count_tokens(messages) <= budget,
            max_new_tokens=r.verifier_max_new_tokens, max_pairs_per_tree=r.max_pairs_per_tree)
        if samples:
            save_data(samples, folder / "dataset")
        for s in stats.values():  # the paper's Table 1 columns
            s["revision_samples"] = s["revision"] + s["direct_revision"]
            s["good_samples"] = s["good"] + s["optimal"]
        write_json_atomic(folder / "metrics.json", {"iteration": iteration, "alpha": cfg.alpha_at(iteration),
                                                    "variant": r.variant, "envs": stats})
        info.update(samples=len(samples))
    return info


# --- 03 train -------------------------------------------------------------------------------------------------
def train(cfg: Config, iteration: int) -> dict:
    """Masked SFT of the actor of iteration-1 on this iteration's data (+ general data, η)."""
    from .data import load_data, load_general_data, mix_general
    folder = stage_dir(cfg, "train", iteration)
    if is_done(folder):
        return read_json(folder / "DONE.json")
    data_dir = stage_dir(cfg, "data", iteration)
    require_done(data_dir, f"no training data for iteration {iteration}: run 02_revise first")
    samples = list(load_data(data_dir / "dataset")) if (data_dir / "dataset").exists() else []
    with stage(cfg, folder, agent_samples=len(samples)) as info:
        actor = load_actor_at(cfg, iteration - 1, trainable=True)
        fits = lambda messages: actor.count_tokens(messages) <= cfg.train.max_length  # noqa: E731
        samples = [w for s in samples for w in fitted(s, fits)]
        info.update(agent_windows=len(samples))
        if cfg.train.general_data:
            samples = mix_general(samples, load_general_data(cfg.train.general_data), cfg.train.eta, cfg.seed)
        info.update(_train(cfg, samples, folder, iteration, epochs=cfg.epochs_at(iteration),
                           learning_rate=cfg.train.learning_rate, actor=actor))
    return info


def _train(cfg: Config, samples: list[dict], folder: Path, iteration: int, epochs: int, learning_rate: float,
           grad_accum: int | None = None, max_length: int | None = None, actor=None) -> dict:
    """Continue the actor of iteration-1 (or `actor`, the base model for warm-start) and publish its adapter."""
    from .train import TrainSettings, train_sft
    if actor is None:
        actor = load_actor_at(cfg, iteration - 1, trainable=True)
    if not samples:  # nothing to learn from: the actor stays as it was (reported, not hidden)
        actor.save_adapter(folder / "adapter")
        return {"samples": 0, "note": "no training samples; adapter copied unchanged"}
    t = cfg.train
    settings = TrainSettings(epochs=epochs, learning_rate=learning_rate, batch_size=t.batch_size,
                             grad_accum=grad_accum or t.grad_accum, max_length=max_length or t.max_length,
                             warmup_ratio=t.warmup_ratio, lr_scheduler=t.lr_scheduler, seed=cfg.seed)
    metrics = train_sft(actor.model, actor.tokenizer, samples, settings, folder)
    return {"samples": len(samples), **{k: v for k, v in metrics.items() if not isinstance(v, list)}}


def _load_base_trainable(cfg: Config):
    from .actor import load_actor
    return load_actor(actor_settings(cfg), adapter=None, trainable=True)


# --- 04 evaluate ----------------------------------------------------------------------------------------------
def evaluate(cfg: Config, iteration: int) -> dict:
    """Held-out episodes with the actor of `iteration` (0 = baseline), and error recovery on baseline failures.

    Episodes of every env are in flight together, so one batched generate call serves all of them; after the
    baseline, the recovery episodes (whose starting points are known) ride along too.
    """
    from .evaluate import load_episodes, summarize
    folder = stage_dir(cfg, "eval", iteration)
    if is_done(folder):
        return read_json(folder / "metrics.json")
    e = cfg.evaluate
    with stage(cfg, folder) as info:
        actor = load_actor_at(cfg, iteration)
        plays = [(name, t, folder / name, e.max_rounds, {}) for name in cfg.envs for t in tasks_of(cfg, name, "test")]
        if e.recovery and iteration > 0:
            plays += _recovery_plays(cfg, folder / "recovery")
        _play(cfg, actor, plays, "evaluate")
        if e.recovery and iteration == 0:  # the baseline's own failures: known only now
            _play(cfg, actor, _recovery_plays(cfg, folder / "recovery"), "recovery")
        per_env = {name: load_episodes(folder / name) for name in cfg.envs}
        metrics = {"iteration": iteration, **summarize(per_env, cfg.seed)}
        if e.recovery:
            metrics["recovery"] = summarize({n: load_episodes(folder / "recovery" / n) for n in cfg.envs}, cfg.seed)
        write_json_atomic(folder / "metrics.json", metrics)
        info.update(episodes=sum(len(v) for v in per_env.values()))
    return metrics


def _recovery_plays(cfg: Config, out: Path) -> list[tuple]:
    """Table 3: the baseline's failures, cut at a random step, to be continued by the actor under test."""
    from .evaluate import load_episodes, recovery_prefix
    return [(name, ep.task_id, out / name, cfg.evaluate.recovery_max_rounds, {"prefix": recovery_prefix(ep, cfg.seed)})
            for name in cfg.envs for ep in load_episodes(stage_dir(cfg, "eval", 0) / name) if ep.score <= 0]


def _play(cfg: Config, actor, plays: list[tuple], label: str) -> None:
    """Play (env, task, out_dir, max_rounds, kwargs) episodes together; one file per episode, finished ones skipped."""
    from .batching import env_pools, run_jobs
    from .evaluate import episode_job
    todo = [p for p in plays if not (p[2] / f"{p[1]}.json").exists()]

    def play(pool, task_id, out, max_rounds, kwargs):
        episode = yield from pool.borrowing(episode_job, task_id, max_rounds, cfg.evaluate.temperature, **kwargs)
        write_json_atomic(out / f"{task_id}.json", episode.to_dict())

    with env_pools(cfg.envs, lambda name: make_env_for(cfg, name)) as pools:
        run_jobs((play(pools[name], *rest) for name, *rest in todo), actor, in_flight=cfg.evaluate.episodes_in_flight,
                 progress=label, total=len(todo))


# --- 05 report ------------------------------------------------------------------------------------------------
def report(cfg: Config) -> dict:
    from .report import render_report
    return render_report(cfg)


STAGES = {"00_warmstart": warmstart, "00_baseline": lambda cfg: evaluate(cfg, 0), "01_collect": collect,
          "02_revise": revise, "03_train": train, "04_evaluate": evaluate, "05_report": report}
