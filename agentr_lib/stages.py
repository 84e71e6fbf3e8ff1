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
def layout_of(cfg: Config, variant: str | None = None) -> RunLayout:
    """The run's paths as one variant of the study sees them (None: the study's first variant)."""
    name = variant or cfg.study.variants[0]
    if name not in cfg.study.variants:
        raise ConfigError(f"variant {name!r} is not one of this study's (study.variants: "
                          f"{', '.join(cfg.study.variants)})")
    return RunLayout(cfg.run_dir, name)


def actor_groups(cfg: Config, run: RunLayout, iteration: int) -> list[tuple[list[str], str | None]]:
    """Which actor serves which envs after `iteration`, as (envs, the env whose actor it is; None: the one actor):
    one for all envs, or one per env for a "-single" variant once it has trained (its starting actor is shared)."""
    if iteration > 0 and run.variant.single:
        return [([env], env) for env in cfg.envs]
    return [(list(cfg.envs), None)]


def load_actor_at(cfg: Config, run: RunLayout, iteration: int, env: str | None = None, trainable: bool = False):
    """The actor after `iteration` (0 = the starting actor: warm-started, or the base model); `env`: a "-single"
    variant's actor of that env."""
    from .actor import load_actor
    adapter = None
    if iteration > 0 or cfg.warmstart.enabled:
        adapter = run.adapter(iteration, env)
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
def collect(cfg: Config, iteration: int, variant: str | None = None) -> dict:
    """MCTS with the actor of iteration-1 on every env's training tasks; one tree file per task (resumable).
    Iteration 1's trees come from the starting actor and serve every variant."""
    from .mcts import collect_trees
    run = layout_of(cfg, variant)
    folder = run.trees(iteration)
    if is_done(folder):
        return done_info(folder)
    tasks = task_ids(cfg, "train")
    with stage(cfg, folder) as info:
        for envs, env in actor_groups(cfg, run, iteration - 1):
            actor = load_actor_at(cfg, run, iteration - 1, env)
            found = collect_trees({e: tasks[e] for e in envs}, env_factory(cfg), actor, cfg.mcts, folder,
                                  seed=cfg.seed + 1000 * iteration)
            _add_counts(info, found)
    return info


