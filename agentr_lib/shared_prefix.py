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
from .kv_cache import cache_kwarg, common_length, tail_groups


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
    Trainer's token-level mean over the step.

    Sibling runs (one parent, so one start) are computed together, a batch of rows right-padded to the longest of
    them (`kv_cache.tail_groups` keeps runs of unlike lengths apart): one forward per batch, not per run, since on
    a CPU a forward and backward of SmolLM2-135M costs ~0.15 s however few its tokens."""
    total = torch.zeros((), device=device, dtype=torch.float32)
    count = 0
    stack = [(prefix_trie(input_ids), None)]  # sibling runs, and the KV of the tokens before them
    while stack:
        runs, past = stack.pop()
        for group in tail_groups([r.end - r.start for r in runs]):
            batch = [runs[i] for i in group]
            kvs, loss, n = _forward_siblings(model, batch, past, input_ids, labels, device)
            total, count = total + loss, count + n
            stack.extend((run.children, kv) for run, kv in zip(batch, kvs) if run.children)
    return total, count


def _forward_siblings(model, runs: list[Run], past, input_ids, labels, device):
    """Compute sibling runs on top of their parent's KV (`past`: per layer (keys, values) of one row, with their
    autograd history), one row each, right-padded: a real token attends only to earlier positions, all real, so
    no padding mask is needed and the pad's outputs are never read. Returns each run's KV through its own end
    (for its children), and the loss sum and count of the labels that the runs' positions predict (position t
    predicts token t + 1, which for a run's last position is each child's own first token)."""
    start, width = runs[0].start, max(r.end - r.start for r in runs)
    ids = torch.empty((len(runs), width), dtype=torch.long)
    flat, targets = [], []  # kept positions, row-major over the batch (the order the output head returns them in)
    for b, run in enumerate(runs):
        tokens = input_ids[run.rows[0]][run.start:run.end]
        ids[b] = torch.tensor(tokens + tokens[-1:] * (width - len(tokens)))
        for i in run.rows:
            row = labels[i]
            for t in range(run.start, min(run.end, len(row) - 1)):
                if row[t + 1] != IGNORE_INDEX:
                    flat.append(b * width + t - run.start)
                    targets.append(row[t + 1])
    keep = torch.zeros(ids.numel(), dtype=torch.bool)
    keep[flat] = True
    rows = len(runs)
    cache = DynamicCache(ddp_cache_data=[(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in past]
                         if past else None)  # a fresh cache per batch: a child's update must not grow its sibling's
    out = model(input_ids=ids.to(device), position_ids=torch.arange(start, start + width, device=device)[None]
                .expand(rows, -1), use_cache=True, logits_to_keep=keep.view(rows, width).to(device) if flat else 1,
                **{cache_kwarg(model): cache})
    kvs = [[(layer.keys[b:b + 1, :, :run.end], layer.values[b:b + 1, :, :run.end]) for layer in cache.layers]
           if run.children else None for b, run in enumerate(runs)]
    if not flat:
        return kvs, torch.zeros((), device=device), 0
    kept = torch.nonzero(keep).squeeze(-1)  # the head's rows: the kept positions, in order
    logits = out.logits.reshape(-1, out.logits.shape[-1]).float()
    logits = logits[torch.searchsorted(kept, torch.tensor(flat)).to(logits.device)]
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(targets, device=device), reduction="sum")
    return kvs, loss, len(targets)
