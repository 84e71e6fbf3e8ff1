"""KV caches that make agent generation cheap on small hardware: prompts are long and mostly seen before.

An agent's prompt at step t is its prompt at step t-1 plus one reply and one observation; an MCTS child's prompt
extends its parent's; every prompt of an env starts with the same instruction. Measured on SmolLM2-135M with
2 CPU cores, prefill runs at ~350 tok/s, so recomputing 600-1000 prompt tokens per call was most of the time.

- `PrefixStore` keeps the KV of recent prompts (LRU, bounded in MB) and finds, for a new prompt, the stored prompt
  sharing the longest token prefix with it; only the rest is prefilled.
- `GrowingCache` is transformers' DynamicCache with room to grow: DynamicCache concatenates (copies) its whole
  cache at every decoding step, which was 40 % of decode time at 600 tokens of context.
- `assemble` lays out rows that reuse cached prefixes of different lengths as one left-padded batch:
      row i:  [pad × (C - n_i)] [cached n_i tokens] [pad × (R - r_i)] [r_i new tokens]
  Masked holes are fine: positions count real tokens only (as generate computes them), so every cached key sits
  at the position it was computed at.
- `PrefixReuse` is what `Actor.generate` calls: it prefills a batch of prompts on top of their longest stored
  prefixes (the same episode's previous step, the parent node, the instruction) and stores what it computed.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class GrowingLayer(DynamicLayer):
    """A DynamicLayer that writes new states into spare room instead of concatenating (amortised O(new tokens))."""

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n, new = self.get_seq_length(), key_states.shape[-2]
        if not self._owns_room(n + new, key_states):
            self._grow(n, n + new, key_states)
        self._k_room[..., n:n + new, :] = key_states
        self._v_room[..., n:n + new, :] = value_states
        self.keys, self.values = self._k_room[..., :n + new, :], self._v_room[..., :n + new, :]
        return self.keys, self.values

    def _owns_room(self, needed: int, like: torch.Tensor) -> bool:
        # Cache methods such as batch_repeat_interleave replace self.keys with a fresh tensor: the room then no
        # longer backs it and is rebuilt from it (crop keeps a view into the room, which is fine).
        room = getattr(self, "_k_room", None)
        if room is None or room.shape[0] != like.shape[0] or room.shape[-2] < needed:
            return False
        return self.keys.numel() == 0 or self.keys.data_ptr() == room.data_ptr()

    def _grow(self, n: int, needed: int, like: torch.Tensor) -> None:
        capacity = max(needed + 64, 2 * n)
        shape = (*like.shape[:-2], capacity, like.shape[-1])
        self._k_room = like.new_empty(shape)
        self._v_room = like.new_empty(shape)
        if n:
            self._k_room[..., :n, :] = self.keys
            self._v_room[..., :n, :] = self.values


class GrowingCache(DynamicCache):
    def __init__(self, num_layers: int):
        super(DynamicCache, self).__init__(layers=[GrowingLayer() for _ in range(num_layers)])


def supports_prefix_reuse(model) -> bool:
    """Full attention in every layer (sliding-window layers keep only their window: no growing, no reuse)."""
    config = model.config.get_text_config(decoder=True)
    return getattr(config, "sliding_window", None) is None and all(
        t == "full_attention" for t in getattr(config, "layer_types", None) or ["full_attention"])


def num_layers(model) -> int:
    return model.config.get_text_config(decoder=True).num_hidden_layers


def cache_kwarg(model) -> str:
    """transformers 5 renamed `past_key_values` to `cache`; use whichever the model's forward takes."""
    import inspect
    return "cache" if "cache" in inspect.signature(_unwrapped(model).forward).parameters else "past_key_values"


