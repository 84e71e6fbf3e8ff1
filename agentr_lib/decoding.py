"""The decoding loop behind `Actor.generate`: one token per step for a prefilled batch, finished rows dropped.

Why not transformers' `generate`: measured on SmolLM2-135M, 2 CPU cores, 28 rows of ~900 tokens (one MCTS
expansion round), two of its costs were ours to avoid:
- it decodes every row until the last one stops, so a batch always runs its longest reply (often the 40-token
  cap: a reply with no Action line) while the average reply is ~23 tokens; here rows that are done leave the
  batch (their KV is dropped once a quarter of the rows are done, since dropping copies the cache);
- its sampler (`torch.multinomial`) draws one exponential number per vocabulary entry and row, 26 ms per step
  for 28 x 49k, a fifth of the step; inverse-CDF sampling needs one uniform number per row (`sample_tokens`).
Greedy decoding gives exactly `generate`'s tokens (tests/test_decoding.py, tests/test_actor.py).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end_of_turn|>", "<end_of_turn>", "<|endoftext|>")


def end_of_turn_ids(tokenizer, model) -> list[int]:
    """Every token that ends an assistant turn: the tokenizer's eos, the model's eos list, known end-of-turn tokens."""
    ids = set()
    for source in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        ids.update(source if isinstance(source, list) else [source] if source is not None else [])
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in END_OF_TURN_TOKENS if t in vocab)
    return sorted(ids)


def sample_tokens(logits: torch.Tensor, temperature: float,
                  generators: list[torch.Generator] | None = None) -> torch.Tensor:
    """One token id per row of `logits` (rows x vocabulary), drawn from softmax(logits / temperature); argmax when
    temperature is 0. Plain temperature sampling (no top-k/top-p): the distribution the paper's search samples from.

    Inverse CDF: a uniform number per row, placed among the cumulative probabilities (in float64, so that the sum
    over a 100k-token vocabulary loses nothing that matters). A token of probability 0 is never drawn: its
    cumulative value equals its predecessor's, and the search picks the first value above the draw.
    With `generators` (one per row, on the CPU), row i's number comes from generators[i]: a row's draws are its own,
    whatever else is in the batch; without, from torch's global RNG.
    """
    if temperature <= 0:
        return logits.argmax(dim=-1)
    cdf = torch.softmax(logits.float() / temperature, dim=-1).double().cumsum(dim=-1)
    draw = uniform_draws(cdf.shape[0], generators).to(cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, draw, right=True).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)


def uniform_draws(rows: int, generators: list[torch.Generator] | None) -> torch.Tensor:
    """(rows, 1) uniform numbers in [0, 1), float64, on the CPU: row i's from generators[i] when given."""
    if generators is None:
        return torch.rand(rows, 1, dtype=torch.float64)
    return torch.cat([torch.rand(1, 1, dtype=torch.float64, generator=g) for g in generators])


def row_generators(seeds: list[int]) -> list[torch.Generator]:
    """One CPU random stream per row, seeded."""
    return [torch.Generator().manual_seed(s) for s in seeds]