def _add_counts(into: dict, part: dict) -> dict:
    """Merge one actor group's counts into a stage's: per-env parts side by side, totals summed."""
    for key, value in part.items():
        if isinstance(value, dict):
            into.setdefault(key, {}).update(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            into[key] = into.get(key, 0) + value
        else:
            into[key] = value
    return into


# --- 02 revise --------------------------------------------------------------------------------------------------
def revise(cfg: Config, iteration: int, variant: str | None = None) -> dict:
    """Pairs, self-critique with the current actor, splices → the iteration's training data (HF dataset); ETO's
    good/bad pairs beside it (preferences/)."""
    from .data import save_data, save_preferences
    from .mcts import load_trees
    from .revision import build_revision_samples, preference_pairs
    run = layout_of(cfg, variant)
    folder = run.data(iteration)
    if is_done(folder):
        return done_info(folder)
    require_done(run.trees(iteration), f"no finished trees for iteration {iteration}: run 01_collect first")
    method, alpha = run.variant.method, cfg.alpha_at(iteration)
    with stage(cfg, folder) as info:
        samples, stats, pairs = [], {}, []
        for envs, env in actor_groups(cfg, run, iteration - 1):
            trees = load_trees(run.trees(iteration), envs)
            actor = load_actor_at(cfg, run, iteration - 1, env) if method == "agent_r" else None  # the verifier
            fits = actor.fits(cfg.model.max_context_tokens - cfg.revision.verifier_max_new_tokens) if actor else None
            part, part_stats = build_revision_samples(trees, actor, cfg.revision, method, alpha,
                                                      seed=cfg.seed + iteration, fits=fits, progress=True,
                                                      layouts={e: cfg.tasks_for(e).env_kwargs.get("prompt", "compact")
                                                               for e in envs})
            samples += part
            stats.update(part_stats)
            if method == "eto":
                pairs += preference_pairs(trees, cfg.revision, alpha, seed=cfg.seed + iteration)
        if samples:
            save_data(samples, run.dataset(iteration))
        if pairs:
            save_preferences(pairs, run.preferences(iteration))
        write_json(folder / "metrics.json", {"iteration": iteration, "alpha": alpha, "variant": run.variant.name,
                                             "method": method, "envs": stats,
                                             **({"preference_pairs": len(pairs)} if method == "eto" else {})})
        info.update(samples=len(samples), **({"preference_pairs": len(pairs)} if method == "eto" else {}))
    return info


# --- 03 train ---------------------------------------------------------------------------------------------------
def train(cfg: Config, iteration: int, variant: str | None = None) -> dict:
    """Masked SFT of the actor of iteration-1 on this iteration's data (+ general data, η); ETO then DPO on its
    good/bad pairs. A "-single" variant trains one actor per env on that env's data."""
    from .data import load_data, load_preferences
    run = layout_of(cfg, variant)
    folder = run.train(iteration)
    if is_done(folder):
        return done_info(folder)
    require_done(run.data(iteration), f"no training data for iteration {iteration}: run 02_revise first")
    samples = list(load_data(run.dataset(iteration))) if run.dataset(iteration).exists() else []
    pairs = list(load_preferences(run.preferences(iteration))) if run.preferences(iteration).exists() else []
    with stage(cfg, folder, agent_samples=len(samples)) as info:
        for envs, env in actor_groups(cfg, run, iteration):  # the groups of the actors this stage makes
            out = folder / env if env else folder
            actor = load_actor_at(cfg, run, iteration - 1, env, trainable=True)
            mine = [s for s in samples if s["env"] in envs]
            result = _train_iteration(cfg, actor, mine, [p for p in pairs if p["env"] in envs], out, iteration,
                                      run.variant.method)
            info.update({f"{env}/{k}": v for k, v in result.items()} if env else result)
    return info


def _train_iteration(cfg: Config, actor, samples: list[dict], pairs: list[dict], folder, iteration: int,
                     method: str) -> dict:
    """One actor's training of an iteration: SFT on its windows (+ general data); ETO: then DPO on its pairs,
    continuing the same adapter (the SFT's lands in sft/, the final one in adapter/)."""
    from .data import fitted, load_general_data, mix_general
    windows = [w for s in samples for w in fitted(s, actor.fits(cfg.train.max_length))]
    if cfg.train.general_data and windows:
        windows = mix_general(windows, load_general_data(cfg.train.general_data), cfg.train.eta, cfg.seed)
    epochs = cfg.epochs_at(iteration)
    if method != "eto":
        return {"agent_windows": len(windows), **_train_actor(cfg, actor, windows, folder, iteration, epochs)}
    sft = _train_actor(cfg, actor, windows, folder / "sft", iteration, epochs)
    return {"agent_windows": len(windows), **{f"sft_{k}": v for k, v in sft.items()},
            **_train_preferences(cfg, actor, pairs, folder, iteration, epochs)}


def _train_preferences(cfg: Config, actor, pairs: list[dict], folder, iteration: int, epochs: int) -> dict:
    from .batching import derive_seed
    from .preference import train_actor_dpo
    if not pairs:
        actor.save_adapter(folder / "adapter")
        return {"pairs": 0, "dpo_note": "no good/bad pairs; the SFT adapter is the actor"}
    seed = derive_seed(cfg.seed, "dpo", iteration) % 2**32
    metrics = train_actor_dpo(actor, pairs, cfg.train, folder, epochs=epochs, seed=seed, beta=cfg.train.dpo_beta)
    return {"pairs": len(pairs), **{f"dpo_{k}": v for k, v in metrics.items()
                                    if not isinstance(v, (list, dict)) and k != "pairs"}}


# --- 04 evaluate (and 00 baseline) ------------------------------------------------------------------------------
def evaluate(cfg: Config, iteration: int, variant: str | None = None) -> dict:
    """Held-out episodes with the actor of `iteration` (0 = the shared baseline), and error recovery on the
    baseline's failures; a "-single" variant's envs each with their own actor."""
    from .evaluate import evaluate_actor
    run = layout_of(cfg, variant)
    folder = run.eval(iteration)
    if is_done(folder):
        return read_json(folder / "metrics.json")
    if iteration > 0 and cfg.evaluate.recovery:
        require_done(run.eval(0), "error recovery continues the baseline's failures: run 00_baseline first")
    tasks = task_ids(cfg, "test")
    with stage(cfg, folder) as info:
        parts = []
        for envs, env in actor_groups(cfg, run, iteration):
            actor = load_actor_at(cfg, run, iteration, env)
            parts.append(evaluate_actor(actor, {e: tasks[e] for e in envs}, env_factory(cfg), cfg.evaluate, folder,
                                        run.eval(0), cfg.seed))
        metrics = {"iteration": iteration, "variant": run.variant.name if iteration else None, **merge_metrics(parts)}
        write_json(folder / "metrics.json", metrics)
        info.update(episodes=sum(m["n"] for m in metrics["envs"].values()))
    return metrics


def merge_metrics(parts: list[dict]) -> dict:
    """Evaluation metrics of disjoint env groups as one: envs side by side, the average over all of them."""
    from .evaluate import average_score
    if len(parts) == 1:
        return parts[0]
    merged: dict = {}
    for key in ("envs", "recovery"):
        envs = {e: m for p in parts if key in p for e, m in (p[key] if key == "envs" else p[key]["envs"]).items()}
        if envs:
            part = {"envs": envs, "average": average_score(envs)}
            merged.update(part if key == "envs" else {"recovery": part})
    return merged


# --- 05 report --------------------------------------------------------------------------------------------------
def report(cfg: Config) -> dict:
    """Re-rendered on every run (it only reads metrics files), with the config it was rendered with beside it."""
    from .report import render_report
    written = render_report(cfg)
    write_yaml(RunLayout(cfg.run_dir).report / RESOLVED, cfg.to_dict())
    return written

