"""The stages of the loop, one function each; every notebook calls exactly one of them.

Each has one shape: skip if done → (under `layout.stage`: claim the folder, pin the params) load the actor → one
library call → metrics. Where the outputs go is `layout.RunLayout`'s business; what the stages compute is the
library's (mcts, revision, train, evaluate, report).
"""
from __future__ import annotations

from collections.abc import Callable

from .config import Config, ConfigError
from .files import read_json, write_json, write_yaml
from .layout import RESOLVED, RunLayout, done_info, is_done, require_done, stage


# --- what every stage needs -------------------------------------------------------------------------------------
def load_actor_at(cfg: Config, iteration: int, trainable: bool = False):
    """The actor after `iteration` (0 = the starting actor: warm-started, or the base model)."""
    from .actor import load_actor
    adapter = None
    if iteration > 0 or cfg.warmstart.enabled:
        adapter = RunLayout(cfg.run_dir).adapter(iteration)
        if not adapter.exists():
            raise ConfigError(f"the actor of iteration {iteration} is missing ({adapter}): run the earlier stages")
    return load_actor(cfg.model, adapter=adapter, trainable=trainable, seed=cfg.seed)


def env_factory(cfg: Config) -> Callable:
    """name -> a new env with the params' env_kwargs."""
    from .envs import make_env
    return lambda name: make_env(name, **cfg.tasks_for(name).env_kwargs)


def task_ids(cfg: Config, split: str) -> dict[str, list[int]]:
    """Each env's tasks of a split: the params' seeded subset (`tasks.<env>.train/test`)."""
    out = {}
    for name in cfg.envs:
        env = env_factory(cfg)(name)
        try:
            out[name] = selected_tasks(cfg, env, split)
        finally:
            env.close()
    return out


def selected_tasks(cfg: Config, env, split: str) -> list[int]:
    """`env`'s tasks of a split that the params select (`tasks.<env>.train/test`: a seeded subset)."""
    from .envs import select_tasks
    return select_tasks(env.task_ids(split), getattr(cfg.tasks_for(env.name), split), seed=cfg.seed)


def _train_actor(cfg: Config, actor, samples: list[dict], folder, iteration: int, epochs: int, train_cfg=None) -> dict:
    """Train `actor` on `samples` and publish its adapter in `folder/adapter` (unchanged when there is nothing to
    learn from: reported, not hidden). Data order and dropout are seeded by the run seed and the iteration."""
    from .batching import derive_seed
    from .train import train_actor
    if not samples:
        actor.save_adapter(folder / "adapter")
        return {"samples": 0, "note": "no training samples; adapter copied unchanged"}
    seed = derive_seed(cfg.seed, "train", iteration) % 2**32  # the Trainer's seed must fit numpy's 32 bits
    metrics = train_actor(actor, samples, train_cfg or cfg.train, folder, epochs=epochs, seed=seed)
    return {"samples": len(samples), **{k: v for k, v in metrics.items() if not isinstance(v, list)}}


# --- 00 warm-start ----------------------------------------------------------------------------------------------
def warmstart(cfg: Config) -> dict:
    """Teach a small model the action format from a few scripted demonstrations (off in the paper's settings)."""
    from .actor import load_actor
    from .data import demo_samples
    from .envs import select_tasks
    folder = RunLayout(cfg.run_dir).warmstart
    if is_done(folder):
        return done_info(folder)
    w = cfg.warmstart
    if not w.enabled:
        return {"skipped": "warmstart.enabled is false"}
    # The warm-start's own knobs replace the train section's, for this stage only.
    train_cfg = cfg.train.model_copy(update={"learning_rate": w.learning_rate, "grad_accum": w.grad_accum,
                                             "max_length": w.max_length or cfg.train.max_length})
    with stage(cfg, folder) as info:
        actor = load_actor(cfg.model, trainable=True, seed=cfg.seed)  # the base model: no adapter yet
        samples = []
        for name in cfg.envs:
            env = env_factory(cfg)(name)
            try:
                mcts_tasks = set(selected_tasks(cfg, env, "train"))
                pool = [t for t in env.task_ids("train") if t not in mcts_tasks]  # a demo never shows an MCTS task
                chosen = select_tasks(pool, cfg.tasks_for(name).demos or w.demos_per_env, seed=cfg.seed + 1)
                samples += [s for t in chosen for s in demo_samples(env, env.demonstrate(t),
                                                                    actor.fits(train_cfg.max_length))]
            finally:
                env.close()
        info.update(demos=sum(s["kind"] == "demo" for s in samples))
        info.update(_train_actor(cfg, actor, samples, folder, 0, w.epochs, train_cfg))
    return info


