"""Decoding one MCTS expansion round (n prompts x k samples, prefilled and forked): transformers' `generate` (every
row decoded until the last one stops, `torch.multinomial` sampling) against the actor's loop (`decoding.decode`:
rows leave once done, inverse-CDF sampling). Both stop a row after its Action line, as the actor does.

Only decoding is timed (the prefill is the same for both). Greedy decoding writes the same tokens both ways, so
its times compare the loops alone; sampled decoding (the search's temperature 1) compares them with their samplers.
From the repository root:
    python -m benchmarks.decoding
    python -m benchmarks.decoding --prompts 7 --samples 4 --prompt-tokens 850 --quantization none
The machine is noisy: compare the ratios of one run, not numbers across runs.
"""
from __future__ import annotations

import argparse
import time

import torch
from transformers import StoppingCriteria

from agentr_lib.actor import load_actor
from agentr_lib.config import ModelCfg
from agentr_lib.decoding import ActionLineDone, decode
from agentr_lib.kv_cache import cache_kwarg
from benchmarks.generation import agent_prompt


class RowsDone(StoppingCriteria):
    """`generate`'s per-row stop: an end-of-turn is handled by generate itself, the Action line here."""

    def __init__(self, tokenizer, prompt_length: int):
        self.done, self.prompt_length = ActionLineDone(tokenizer), prompt_length

    def __call__(self, input_ids, scores=None, **kwargs):
        return torch.tensor([self.done(row[self.prompt_length:].tolist()) for row in input_ids])


def prefilled(actor, rows, k):
    actor.forget_prefixes()  # the same prefill work for both
    ids, mask, cache = actor.prefixes.prefill(actor.model, rows)
    cache.batch_repeat_interleave(k)
    return ids.repeat_interleave(k, 0), mask.repeat_interleave(k, 0), cache


def with_generate(actor, ids, mask, cache, temperature, max_new) -> list[int]:
    sampling = (dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0) if temperature
                else dict(do_sample=False))
    out = actor.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new,
                               eos_token_id=actor.eos_token_ids, pad_token_id=actor.tokenizer.pad_token_id,
                               stopping_criteria=[RowsDone(actor.tokenizer, ids.shape[1])], **sampling,
                               **{cache_kwarg(actor.model): cache})
    pad = actor.tokenizer.pad_token_id
    return [sum(t != pad for t in row) for row in out[:, ids.shape[1]:].tolist()]


def with_decode(actor, ids, mask, cache, temperature, max_new) -> list[int]:
    replies = decode(actor.model, ids, mask, cache, max_new, temperature, actor.eos_token_ids,
                     ActionLineDone(actor.tokenizer), cache_kwarg(actor.model))
    return [len(r) for r in replies]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--quantization", default="auto", choices=["auto", "nf4", "none"])
    ap.add_argument("--prompts", type=int, default=7)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--prompt-tokens", type=int, default=850)
    ap.add_argument("--max-new", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    actor = load_actor(ModelCfg(name=args.model, quantization=args.quantization,
                                max_context_tokens=args.prompt_tokens + 512))
    convs = [agent_prompt(actor, i, args.prompt_tokens - 20 * i) for i in range(args.prompts)]
    rows = [actor.tokenizer(actor.prompt_text(c), add_special_tokens=False).input_ids for c in convs]
    print(f"model {args.model} ({'nf4' if actor.is_quantized else 'full'}, {actor.model.dtype}, "
          f"{torch.get_num_threads()} threads); {args.prompts} prompts x {args.samples} samples of "
          f"{min(map(len, rows))}-{max(map(len, rows))} tokens, at most {args.max_new} new tokens")
    with_decode(actor, *prefilled(actor, rows[:1], 2), 1.0, 4)  # warm-up
    for temperature in (0.0, 1.0):
        times = {}
        for name, run in (("generate", with_generate), ("decode", with_decode)):
            torch.manual_seed(0)
            times[name], lengths = 0.0, []
            for _ in range(args.repeats):
                batch = prefilled(actor, rows, args.samples)  # not timed: the same prefill for both
                start = time.perf_counter()
                lengths += run(actor, *batch, temperature, args.max_new)
                times[name] += (time.perf_counter() - start) / args.repeats
            print(f"temperature {temperature}: {name:8s} {times[name]:6.2f} s per round, reply tokens mean "
                  f"{sum(lengths) / len(lengths):.1f}, max {max(lengths)}")
        print(f"temperature {temperature}: decode is {times['generate'] / times['decode']:.2f}x faster")


if __name__ == "__main__":
    main()
