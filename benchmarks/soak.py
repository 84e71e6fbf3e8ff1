"""Bounded memory on a long collection: many tiny-random trees with one actor, RSS at the start and after each part.

What could grow without bound over a long run: the actor's stored KV (bounded by `model.prefix_cache_mb`), the env
pools, per-tree bookkeeping that `collect_trees` keeps until the end (it keeps a small summary per tree, not the tree).
From the repository root:
    python -m benchmarks.soak --trees 200
"""
from __future__ import annotations

import argparse
import tempfile
import time

from agentr_lib.actor import load_actor
from agentr_lib.config import MCTSCfg, ModelCfg
from agentr_lib.envs import make_env
from agentr_lib.mcts import collect_trees
from benchmarks.reproducibility import cpu_name


def rss_mb(trim: bool = False) -> float:
    """Resident memory; `trim` first hands the C allocator's free pages back (glibc `malloc_trim`), which tells
    memory held by live objects from memory the allocator merely keeps."""
    if trim:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--parts", type=int, default=4, help="RSS is printed after each part of the trees")
    parser.add_argument("--prefix-cache-mb", type=float, default=256)
    args = parser.parse_args()
    actor = load_actor(ModelCfg(name="tiny-random", quantization="none", max_context_tokens=1024, max_new_tokens=16,
                                prefix_cache_mb=args.prefix_cache_mb))
    env = make_env("textcraft")
    ids = env.task_ids("train")[: args.trees]
    env.close()
    settings = MCTSCfg(simulations=2, candidates=4, max_depth=4, trees_in_flight=8)
    print(f"{cpu_name()}; {len(ids)} TextCraft trees, tiny-random, prefix store {args.prefix_cache_mb} MB")
    print(f"start: RSS {rss_mb():.0f} MB", flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        size = -(-len(ids) // args.parts)
        for start_at in range(0, len(ids), size):
            part = ids[start_at:start_at + size]
            collect_trees({"textcraft": part}, make_env, actor, settings, out, seed=0, progress=False)
            print(f"after {start_at + len(part)} trees: RSS {rss_mb():.0f} MB "
                  f"({rss_mb(trim=True):.0f} after malloc_trim), "
                  f"stored KV {actor.prefixes.store.bytes / 2**20:.0f} MB, {time.perf_counter() - start:.0f} s",
                  flush=True)


if __name__ == "__main__":
    main()
