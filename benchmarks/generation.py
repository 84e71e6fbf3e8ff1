"""Sampling k candidates for each of n agent prompts (one MCTS expansion round): three ways, measured in one run.

  naive    one `generate` call per candidate, one after another (n * k calls, batch 1)
  repeat   one batched `generate` call on the n prompts each repeated k times (what num_return_sequences does:
           HF expands the batch before prefill, so every copy is prefilled)
  fork     prefill the n prompts once, repeat their KV cache k times, decode n * k sequences
  reuse    fork, where each prompt's previous step was seen before (the actor's prefix store: only the newest
           reply + observation are prefilled, as along an episode or from an MCTS parent to its child)
  mixed    reuse, but one prompt of the batch was never seen (a new episode, or one whose context was just trimmed):
           its rows are prefilled apart from the others (`tail_groups`)
  ungrouped  mixed without that grouping: every row computes as many columns as the unseen prompt
  actor    `Actor.generate` end to end (reuse + stop after the Action line + reply cutting), for reference

Every variant decodes exactly `--new-tokens` tokens per sequence (end-of-turn suppressed), so the work is equal and
tok/s compare. Defaults are small (about 2-3 min on 2 CPU cores); scale up with the flags. From the repository root:
    python -m benchmarks.generation
    python -m benchmarks.generation --prompts 4 --samples 4 --prompt-tokens 880 --new-tokens 32 --quantization none
The machine is noisy: compare the ratios of one run, not numbers across runs.
"""
from __future__ import annotations

import argparse
import time

import torch

from agentr_lib.actor import load_actor
from agentr_lib.config import ModelCfg
from agentr_lib.kv_cache import cache_kwarg
from agentr_lib.trajectory import Step, conversation

INSTRUCTION = ("You are given a few useful crafting recipes to craft items in Minecraft. Crafting commands are of the "
               "format \"craft [target object] using [input objects]\". Every round I will give you an observation, "
               "you have to respond an action based on the state and instruction. You can \"get\" an object "
               "(ingredients) from the inventory or the environment, look-up the game inventory by \"inventory\", or "
               "\"craft\" (target) using any of the crafting commands. Reply as\nThought: ...\nAction: ...")


def agent_prompt(actor, index: int, prompt_tokens: int) -> list[dict]:
    """A TextCraft-like conversation grown step by step until it reaches about `prompt_tokens` tokens."""
    recipes = "\n".join(f"craft {i + 1} item_{index}_{i} using 2 plank, 1 stick" for i in range(6))
    first = f"Crafting commands:\n{recipes}\nGoal: craft item_{index}_0."
    steps: list[Step] = []
    while actor.count_tokens(conversation(INSTRUCTION, first, steps)) < prompt_tokens:
        n = len(steps)
        steps.append(Step(response=f"Thought: I need 2 plank for item {n}.\nAction: get 2 plank",
                          action="get 2 plank", observation=f"Got 2 plank (step {n} of task {index})."))
    return conversation(INSTRUCTION, first, steps)


def encode(actor, convs, repeats: int = 1):
    texts = [actor.prompt_text(c) for c in convs for _ in range(repeats)]
    return actor.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(actor.device)


def sample_kwargs(actor, new_tokens: int) -> dict:
    return dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=new_tokens,
                min_new_tokens=new_tokens, pad_token_id=actor.tokenizer.pad_token_id, eos_token_id=actor.eos_token_ids)


@torch.inference_mode()
def naive(actor, convs, k, new_tokens):
    for c in convs:
        batch = encode(actor, [c])
        for _ in range(k):
            actor.model.generate(**batch, **sample_kwargs(actor, new_tokens))


@torch.inference_mode()
def repeat(actor, convs, k, new_tokens):
    actor.model.generate(**encode(actor, convs, repeats=k), **sample_kwargs(actor, new_tokens))