def _unwrapped(model):
    """The transformers model under a peft wrapper (the model itself when there is none)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class PrefixStore:
    """The KV of recently prefilled prompts, keyed by their token ids; least recently used dropped past `max_mb`."""

    def __init__(self, max_mb: float):
        self.max_bytes = int(max_mb * 2**20)
        self.entries: OrderedDict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()
        self.bytes = 0

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0

    def longest(self, ids: list[int]) -> tuple[int, list | None]:
        """(n, kv): the most tokens of `ids` (a prefix) whose KV is stored, and that KV (unsliced; use [:n])."""
        best, best_kv, best_key = 0, None, None
        for key, kv in self.entries.items():
            if min(len(key), len(ids)) <= best:
                continue
            common = common_length(key, ids)
            if common > best:
                best, best_kv, best_key = common, kv, key
        if best_key is not None:
            self.entries.move_to_end(best_key)
        return best, best_kv

    def add(self, ids: list[int], kv: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        key = tuple(ids)
        if self.max_bytes <= 0 or key in self.entries:
            return
        size = _nbytes(kv)
        if size > self.max_bytes:
            return
        self.entries[key] = kv
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, old = self.entries.popitem(last=False)
            self.bytes -= _nbytes(old)


def _nbytes(kv: list[tuple[torch.Tensor, torch.Tensor]]) -> int:
    return sum(t.numel() * t.element_size() for pair in kv for t in pair)


def common_length(a, b) -> int:
    n = min(len(a), len(b))
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if diff.size else n


def shared_prefixes(rows: list[list[int]], min_tokens: int) -> list[list[int]]:
    """The shortest distinct prefixes (≥ `min_tokens`) that at least two rows share: neighbours in sorted order."""
    ordered = sorted(rows)
    found = {tuple(a[:n]) for a, b in zip(ordered, ordered[1:]) if (n := common_length(a, b)) >= min_tokens}
    roots = [p for p in found if not any(q != p and p[:len(q)] == q for q in found)]
    return [list(p) for p in sorted(roots)]


def tail_groups(tails: list[int], slack: float = 1.5, min_tokens: int = 64) -> list[list[int]]:
    """Row indices grouped by how many tokens each must prefill (its tail), so that a group's rows, all computed to
    the longest tail of the group, waste at most `slack` - 1 of the work on padding (tails of `min_tokens` or less
    never start a group of their own). One long tail (a fresh or trimmed prompt) in a batch of short ones would
    otherwise make every row compute its width."""
    groups, current, total = [], [], 0
    for i in sorted(range(len(tails)), key=tails.__getitem__):
        t = tails[i]
        if current and t > min_tokens and (len(current) + 1) * t > slack * (total + t):
            groups.append(current)
            current, total = [], 0
        current.append(i)
        total += t
    return groups + [current] if current else groups


def new_cache(model):
    """A GrowingCache where every layer attends to the whole context, else transformers' own cache for the model."""
    if supports_prefix_reuse(model):
        return GrowingCache(num_layers(model))
    return DynamicCache(config=model.config)


