"""Environment speed: resets/s, steps/s, and the cost of restoring a 10-step state by copy vs by replay.

    python benchmarks/envs.py [--envs textcraft,sciworld,webshop] [--n 50]

Uses only the TextEnv interface plus `demonstrate()` (for realistic actions), so every env is measured the same
way. An env that cannot run here (EnvUnavailable / ImportError) is skipped with a line saying why.
MCTS restores a node for every expansion, so "restore" is the number that matters most for search.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing the kit
from agentr_lib.envs import ENV_NAMES, EnvUnavailable, TextEnv, make_env, select_tasks

STATE_STEPS = 10
PAD_ACTION = "inventory"  # fills a demo shorter than 10 steps; valid in TextCraft and SciWorld, a no-op elsewhere


def timed(fn, repeat: int = 1) -> float:
    """Seconds per call of `fn`, over `repeat` calls."""
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def bench_resets(env: TextEnv, tasks: list[int]) -> tuple[float, float]:
    """Resets per second on first use of each task (cold) and on a second pass (warm)."""
    cold = timed(lambda: [env.reset(t) for t in tasks])
    warm = timed(lambda: [env.reset(t) for t in tasks])
    return len(tasks) / cold, len(tasks) / warm


def bench_steps(env: TextEnv, demos: dict) -> tuple[float, int]:
    """Steps per second while playing every demonstration (resets excluded)."""
    total_time, total_steps = 0.0, 0
    for task_id, demo in demos.items():
        env.reset(task_id)
        start = time.perf_counter()
        for action in demo.actions:
            env.step(action)
        total_time += time.perf_counter() - start
        total_steps += len(demo.actions)
    return total_steps / total_time, total_steps


def ten_step_prefix(actions: list[str]) -> list[str]:
    """The first 10 actions short of finishing the task (a mid-episode state), padded if the demo is short."""
    prefix = actions[:-1][:STATE_STEPS]
    return prefix + [PAD_ACTION] * (STATE_STEPS - len(prefix))


def bench_restore(env: TextEnv, task_id: int, actions: list[str], budget_s: float = 1.0) -> dict:
    """Seconds to restore the state after `actions`: by replay (reset + actions) and by snapshot copy."""
    replay_s = timed(lambda: env.replay(task_id, actions))
    replay_s = timed(lambda: env.replay(task_id, actions), repeat=max(1, min(200, int(budget_s / replay_s))))
    probe = actions[-1]
    after_replay = env.step(probe).observation
    env.replay(task_id, actions)
    state = env.snapshot()
    out = {"replay_s": replay_s, "copy_s": None, "snapshot_s": None, "same": None}
    if state is None:
        return out
    out["snapshot_s"] = timed(env.snapshot, repeat=1000)
    out["copy_s"] = timed(lambda: env.restore(state), repeat=1000)
    env.reset(task_id)  # move away, then come back by copy: the next observation must match the replayed one
    env.restore(state)
    out["same"] = env.step(probe).observation == after_replay
    return out


def bench_env(name: str, n: int) -> None:
    try:
        env = make_env(name)
    except (EnvUnavailable, ImportError) as exc:
        print(f"{name}: skipped: {exc}")
        return
    with env:
        tasks = select_tasks(env.task_ids("test"), n)
        cold, warm = bench_resets(env, tasks)
        demos = {t: env.demonstrate(t) for t in tasks}
        steps_per_s, n_steps = bench_steps(env, demos)
        longest = max(tasks, key=lambda t: len(demos[t].actions))
        restore = bench_restore(env, longest, ten_step_prefix(demos[longest].actions))
    print(f"{name}: {len(tasks)} test tasks")
    print(f"  reset   {cold:10.0f} /s cold (first use of each task)   {warm:10.0f} /s warm")
    print(f"  step    {steps_per_s:10.0f} /s over {n_steps} demonstration steps")
    line = f"  restore a {STATE_STEPS}-step state: replay {restore['replay_s'] * 1e6:9.1f} us"
    if restore["copy_s"] is None:
        print(line + "   copy: n/a (no snapshot)")
    else:
        ratio = restore["replay_s"] / restore["copy_s"]
        print(line + f"   copy {restore['copy_s'] * 1e6:7.2f} us ({ratio:.0f}x faster; snapshot "
                     f"{restore['snapshot_s'] * 1e6:.2f} us; same next observation: {restore['same']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", default=",".join(ENV_NAMES), help="comma-separated env names")
    parser.add_argument("--n", type=int, default=50, help="test tasks per env")
    args = parser.parse_args()
    for name in args.envs.split(","):
        bench_env(name.strip(), args.n)


if __name__ == "__main__":
    main()
