"""Training on trees, not on copies: the tokens that samples of one optimizer step share are computed once.

Every sample of an env starts with the same instruction (~430 tokens for TextCraft, most of a short sample), and
samples made from one MCTS tree share the path down to where they diverge. Trained one by one, each sample
recomputes all of that, forward and backward. Here the samples of a step are laid out as a trie of token runs
(`prefix_trie`); each run is computed once, on top of its parent's KV cache, and the cache's tensors keep their
autograd history, so the backward pass also flows through every shared token once. The loss is the sum over
samples of their own labelled tokens' cross-entropy (a shared token labelled in two samples counts twice, as it
would one by one), so loss and gradients equal those of the samples taken one by one, up to float rounding
(tests/test_shared_prefix.py, fp32). Labels stay per sample: the same turn may be trained in a good path and be
context in a revision sample that shares it (the bad prefix).

Positions continue after the parent's tokens, and the parent's last hidden state predicts each child's first
token. The output head runs only where some sample has a label (the same saving as `trained_logits_only`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from .data import IGNORE_INDEX
from .kv_cache import cache_kwarg, common_length


@dataclass
class Run:
    """A run of tokens `[start, end)` that the samples `rows` share; its children continue it."""
    start: int
    end: int
    rows: list[int]
    children: list[Run] = field(default_factory=list)


def prefix_trie(rows: list[list[int]]) -> list[Run]:
    """The trie of `rows` (token ids): top-level runs, each the longest stretch its rows share from its start."""
    return _runs(rows, list(range(len(rows))), 0)


def _runs(rows: list[list[int]], members: list[int], start: int) -> list[Run]:
    groups: dict[int, list[int]] = {}
    for i in members:
        if len(rows[i]) > start:
            groups.setdefault(rows[i][start], []).append(i)
    runs = []
    for group in groups.values():
        first = rows[group[0]]
        end = min(start + common_length(first[start:], rows[i][start:]) for i in group)
        runs.append(Run(start, end, group, _runs(rows, group, end)))
    return runs


def computed_tokens(runs: list[Run]) -> int:
    """Tokens the trie computes (each shared token once): the work of a step, vs sum(len(row)) one by one."""
    return sum(r.end - r.start + computed_tokens(r.children) for r in runs)


def shared_prefix_loss(model, input_ids: list[list[int]], labels: list[list[int]], device) -> tuple[torch.Tensor, int]:
    """(sum of the cross-entropy of every labelled token of every row, number of labelled tokens).

    `labels[i][t]` is the target of row i's token t (its own id where trained, -100 elsewhere), as for a causal LM
    whose loss shifts: position t - 1 predicts it. Dividing the sum by the step's labelled tokens gives the
    Trainer's token-level mean over the step."""
    total = torch.zeros((), device=device, dtype=torch.float32)
    count = 0
    stack = [(run, None) for run in prefix_trie(input_ids)]
    while stack:
        run, past = stack.pop()
        kv, loss, n = _forward_run(model, run, past, input_ids, labels, device)
        total, count = total + loss, count + n
        stack.extend((child, kv) for child in run.children)
    return total, count


def _forward_run(model, run: Run, past, input_ids, labels, device):
    """Compute one run on top of its parent's KV (`past`: per layer (keys, values), with their autograd history);
    returns the KV through the run's end, and the loss sum and count of the labels that the run's positions
    predict (position t predicts token t + 1, which for the run's last position is each child's own first token)."""
    ids = torch.tensor([input_ids[run.rows[0]][run.start:run.end]], device=device)
    cache = DynamicCache(ddp_cache_data=past)  # a fresh cache per run: a child's update must not grow its sibling's
    positions, targets = [], []
    for i in run.rows:
        row = labels[i]
        for t in range(run.start, min(run.end, len(row) - 1)):
            if row[t + 1] != IGNORE_INDEX:
                positions.append(t - run.start)
                targets.append(row[t + 1])
    keep = torch.zeros(ids.shape, dtype=torch.bool, device=device)
    keep[0, positions] = True
    out = model(input_ids=ids, position_ids=torch.arange(run.start, run.end, device=device)[None],
                use_cache=True, logits_to_keep=keep if positions else 1, **{cache_kwarg(model): cache})
    kv = [(layer.keys, layer.values) for layer in cache.layers] if run.children else None  # the run grew it
    if not positions:
        return kv, torch.zeros((), device=device), 0
    kept = torch.tensor(sorted(set(positions)), device=device)  # the head's rows: the kept positions, in order
    logits = out.logits.reshape(-1, out.logits.shape[-1]).float()
    logits = logits[torch.searchsorted(kept, torch.tensor(positions, device=device))]
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(targets, device=device), reduction="sum")
    return kv, loss, len(targets)
