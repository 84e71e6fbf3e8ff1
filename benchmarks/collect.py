"""MCTS tree collection, the naive way vs the kit's way, measured in one run on the same TextCraft tasks and seeds.

  naive  one tree at a time (in_flight 1); every candidate is its own `generate` call (num_samples 1, so each
         candidate prefills the whole prompt again; no KV kept between calls); the env restores a node by replay
  kit    `collect_trees` as the pipeline runs it: the pending expansions of all trees in flight go into one batched
         call, the k candidates of a node share one prefill (prefill once, fork the KV cache), a child's prompt
         reuses the stored KV of its parent's (only the new reply + observation are prefilled), restore by copy

Both ways run the same search code (`collect_trees`), with the same run seed (UCT tie-breaks) and the same torch
seed. The replies are sampled, though, and the two ways draw them in a different order, so their trees differ:
"s / expansion" is the fairest ratio; trees/hour depends on how big the trees happened to grow. From the
repository root (the first load of the offline model builds a cache, ~40 s):
    python -m benchmarks.collect
    python -m benchmarks.collect --quantization nf4 --threads 2
    python -m benchmarks.collect --trees 8 --simulations 8 --depth 8 --in-flight 8 --warmstart runs/x/warmstart
The machine may be shared: compare the ratios of one run, not numbers across runs. With one thread (the default)
the process's CPU time hardly depends on what else runs, so "cpu" per expansion is the steadier ratio there.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from agentr_lib.actor import load_actor
from agentr_lib.config import MCTSCfg, ModelCfg
from agentr_lib.envs.textcraft import TextCraftEnv
from agentr_lib.mcts import collect_trees, load_tree, tree_path
from agentr_lib.trajectory import conversation


class ReplayOnlyTextCraft(TextCraftEnv):
    """TextCraft without state copies, so the search restores a node by reset + replay (the naive way)."""

    def snapshot(self):
        return None


class CountingPolicy:
    """Counts the calls that reach the actor and the sequences (prompts x samples) they decode."""

    def __init__(self, policy):
        self.policy, self.calls, self.sequences = policy, 0, 0

    def generate(self, conversations, num_samples=1, temperature=1.0, max_new_tokens=None, seeds=None, stop="action"):
        self.calls += 1
        self.sequences += len(conversations) * num_samples
        return self.policy.generate(conversations, num_samples=num_samples, temperature=temperature,
                                    max_new_tokens=max_new_tokens, seeds=seeds, stop=stop)


class OneCallPerCandidate:
    """The naive policy: each conversation alone, each of its k candidates a separate generate call."""

    def __init__(self, policy):
        self.policy = policy

    def generate(self, conversations, num_samples=1, temperature=1.0, max_new_tokens=None, seeds=None, stop="action"):
        return [[self.policy.generate([conv], num_samples=1, temperature=temperature,
                                      max_new_tokens=max_new_tokens, stop=stop)[0][0] for _ in range(num_samples)]
                for conv in conversations]


def mean_prompt_tokens(actor, out_dir, task_ids) -> float:
    """Mean prompt length (tokens) over the expanded nodes of the saved trees (measured after the clock stops)."""
    lengths = []
    for task_id in task_ids:
        tree = load_tree(tree_path(out_dir, task_id))
        for node in tree.nodes:
            if node.children:
                conv = conversation(tree.instruction, tree.first_observation, tree.steps(tree.path(node.id)))
                lengths.append(actor.count_tokens(conv))
    return sum(lengths) / max(1, len(lengths))


def collect(way: str, actor, task_ids, settings: MCTSCfg, args) -> dict:
    counter = CountingPolicy(actor)
    actor.forget_prefixes()
    actor.prefixes.reuses_prefixes = way == "kit"
    if way == "naive":
        policy, make_env, in_flight = OneCallPerCandidate(counter), ReplayOnlyTextCraft, 1
    else:
        policy, make_env, in_flight = counter, TextCraftEnv, args.in_flight
    torch.manual_seed(args.seed)
    cpu = time.process_time()
    with tempfile.TemporaryDirectory(prefix=f"agentr-bench-{way}-") as out_dir:
        stats = collect_trees({"textcraft": task_ids}, lambda name: make_env(), policy,
                              settings.model_copy(update={"trees_in_flight": in_flight}), out_dir, seed=args.seed,
                              progress=False)
        stats.update(stats.pop("envs")["textcraft"])
        stats["cpu_s"] = time.process_time() - cpu
        stats["prompt_tokens"] = mean_prompt_tokens(actor, Path(out_dir) / "textcraft", task_ids)
    stats.update(generate_calls=counter.calls, sequences=counter.sequences)
    return stats


def report(way: str, s: dict) -> None:
    expansions = max(1, s["expansions"])
    print(f"{way:5s}  {s['trees'] * 3600 / s['wall_s']:7.1f} trees/h  wall {s['wall_s']:6.1f} s  "
          f"{s['wall_s'] / expansions:5.2f} s/expansion (cpu {s['cpu_s'] / expansions:5.2f} s)  "
          f"expansions {s['expansions']:3d}  nodes {s['nodes']:3d}  "
          f"generate calls {s['generate_calls']:3d}  sequences {s['sequences']:3d}  "
          f"policy {s['policy_s']:6.1f} s  env {s['env_s'] * 1000:6.1f} ms  "
          f"mean prompt {s['prompt_tokens']:.0f} tok")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    # auto, as the pipeline's params run it (params/tiny.yaml): NF4 on CUDA, full precision (bf16 where native) on CPUs
    ap.add_argument("--quantization", default="auto", choices=["auto", "nf4", "none"])
    ap.add_argument("--warmstart", default=None, metavar="ADAPTER", help="a saved LoRA adapter to act with")
    ap.add_argument("--trees", type=int, default=4, help="TextCraft train tasks (goal depth <= 2), the first N")
    ap.add_argument("--simulations", type=int, default=1)
    ap.add_argument("--candidates", type=int, default=4, help="k: replies sampled per expansion")
    ap.add_argument("--depth", type=int, default=2, help="max actions on a path")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--in-flight", type=int, default=4, help="trees advanced together (the kit's way)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (0: torch's default); 1 by default: on a shared machine, threads that "
                         "wait on busy cores once made a call 7x slower here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", choices=["naive", "kit"], default=None, help="measure only the other way")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    actor = load_actor(ModelCfg(name=args.model, quantization=args.quantization, max_new_tokens=args.max_new_tokens,
                                generate_batch_size=max(16, args.in_flight * args.candidates)),
                       adapter=args.warmstart)
    task_ids = TextCraftEnv(max_goal_depth=2).task_ids("train")[:args.trees]
    settings = MCTSCfg(simulations=args.simulations, candidates=args.candidates, max_depth=args.depth)
    from benchmarks.reproducibility import cpu_name
    print(f"CPU: {cpu_name()}")
    print(f"model {args.model} ({args.quantization}, {actor.model.dtype}, adapter {args.warmstart}), "
          f"{torch.get_num_threads()} threads, {actor.device}; {len(task_ids)} TextCraft trees {task_ids}, "
          f"{args.simulations} simulations, k={args.candidates}, depth {args.depth}, "
          f"{args.max_new_tokens} new tokens, kit in flight {args.in_flight}")
    actor.generate([conversation("warm-up", "Say hi.", [])], num_samples=2, max_new_tokens=2)  # lazy init off the clock

    results = {}
    for way in ("kit", "naive"):  # the kit first: a short run, so a load change hits both ways' numbers less
        if way == args.skip:
            continue
        load = os.getloadavg()[0]
        results[way] = collect(way, actor, task_ids, settings, args)
        report(way, results[way])
        print(f"       (load average {load:.1f} before, {os.getloadavg()[0]:.1f} after)")
    if len(results) == 2:
        naive, kit = results["naive"], results["kit"]
        rate = lambda s: s["trees"] / s["wall_s"]
        per_expansion = lambda s: s["wall_s"] / max(1, s["expansions"])
        cpu_per_expansion = lambda s: s["cpu_s"] / max(1, s["expansions"])
        print(f"speed-up (kit over naive): trees/hour {rate(kit) / rate(naive):.2f}x, "
              f"time per expansion {per_expansion(naive) / per_expansion(kit):.2f}x, "
              f"cpu time per expansion {cpu_per_expansion(naive) / cpu_per_expansion(kit):.2f}x")


if __name__ == "__main__":
    main()
