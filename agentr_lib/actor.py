"""The actor: a causal LM and its tokenizer that write replies to chat conversations, and learn through LoRA.

Its weights, precision and device come from models.py (`load_base`), its settings from `config.ModelCfg`; the KV
of prompts seen before is reused through kv_cache.py (`PrefixReuse`); decoding.py runs the decoding loop.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from . import models
from .batching import check_stop, derive_seed
from .config import ModelCfg
from .decoding import decode, end_of_turn_ids, row_generators, stop_rule
from .kv_cache import PrefixReuse, cache_kwarg, common_length
from .models import load_base
from .trajectory import trim_context


def load_actor(model_cfg: ModelCfg, adapter: str | Path | None = None, trainable: bool = False,
               seed: int = 0) -> Actor:
    """The actor; `adapter` is a saved LoRA adapter to put on top; `trainable` readies LoRA training (continuing
    from `adapter` when given); `seed` fixes the weights of the tiny random model and a new adapter's."""
    if adapter is not None:
        models.check_adapter(adapter)  # a half-written folder: named before the base model loads
    model, tokenizer, device = load_base(model_cfg, seed)
    actor = Actor(model, tokenizer, model_cfg, device)
    if adapter is not None:
        actor.model = models.load_adapter(model, adapter, trainable)
        if not trainable:
            actor.merge_lora()
    if trainable:
        actor.trainable(seed)
    return actor