@torch.inference_mode()
def decode(model, ids: torch.Tensor, mask: torch.Tensor, cache, max_new: int, temperature: float,
           end_ids: list[int], is_done: Callable[[list[int]], bool], cache_kwarg: str = "past_key_values",
           drop_share: float = 0.25, generators: list[torch.Generator] | None = None) -> list[list[int]]:
    """New tokens for every row of a left-padded batch whose `cache` holds the KV of all columns of `ids` but the
    last (the last prompt token is fed first, as `generate` does after a prefill).

    A row ends at an end-of-turn token (not included), when `is_done(its tokens)` says so, or after `max_new`
    tokens. Rows that ended stay in the batch (their tokens ignored) until `drop_share` of the batch has ended,
    then they are dropped from the cache and the mask. Positions count real tokens only, as in the prefill.
    `generators` (one per row) make each row's samples its own (`sample_tokens`).
    """
    replies: list[list[int]] = [[] for _ in range(ids.shape[0])]
    row_of = list(range(ids.shape[0]))  # batch position -> row of `ids`
    live = [True] * ids.shape[0]
    ends = set(end_ids)
    tokens = ids[:, -1:]
    for step in range(max_new):
        positions = mask.sum(dim=-1, keepdim=True) - 1
        logits = model(input_ids=tokens, attention_mask=mask, position_ids=positions, use_cache=True,
                       logits_to_keep=1, **{cache_kwarg: cache}).logits[:, -1]
        new = sample_tokens(logits, temperature, generators).tolist()
        for b, token in enumerate(new):
            if live[b]:
                live[b] = token not in ends
                if live[b]:
                    replies[row_of[b]].append(token)
                    live[b] = not is_done(replies[row_of[b]])
        if not any(live) or step == max_new - 1:
            break
        if live.count(False) >= drop_share * len(live):
            keep = [b for b, alive in enumerate(live) if alive]
            index = torch.tensor(keep, device=mask.device)
            cache.batch_select_indices(index)
            mask, row_of, live = mask[index], [row_of[b] for b in keep], [True] * len(keep)
            generators = None if generators is None else [generators[b] for b in keep]
            new = [new[b] for b in keep]
        tokens = torch.tensor(new, device=mask.device)[:, None]
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
    return replies


class ActionLineDone:
    """`is_done` for agent replies: done once the reply holds a complete action (`has_complete_action_line`).

    Only a reply whose newest token holds a newline is decoded as a whole, so the check costs little per step.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, tokens: list[int]) -> bool:
        if not tokens or "\n" not in self.tokenizer.decode(tokens[-1:]):
            return False
        return has_complete_action_line(self.tokenizer.decode(tokens, skip_special_tokens=True))


def never_done(tokens: list[int]) -> bool:
    """`is_done` for replies read whole: they end at end of turn or at the token cap only."""
    return False


def stop_rule(stop: str, tokenizer) -> tuple[Callable[[list[int]], bool], Callable[[str], str]]:
    """(`decode`'s is_done, the cut applied to the decoded reply) for a request's stop rule (batching.STOP_RULES).

    "action": an agent reply, ended and cut after its first complete action. "none": the whole reply, stripped (the
    verifier's, which quotes "Action: ..." log lines before its verdict).
    """
    if stop == "action":
        return ActionLineDone(tokenizer), cut_reply
    if stop == "none":
        return never_done, str.strip
    raise ValueError(f"unknown stop rule {stop!r}: expected 'action' or 'none'")


def action_end(lines: list[str], complete: int) -> int | None:
    """Index of the line that ends the first complete action among `lines[:complete]` (the lines known to be whole),
    or None. Two layouts: `Action: <action>` on one line, or AgentGym's `Action:` alone with the action on the next
    non-empty line (blank lines skipped, as `trajectory.parse_action` skips them)."""
    for i in range(complete):
        line = lines[i].lstrip()
        if not line.startswith("Action:"):
            continue
        if line[len("Action:"):].strip():
            return i
        # a bare "Action:": its action is the next non-empty whole line; until that is written, none is complete
        return next((j for j in range(i + 1, complete) if lines[j].strip()), None)
    return None


def has_complete_action_line(text: str) -> bool:
    """Does `text`, a reply being written, hold a whole action (`action_end`)? Its last piece has no newline yet, so
    it may still grow: only the lines before it count."""
    lines = text.split("\n")
    return action_end(lines, len(lines) - 1) is not None


def cut_reply(text: str) -> str:
    """Keep the reply up to the end of its first action (`action_end`: the agent format is `Thought: ...\\nAction:
    ...`, the action on the "Action:" line or on the next); anything after it is noise that would only cost context
    tokens. The reply is finished, so its last line counts as whole. A reply without an action is kept whole."""
    lines = text.split("\n")
    end = action_end(lines, len(lines))
    return text.strip() if end is None else "\n".join(lines[:end + 1]).strip()