def assemble(rows: list[list[int]], reuse: list[tuple[int, list | None]], pad_id: int, cache,
             device) -> tuple[torch.Tensor, torch.Tensor, DynamicCache, int]:
    """Lay out `rows` (token ids) as one batch on top of their reused prefixes (see the module docstring).

    Returns (input_ids, attention_mask, `cache` (empty on entry) now holding the reused part, C = the reused part's
    width); the columns from C on are not in the cache yet.
    """
    width = max(n for n, _ in reuse)
    rest = max(len(ids) - n for ids, (n, _) in zip(rows, reuse))
    ids = torch.full((len(rows), width + rest), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, (row, (n, _)) in enumerate(zip(rows, reuse)):
        ids[i, width - n:width] = torch.tensor(row[:n], dtype=torch.long)
        mask[i, width - n:width] = 1
        tail = row[n:]
        if tail:
            ids[i, width + rest - len(tail):] = torch.tensor(tail, dtype=torch.long)
            mask[i, width + rest - len(tail):] = 1
    if width:
        example = next(kv for n, kv in reuse if kv is not None)
        for layer in range(len(example)):
            k0 = example[layer][0]
            keys = k0.new_zeros((len(rows), k0.shape[0], width, k0.shape[-1]))
            values = torch.zeros_like(keys)
            for i, (n, kv) in enumerate(reuse):
                if n:
                    keys[i, :, width - n:] = kv[layer][0][:, :n]
                    values[i, :, width - n:] = kv[layer][1][:, :n]
            cache.update(keys, values, layer)
    return ids.to(device), mask.to(device), cache, width


def row_kv(cache, row: int, keep: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One row's KV at the columns `keep` (its real tokens), copied out of the batch: [heads, tokens, dim] per layer."""
    return [(layer.keys[row][:, keep].clone(), layer.values[row][:, keep].clone()) for layer in cache.layers]


class PrefixReuse:
    """Prefills batches of prompts, each on top of the longest prefix of it whose KV is stored (an earlier step of
    the same episode, the parent node, or at least the env's instruction): only the rest is computed, and what is
    computed is stored for the next call.

    `reuses_prefixes` and `groups_prefill` are switches (benchmarks turn them off to measure what they save);
    `weights_may_change` is set for a trainable actor, whose KV would go stale between calls.
    """

    def __init__(self, model, pad_id: int, device, max_mb: float):
        self.store = PrefixStore(max_mb)
        self.pad_id, self.device = pad_id, device
        self.reuses_prefixes = max_mb > 0 and supports_prefix_reuse(model)
        self.groups_prefill = True  # prefill rows with unlike tails in groups (`tail_groups`)
        self.weights_may_change = False
        self.reused_tokens = self.prefilled_tokens = 0  # for benchmarks and the curious

    def clear(self) -> None:
        """Drop stored KV (it belongs to the current weights): called whenever the weights may change."""
        self.store.clear()

    def prefill(self, model, rows: list[list[int]]):
        """(input_ids, attention_mask, KV cache of every row but its last token, which decoding feeds itself)."""
        heads = [row[:-1] for row in rows]
        store = self._storing()
        if store:
            self._store_shared_prefixes(model, heads)
        reuse = [self.store.longest(h) if store else (0, None) for h in heads]
        groups = tail_groups([len(h) - n for h, (n, _) in zip(heads, reuse)]) if store and self.groups_prefill else []
        if len(groups) > 1:  # prefill rows with alike tails together (stored), then lay out the batch from the store
            for group in groups:
                self.prefill(model, [rows[i] for i in group])
            reuse = [self.store.longest(h) for h in heads]  # whole heads, unless the store had to drop some
        ids, mask, cache, width = assemble(rows, reuse, self.pad_id, new_cache(_unwrapped(model)), self.device)
        if ids.shape[1] - 1 > width:
            positions = (mask.long().cumsum(-1) - 1).clamp(min=0)  # generate's rule: count real tokens only
            model(input_ids=ids[:, width:-1], attention_mask=mask[:, :-1], position_ids=positions[:, width:-1],
                  use_cache=True, logits_to_keep=1, **{cache_kwarg(model): cache})
        if store:
            self._keep(heads, reuse, mask, cache, counted=len(groups) > 1)
        return ids, mask, cache

    def _store_shared_prefixes(self, model, heads: list[list[int]]) -> None:
        """Compute once what several prompts of this call share and nobody has stored (on a first call, the env's
        instruction), so that each of them reuses it."""
        todo = [p for p in shared_prefixes(heads, min_tokens=32) if self.store.longest(p)[0] < len(p)]
        if todo:
            self.prefill(model, [p + [self.pad_id] for p in todo])  # the extra last token is never computed

    def _storing(self) -> bool:
        """Whether this call reuses and stores KV: not for a trainable actor, which may be trained between two calls
        and so make stored KV stale (whatever is stored is dropped then)."""
        if not self.reuses_prefixes:
            return False
        if self.weights_may_change:
            self.store.clear()
        return not self.weights_may_change

    def _keep(self, heads: list[list[int]], reuse, mask: torch.Tensor, cache, counted: bool) -> None:
        """Count what was reused and computed (`counted`: the group calls counted the reuse); store the new KV."""
        for i, (head, (n, _)) in enumerate(zip(heads, reuse)):
            if not counted:
                self.reused_tokens += n
            self.prefilled_tokens += len(head) - n
            if len(head) > n:
                self.store.add(head, row_kv(cache, i, mask[i, :-1].bool()))

