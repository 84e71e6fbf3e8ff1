"""What float rounding can still flip: the same seeded requests decoded at generate_batch_size 32 and 1.

Every sampled token is drawn from its request's own stream (README, reproducibility), so a reply does not depend on
its batch, except through the logits: fp32 sums differ with the batch's padding width (attention over a longer,
left-padded row adds its terms in another order), so a draw that lands within rounding of a token boundary of the
cumulative distribution picks the neighbouring token. This counts how often, in tokens flipped per 10k: a sequence
is compared token by token up to its first difference (a flip), after which it is its own continuation.
From the repository root:
    python -m benchmarks.reproducibility --model tiny-random
    python -m benchmarks.reproducibility --model smollm2-135m --quantization none --prompts 12
The CPU is printed with the figures (model, bf16/AMX flags): rounding differs between kernels.
"""
from __future__ import annotations

import argparse
import platform
import time

import torch

from agentr_lib.actor import load_actor
from agentr_lib.config import ModelCfg
from benchmarks.generation import agent_prompt


def cpu_name() -> str:
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return platform.processor() or "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = {f for f in ("avx512_bf16", "amx_bf16") if f in info}
    return f"{name} ({', '.join(sorted(flags)) or 'no AVX512-bf16, no AMX'})"


def flips(a: list[list[int]], b: list[list[int]]) -> tuple[int, int]:
    """(flips, tokens compared): each pair of sequences up to and including its first differing token."""
    flipped = compared = 0
    for x, y in zip(a, b):
        same = next((i for i, (s, t) in enumerate(zip(x, y)) if s != t), None)
        if same is None:
            compared += min(len(x), len(y))
        else:
            flipped, compared = flipped + 1, compared + same + 1
    return flipped, compared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny-random")
    parser.add_argument("--quantization", default="none")
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="seeds per prompt and sample")
    parser.add_argument("--new-tokens", type=int, default=40)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ways = {}
    for batch in (32, 1):
        cfg = ModelCfg(name=args.model, quantization=args.quantization, compute_dtype="fp32", max_new_tokens=8,
                       generate_batch_size=batch, prefix_cache_mb=1024 if batch > 1 else 0)
        actor = load_actor(cfg)
        # prompts of different lengths (200-800 tokens), so that batches pad them differently
        convs = [agent_prompt(actor, i, 200 + 600 * i // max(1, args.prompts - 1)) for i in range(args.prompts)]
        start, replies = time.perf_counter(), []
        for r in range(args.rounds):
            seeds = [1000 * r + i for i in range(len(convs))]
            out = actor.generate(convs, args.samples, 1.0, args.new_tokens, seeds=seeds)
            replies += [actor.tokenizer(t, add_special_tokens=False).input_ids for rs in out for t in rs]
        ways[batch] = replies
        print(f"generate_batch_size {batch:>2}: {len(replies)} replies, {sum(map(len, replies))} tokens, "
              f"{time.perf_counter() - start:.1f} s", flush=True)
    flipped, compared = flips(ways[32], ways[1])
    identical = sum(a == b for a, b in zip(ways[32], ways[1]))
    print(f"\n{args.model} ({args.quantization}, fp32), {cpu_name()}, {torch.get_num_threads()} threads")
    print(f"identical replies: {identical}/{len(ways[1])}; flipped tokens: {flipped} of {compared} compared "
          f"= {1e4 * flipped / max(1, compared):.1f} per 10k")


if __name__ == "__main__":
    main()