@torch.inference_mode()
def fork(actor, convs, k, new_tokens, reuse=False):
    rows = [actor.tokenizer(actor.prompt_text(c), add_special_tokens=False).input_ids for c in convs]
    prefixes = actor.prefixes
    reusing, prefixes.reuses_prefixes = prefixes.reuses_prefixes, reuse
    try:
        ids, mask, cache = prefixes.prefill(actor.model, rows)
    finally:
        prefixes.reuses_prefixes = reusing
    cache.batch_repeat_interleave(k)
    actor.model.generate(input_ids=ids.repeat_interleave(k, 0), attention_mask=mask.repeat_interleave(k, 0),
                         **{cache_kwarg(actor.model): cache}, **sample_kwargs(actor, new_tokens))


def seen_previous_steps(actor, convs):
    """Fill the prefix store with each conversation minus its last (reply, observation) pair."""
    actor.forget_prefixes()
    actor.generate([c[:-2] for c in convs], num_samples=1, temperature=1.0, max_new_tokens=1)


def mixed(actor, convs, k, new_tokens, grouped=True):
    prefixes = actor.prefixes
    grouping, prefixes.groups_prefill = prefixes.groups_prefill, grouped
    try:
        fork(actor, convs, k, new_tokens, reuse=True)
    finally:
        prefixes.groups_prefill = grouping


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--quantization", default="nf4", choices=["nf4", "none"])
    ap.add_argument("--compute-dtype", default="auto")
    ap.add_argument("--prompts", type=int, default=2, help="distinct prompts (tree nodes being expanded)")
    ap.add_argument("--samples", type=int, default=4, help="candidates per prompt")
    ap.add_argument("--prompt-tokens", type=int, default=500)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--skip", nargs="*", default=[],
                    choices=["naive", "repeat", "fork", "reuse", "mixed", "ungrouped", "actor"])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    # no max_new_tokens: every call below passes --new-tokens itself
    actor = load_actor(ModelCfg(name=args.model, quantization=args.quantization, compute_dtype=args.compute_dtype,
                                max_context_tokens=args.prompt_tokens + 512,
                                generate_batch_size=args.prompts * args.samples))
    # slightly different lengths, so that the batch is left-padded as in real use
    convs = [agent_prompt(actor, i, args.prompt_tokens - 40 * i) for i in range(args.prompts)]
    lengths = [actor.count_tokens(c) for c in convs]
    print(f"model {args.model} ({args.quantization}, {actor.model.dtype}, {torch.get_num_threads()} threads, "
          f"{actor.device}); {args.prompts} prompts x {args.samples} samples, prompt tokens {lengths}, "
          f"{args.new_tokens} new tokens each")
    fork(actor, convs[:1], 2, 2)  # warm-up: first-call allocations and lazy initialisation

    variants = {"naive": naive, "repeat": repeat, "fork": fork,
                "reuse": lambda a, c, k, n: fork(a, c, k, n, reuse=True),
                "mixed": mixed, "ungrouped": lambda a, c, k, n: mixed(a, c, k, n, grouped=False),
                "actor": lambda a, c, k, n: a.generate(c, num_samples=k, temperature=1.0, max_new_tokens=n)}
    generated = args.prompts * args.samples * args.new_tokens
    times = {}
    for name, run in variants.items():
        if name in args.skip:
            continue
        if name in ("reuse", "actor"):
            seen_previous_steps(actor, convs)  # not timed: the earlier step of every episode
        elif name in ("mixed", "ungrouped"):
            seen_previous_steps(actor, convs[1:])  # the first prompt is new: its instruction only is shared
        start = time.perf_counter()
        run(actor, convs, args.samples, args.new_tokens)
        times[name] = time.perf_counter() - start
        rate = (f"{generated / times[name]:6.1f} new tok/s" if name != "actor" else
                "(stops at end of turn / after the Action line, so it may decode fewer tokens)")
        print(f"{name:7s} {times[name]:7.1f} s  {rate}")
    if "naive" in times:
        print("speed-up over naive: " + ", ".join(f"{n} {times['naive'] / t:.2f}x" for n, t in times.items()))


if __name__ == "__main__":
    main()