class Actor:
    """A loaded model + tokenizer; satisfies `agentr_lib.batching.ChoosingPolicy` (a Policy that also `choose`s).

    Speed: `generate` batches all conversations of one call, and for k samples per conversation prefills each prompt
    once and forks its KV cache k ways (DESIGN.md, "Actor and speed": prefill is most of the time on long prompts,
    and HF's `num_return_sequences` prefills every copy). Each prompt also reuses the stored KV of the longest prompt
    prefix seen before (the same episode's previous step, the parent node, the instruction): see kv_cache.py.
    Decoding is a short loop of our own (decoding.py: finished rows leave the batch, cheap exact sampling), and an
    fp32 actor that only generates runs with its LoRA weights merged (`merge_lora`).
    """

    def __init__(self, model, tokenizer, cfg: ModelCfg, device: torch.device):
        self.model, self.tokenizer, self.cfg, self.device = model, tokenizer, cfg, device
        self.eos_token_ids = end_of_turn_ids(tokenizer, model)
        self.prefixes = PrefixReuse(model, tokenizer.pad_token_id, device, cfg.prefix_cache_mb)

    @property
    def is_quantized(self) -> bool:
        return models.is_4bit(self.model)

    @property
    def lora_merged(self) -> bool:
        return models.lora_merged(self.model)

    # -- prompts ------------------------------------------------------------------------------------------------
    def prompt_text(self, messages: list[dict]) -> str:
        chat = [{"role": m["role"], "content": m["content"]} for m in messages]  # drop our `loss` flags
        return self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)

    def count_tokens(self, messages: list[dict]) -> int:
        """Tokens of the prompt that `generate` would build from `messages` (generation prompt included)."""
        return len(self.tokenizer(self.prompt_text(messages), add_special_tokens=False).input_ids)

    def fits(self, max_tokens: int) -> Callable[[list[dict]], bool]:
        """A predicate on conversations: does its prompt (`count_tokens`) take at most `max_tokens` tokens?"""
        return lambda messages: self.count_tokens(messages) <= max_tokens

    def fit_context(self, messages: list[dict], max_new_tokens: int) -> list[dict]:
        return trim_context(messages, self.fits(self.cfg.max_context_tokens - max_new_tokens))

    # -- generation ---------------------------------------------------------------------------------------------
    def generate(self, conversations: list[list[dict]], num_samples: int = 1, temperature: float = 1.0,
                 max_new_tokens: int | None = None, seeds: list[int | None] | None = None,
                 stop: str = "action") -> list[list[str]]:
        """`num_samples` replies per conversation, each ended at its end-of-turn and by its `stop` rule ("action":
        after its first complete action, and cut there; "none": only the token cap, the reply kept whole).

        temperature 0 is greedy. `seeds` (one per conversation): sample j of conversation i is drawn from its own
        stream, seeded by (seeds[i], j), so it does not depend on the other conversations of the call, on how they
        are batched, or on prefix reuse (up to float rounding: README, reproducibility). A missing seed (None) is
        drawn from torch's global RNG.
        """
        check_stop(stop)
        if not conversations:
            return []
        max_new = max_new_tokens or self.cfg.max_new_tokens
        if temperature <= 0 and num_samples > 1:  # greedy samples are all alike: decode one, copy it
            return [r * num_samples for r in self.generate(conversations, 1, temperature, max_new, stop=stop)]
        seeds = [int(torch.randint(2**62, ())) if s is None else s for s in seeds or [None] * len(conversations)]
        texts = [self.prompt_text(self.fit_context(c, max_new)) for c in conversations]
        lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False).input_ids]
        order = sorted(range(len(texts)), key=lengths.__getitem__)  # like lengths together: less padding
        per_batch = max(1, self.cfg.generate_batch_size // num_samples)
        replies: list[list[str]] = [[] for _ in texts]
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(order), per_batch):
                idx = order[start:start + per_batch]
                batch = self._generate_batch([texts[i] for i in idx], num_samples, temperature, max_new,
                                             [seeds[i] for i in idx], stop)
                for i, r in zip(idx, batch):
                    replies[i] = r
        finally:
            self.model.train(was_training)
        return replies

    @torch.inference_mode()
    def _generate_batch(self, texts: list[str], k: int, temperature: float, max_new: int,
                        seeds: list[int] | None = None, stop: str = "action") -> list[list[str]]:
        rows = self.tokenizer(texts, add_special_tokens=False).input_ids
        ids, mask, cache = self.prefixes.prefill(self.model, rows)
        if k > 1:  # k samples for the price of one prefill: fork each prompt's KV cache k ways
            cache.batch_repeat_interleave(k)
            ids, mask = ids.repeat_interleave(k, dim=0), mask.repeat_interleave(k, dim=0)
        # row i*k + j (sample j of prompt i) draws from the stream (seeds[i], j); no seeds: torch's global RNG
        streams = row_generators([derive_seed(s, j) for s in seeds for j in range(k)]) if seeds else None
        is_done, cut = stop_rule(stop, self.tokenizer)
        new_tokens = decode(self.model, ids, mask, cache, max_new, temperature, self.eos_token_ids, is_done,
                            cache_kwarg(self.model), generators=streams)
        replies = [cut(self.tokenizer.decode(t, skip_special_tokens=True)) for t in new_tokens]
        return [replies[i * k:(i + 1) * k] for i in range(len(texts))]

    # -- choosing among fixed continuations -------------------------------------------------------------------
    def choose(self, conversations: list[list[dict]], reply_prefixes: list[str],
               choices: tuple[str, ...]) -> list[str]:
        """Per conversation, the member of `choices` whose tokens (" " + choice) are most likely after the reply
        prefix (summed log-probability; ties go to the first in `choices`): a verdict forced from a verifier that
        wrote none (`batching.ChoosingPolicy`). Deterministic: no sampling."""
        if len(reply_prefixes) != len(conversations):
            raise ValueError(f"{len(conversations)} conversations but {len(reply_prefixes)} reply prefixes")
        if not choices:
            raise ValueError("choose needs at least one choice")
        was_training = self.model.training
        self.model.eval()
        try:
            scores = [self.choice_scores(c, p, choices) for c, p in zip(conversations, reply_prefixes)]
        finally:
            self.model.train(was_training)
        return [choices[row.index(max(row))] for row in scores]  # index(): the first of equal maxima

    @torch.inference_mode()
    def choice_scores(self, conversation: list[dict], reply_prefix: str, choices: tuple[str, ...]) -> list[float]:
        """Summed log-probability of each choice's tokens after `conversation`'s prompt (as `generate` builds it) and
        `reply_prefix`: one forward pass, one row per choice, right-padded (causal attention: the padding after a
        row's tokens changes none of its logits).

        A choice is scored as the tokens of prompt + prefix + " " + choice after the ones it shares with prompt +
        prefix: the tokenizer may merge across the boundary, so the scored tokens may start a little before " ".
        """
        pieces = [reply_prefix + " " + c for c in choices]
        budget = max(len(self.tokenizer(p, add_special_tokens=False).input_ids) for p in pieces)
        prompt = self.prompt_text(self.fit_context(conversation, budget))
        base = self.tokenizer(prompt + reply_prefix, add_special_tokens=False).input_ids
        rows = self.tokenizer([prompt + p for p in pieces], add_special_tokens=False).input_ids
        starts = [max(1, common_length(base, r)) for r in rows]  # first scored token per row; it needs a predecessor
        width, first = max(map(len, rows)), min(starts) - 1  # logits from position `first` on predict scored tokens
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), 1
        # only the positions that predict scored tokens go through the output head (vocabulary x prompt is large)
        logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                            logits_to_keep=width - first).logits
        logp = torch.log_softmax(logits.float(), dim=-1).cpu()
        return [sum(logp[i, t - 1 - first, r[t]].item() for t in range(start, len(r)))
                for i, (r, start) in enumerate(zip(rows, starts))]

    def forget_prefixes(self) -> None:
        """Drop stored KV (it belongs to the current weights): called whenever the weights may change."""
        self.prefixes.clear()

    # -- LoRA (models.py) ---------------------------------------------------------------------------------------
    def trainable(self, seed: int = 0) -> Actor:
        """Add LoRA (new weights initialised from `seed`, or the loaded adapter's) so that only they train; returns
        self. Its weights may then change between calls, which would make stored KV stale: none is reused from now."""
        self.prefixes.weights_may_change = True
        self.forget_prefixes()
        self.model = models.add_lora(self.model, self.cfg, seed)
        return self

    def merge_lora(self) -> None:
        """Fold LoRA into fp32 base weights, for an actor that only generates (`models.merge_lora`)."""
        models.merge_lora(self.model)

    def save_adapter(self, path) -> None:
        models.save_adapter(self.model, self.tokenizer, path)