# --- 01 collect -------------------------------------------------------------------------------------------------
def collect(cfg: Config, iteration: int) -> dict:
    """MCTS with the actor of iteration-1 on every env's training tasks; one tree file per task (resumable)."""
    from .mcts import collect_trees
    folder = RunLayout(cfg.run_dir).trees(iteration)
    if is_done(folder):
        return done_info(folder)
    with stage(cfg, folder) as info:
        actor = load_actor_at(cfg, iteration - 1)
        info.update(collect_trees(task_ids(cfg, "train"), env_factory(cfg), actor, cfg.mcts, folder,
                                  seed=cfg.seed + 1000 * iteration))
    return info


# --- 02 revise --------------------------------------------------------------------------------------------------
def revise(cfg: Config, iteration: int) -> dict:
    """Pairs, self-critique with the current actor, splices → the iteration's training data (HF dataset)."""
    from .data import save_data
    from .mcts import load_trees
    from .revision import build_revision_samples
    run = RunLayout(cfg.run_dir)
    folder = run.data(iteration)
    if is_done(folder):
        return done_info(folder)
    require_done(run.trees(iteration), f"no finished trees for iteration {iteration}: run 01_collect first")
    with stage(cfg, folder) as info:
        actor = load_actor_at(cfg, iteration - 1)
        verifier_budget = cfg.model.max_context_tokens - cfg.revision.verifier_max_new_tokens
        samples, stats = build_revision_samples(load_trees(run.trees(iteration), cfg.envs), actor, cfg.revision,
                                                cfg.alpha_at(iteration), seed=cfg.seed + iteration,
                                                fits=actor.fits(verifier_budget), progress=True)
        if samples:
            save_data(samples, run.dataset(iteration))
        write_json(folder / "metrics.json", {"iteration": iteration, "alpha": cfg.alpha_at(iteration),
                                             "variant": cfg.revision.variant, "envs": stats})
        info.update(samples=len(samples))
    return info


# --- 03 train ---------------------------------------------------------------------------------------------------
def train(cfg: Config, iteration: int) -> dict:
    """Masked SFT of the actor of iteration-1 on this iteration's data (+ general data, η)."""
    from .data import fitted, load_data, load_general_data, mix_general
    run = RunLayout(cfg.run_dir)
    folder = run.train(iteration)
    if is_done(folder):
        return done_info(folder)
    require_done(run.data(iteration), f"no training data for iteration {iteration}: run 02_revise first")
    samples = list(load_data(run.dataset(iteration))) if run.dataset(iteration).exists() else []
    with stage(cfg, folder, agent_samples=len(samples)) as info:
        actor = load_actor_at(cfg, iteration - 1, trainable=True)
        samples = [w for s in samples for w in fitted(s, actor.fits(cfg.train.max_length))]
        info.update(agent_windows=len(samples))
        if cfg.train.general_data:
            samples = mix_general(samples, load_general_data(cfg.train.general_data), cfg.train.eta, cfg.seed)
        info.update(_train_actor(cfg, actor, samples, folder, iteration, cfg.epochs_at(iteration)))
    return info


# --- 04 evaluate (and 00 baseline) ------------------------------------------------------------------------------
def evaluate(cfg: Config, iteration: int) -> dict:
    """Held-out episodes with the actor of `iteration` (0 = baseline), and error recovery on baseline failures."""
    from .evaluate import evaluate_actor
    run = RunLayout(cfg.run_dir)
    folder = run.eval(iteration)
    if is_done(folder):
        return read_json(folder / "metrics.json")
    with stage(cfg, folder) as info:
        actor = load_actor_at(cfg, iteration)
        metrics = {"iteration": iteration, **evaluate_actor(actor, task_ids(cfg, "test"), env_factory(cfg),
                                                            cfg.evaluate, folder, run.eval(0), cfg.seed)}
        write_json(folder / "metrics.json", metrics)
        info.update(episodes=sum(m["n"] for m in metrics["envs"].values()))
    return metrics


# --- 05 report --------------------------------------------------------------------------------------------------
def report(cfg: Config) -> dict:
    """Re-rendered on every run (it only reads metrics files), with the config it was rendered with beside it."""
    from .report import render_report
    written = render_report(cfg)
    write_yaml(RunLayout(cfg.run_dir).report / RESOLVED, cfg.to_dict())
    return written

