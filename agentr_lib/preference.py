"""ETO's preference stage (Table 2's "ETO" baseline: SFT, then DPO on good/bad pairs), on TRL's `DPOTrainer`.

A *pair* is `revision.preference_pair`'s dict
    {"prompt": [messages], "chosen": [messages], "rejected": [messages], "env": str, "task_id": int, ...}
`prompt` is the conversation up to where the good and bad paths part (it ends with a user turn); `chosen` and
`rejected` are the two continuations, agent replies (assistant) and env observations (user) alternating.

What is trained: the DPO loss over the *agent's* tokens of each continuation only. The observations are the env's,
not the policy's choice (ETO's implementation masks them too), so they are context, never scored. TRL 1.16 cannot
say so by itself: its tokenizer scores every token of a conversational completion (its completion mask is prompt 0 /
completion 1), and it has no assistant-only mask for preference data. So the pairs are tokenised here, with the
loss mask of `data.tokenize_conversation` (the one place where the SFT mask lives: agent replies and their
end-of-turn token, no headers, no observations), the trainer is told to take the dataset as it is, and a small
collator puts that mask where TRL reads it (`completion_mask`, which becomes the labels that the fused output head
scores). Everything else (the loss, the reference forward, optimiser, schedule, checkpoints, logging of reward
accuracies and margins) is TRL's and the HF Trainer's.

The reference is the policy as DPO finds it: ETO's reference is the SFT model, here the LoRA adapter that SFT has just
trained. Given a peft model (and neither `peft_config` nor `ref_model`), TRL 1.16 copies the active adapter into a
frozen "ref" adapter and computes the reference log-probabilities through it; the adapter-disabled base (what TRL
uses for a *new* adapter) would be the model before SFT, i.e. the wrong reference. The copy costs one LoRA's memory
and a no-grad forward per step; `train_dpo` checks that the copy exists and removes it when training ends, so the
saved adapter and the actor hold only the trained one. A model without LoRA gets a frozen copy of itself.

Layout under `output_dir` (as `train.train_sft`):
    checkpoints/checkpoint-<step>/   Trainer checkpoints (a killed run resumes from the last complete one)
    adapter/                          the final adapter and tokenizer (written to a temp folder, then renamed)
    train_metrics.json                loss and reward curves, tokens, wall time, peak memory, resolved settings
"""
from __future__ import annotations

import copy
import dataclasses
import shutil
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import torch
from datasets import Dataset

from .config import TrainCfg
from .data import IGNORE_INDEX, tokenize_conversation
from .files import write_json
from .train import (
    Resolved,
    last_complete_checkpoint,
    last_logged_loss,
    loss_curve,
    pad_id_of,
    peak_memory,
    quiet_transformers,
    reset_peak_memory,
    resolve_auto,
    save_adapter_atomic,
    training_arguments,
)
from .trajectory import trim_context

SIDES = ("chosen", "rejected")
REF_ADAPTER = "ref"  # the name TRL gives its frozen copy of the adapter (dpo_trainer.py)
REWARD_KEYS = ("rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected", "logps/chosen",
               "logps/rejected")


# --------------------------------------------------------------------------------------------------- training
def train_dpo(model, tokenizer, pairs: list[dict] | Dataset, settings: TrainCfg, output_dir: str | Path,
              epochs: float = 1, seed: int = 0, beta: float = 0.1, callbacks: list | None = None) -> dict:
    """DPO of `model` (a peft model: its active adapter trains; or any causal LM) on good/bad `pairs`, against the
    model as it is now as reference, scoring only the agent's tokens of each continuation.

    `settings` is the same train section as SFT's (learning rate, batch size = pairs per device step, accumulation,
    max_length, schedule, optimiser, checkpoints; `group_by_length` and `trained_logits_only` are SFT's only: TRL's
    fused output head never builds the whole logits, and with triton on CUDA projects only the scored positions);
    `epochs` is this call's number, `seed` the data order's (and the Trainer's RNG's).
    A pair longer than `settings.max_length` loses its oldest shared steps first (`pair_features`). Resumes from the
    last complete checkpoint under `output_dir/checkpoints` when there is one (given the same starting model).
    Writes `output_dir/adapter` and `output_dir/train_metrics.json`; returns the metrics.
    """
    quiet_transformers()
    output_dir = Path(output_dir)
    dataset, data_report = preference_dataset(pairs, tokenizer, settings.max_length)
    resolved = replace(resolve_auto(model, settings), shared_prefix=False)  # TRL's own loss: no trie here
    collator = AgentTokenCollator(pad_id_of(tokenizer), settings.max_length)
    use_cache = getattr(model.config, "use_cache", None)
    args = dpo_config(settings, resolved, output_dir / "checkpoints", epochs, seed, beta)
    drop_reference_adapter(model)  # a copy left by a call that failed: TRL cannot add a second one by that name
    trainer = dpo_trainer_class()(model=model, ref_model=None if is_peft(model) else frozen_copy(model), args=args,
                                  train_dataset=dataset, data_collator=collator, processing_class=tokenizer,
                                  callbacks=callbacks)
    try:
        check_reference(model, trainer)
        resume = last_complete_checkpoint(output_dir / "checkpoints")
        reset_peak_memory()
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Could not find a config file")  # see save_adapter_atomic
            # TRL's reference forward asks a transformers-5 model a deprecated question, once per step
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
            result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        wall = time.perf_counter() - start
    finally:
        drop_reference_adapter(model)
    model.config.use_cache = use_cache  # the Trainer turned it off; generation wants it back
    model.eval()
    adapter_dir = save_adapter_atomic(model, tokenizer, output_dir / "adapter")
    metrics = {
        "method": "dpo",
        "pairs": len(pairs),
        "beta": beta,
        "global_step": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "train_loss": result.training_loss,  # mean over the steps run in this call
        "first_loss": first_logged_loss(trainer.state.log_history),  # log 2 at the reference (policy == reference)
        "final_loss": last_logged_loss(trainer.state.log_history),
        "loss_curve": loss_curve(trainer.state.log_history),
        "reward_curve": reward_curve(trainer.state.log_history),
        **last_rewards(trainer.state.log_history),
        "train_tokens": collator.tokens,  # non-pad tokens of chosen + rejected sequences processed in this call
        "train_loss_tokens": collator.loss_tokens,  # of which scored (agent tokens)
        "tokens_per_s": collator.tokens / wall if wall > 0 else None,
        "wall_s": wall,
        **peak_memory(resolved.device),
        "resumed_from": resume.name if resume else None,
        "data": data_report,
        "settings": {**settings.model_dump(mode="json"), "epochs": epochs, "seed": seed, "beta": beta},
        "resolved": {**asdict(resolved), "reference": "initial policy (frozen copy of the adapter)" if is_peft(model)
                     else "initial policy (frozen copy of the model)"},
        "adapter": str(adapter_dir),
    }
    write_json(output_dir / "train_metrics.json", metrics)
    if not settings.keep_checkpoints:
        shutil.rmtree(output_dir / "checkpoints", ignore_errors=True)
    return metrics


def train_actor_dpo(actor, pairs, settings: TrainCfg, output_dir: str | Path, epochs: float = 1, seed: int = 0,
                    beta: float = 0.1, callbacks: list | None = None) -> dict:
    """`train_dpo` on an `actor.Actor` (its trainable peft model and tokenizer)."""
    return train_dpo(actor.model, actor.tokenizer, pairs, settings, output_dir, epochs, seed, beta, callbacks)


def dpo_config(settings: TrainCfg, resolved: Resolved, checkpoint_dir: Path, epochs: float, seed: int, beta: float):
    """SFT's `train.training_arguments` (same settings, same mapping) as a DPOConfig, plus DPO's own knobs."""
    from transformers import TrainingArguments
    from trl import DPOConfig

    base = training_arguments(settings, resolved, checkpoint_dir, epochs, seed)
    shared = {f.name: getattr(base, f.name) for f in dataclasses.fields(TrainingArguments) if f.init}
    return DPOConfig(
        **shared,
        beta=beta,
        loss_type=["sigmoid"],  # the DPO loss of Rafailov et al., ETO's
        max_length=settings.max_length,  # the pairs already fit (pair_features); the collator's cut is a backstop
        # No dropout in policy or reference: at step 0 the two are then the same function (loss exactly log 2) and the
        # reference log-probabilities are those of the policy DPO started from, not of a dropped-out sample of it.
        disable_dropout=True,
        precompute_ref_log_probs=False,  # the frozen adapter copy is the reference (see the module docstring)
    )


def dpo_trainer_class():
    """TRL's DPOTrainer, taking the pairs as `preference_dataset` tokenised them (with the agent-token mask)."""
    from trl import DPOTrainer

    class AgentDPOTrainer(DPOTrainer):
        def __init__(self, *args, model, **kwargs):
            # TRL casts a 4-bit model's trainable adapter weights to bf16 (the QLoRA paper's recipe). The kit's SFT
            # trains them in fp32 under autocast, and TRL's reference copy of the adapter stays fp32: keep the
            # adapter as SFT left it, so that the policy at step 0 is exactly the reference. The optimiser is made
            # in `train`, after this.
            dtypes = {n: p.dtype for n, p in model.named_parameters() if p.requires_grad}
            super().__init__(*args, model=model, **kwargs)
            for name, param in model.named_parameters():
                if name in dtypes and param.dtype != dtypes[name]:
                    param.data = param.data.to(dtypes[name])

        def _prepare_dataset(self, dataset, *args, **kwargs):
            return dataset  # already tokenised, masks included; TRL's tokenizer would score the observations

        def _send_telemetry(self):
            pass  # nothing leaves the machine (TRL pings the hub when a trainer starts, unless offline)

    return AgentDPOTrainer


def is_peft(model) -> bool:
    from peft import PeftModel
    return isinstance(model, PeftModel)


def frozen_copy(model):
    """The reference for a model without LoRA: itself as it is now, frozen (TRL would reload it by name)."""
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def check_reference(model, trainer) -> None:
    """The reference must be the starting policy. With a peft model that is TRL's "ref" copy of the adapter; without
    it (a TRL that falls back to the adapter-disabled base), DPO would pull the policy towards the pre-SFT model."""
    if is_peft(model) and trainer.ref_model is None and REF_ADAPTER not in model.peft_config:
        raise RuntimeError("DPOTrainer made no frozen copy of the adapter: its reference would be the base model "
                           "without the SFT adapter, not the SFT policy (this TRL version is not supported)")


def drop_reference_adapter(model) -> None:
    """Remove TRL's frozen adapter copy: the actor keeps (and saves) only the trained adapter."""
    if is_peft(model) and REF_ADAPTER in model.peft_config:
        model.delete_adapter(REF_ADAPTER)


# --------------------------------------------------------------------------------------------------- data
def preference_dataset(pairs: list[dict] | Dataset, tokenizer, max_length: int) -> tuple[Dataset, dict]:
    """Tokenise every pair (`pair_features`); drop those left with no agent token in a continuation. Returns the
    dataset (prompt_ids, chosen_ids, rejected_ids, chosen_mask, rejected_mask, length) and a small report."""
    rows = pairs if isinstance(pairs, list) else pairs.to_list()
    feats = [pair_features(p, tokenizer, max_length) for p in rows]
    kept = [f for f in feats if f is not None]
    if not kept:
        raise ValueError(f"no preference pair has an agent token on both sides within max_length={max_length}")
    trimmed = [f.pop("trimmed_steps") for f in kept]  # a report column, not a training one
    report = {
        "pairs": len(rows), "kept": len(kept), "dropped_no_loss": len(rows) - len(kept),
        "prompt_trimmed": sum(t > 0 for t in trimmed),  # pairs whose prompt lost old steps
        "at_max_length": sum(f["length"] >= max_length for f in kept),  # a side still cut at max_length
        "tokens": sum(len(f["prompt_ids"]) * 2 + len(f["chosen_ids"]) + len(f["rejected_ids"]) for f in kept),
        "loss_tokens": sum(sum(f["chosen_mask"]) + sum(f["rejected_mask"]) for f in kept),
    }
    return Dataset.from_list(kept), report


def pair_features(pair: dict, tokenizer, max_length: int) -> dict | None:
    """One pair as TRL's token columns (prompt_ids + chosen_ids / rejected_ids) with a 0/1 mask per continuation
    token: 1 on the agent's tokens (`data.tokenize_conversation`'s labels), 0 on the observations and headers.

    Length: a pair longer than `max_length` loses its prompt's oldest shared steps first (`trajectory.trim_context`:
    the system prompt, instruction and first step stay, as in the actor's context at inference), then a side still
    too long is cut at its end (TRL's `keep_start`). None when a side keeps no agent token. A continuation's
    trailing observation is left out: causal attention makes it unable to change any scored token's probability.
    """
    prompt = [{**m, "loss": False} for m in pair["prompt"]]  # context only, whatever its flags say
    sides = {s: up_to_last_trained(pair[s]) for s in SIDES}
    trimmed = trim_context(prompt, lambda msgs: all(token_count(msgs + sides[s], tokenizer) <= max_length
                                                    for s in SIDES))
    encoded = {s: tokenize_conversation(trimmed + sides[s], tokenizer, max_length) for s in SIDES}
    if any(e is None for e in encoded.values()):
        return None
    ids = {s: encoded[s]["input_ids"] for s in SIDES}
    masks = {s: [int(lab != IGNORE_INDEX) for lab in encoded[s]["labels"]] for s in SIDES}
    # The prompt is what both sequences share, up to the first scored token (TRL puts one prompt before both).
    n = min(common_prefix(ids["chosen"], ids["rejected"]), *(m.index(1) for m in masks.values()))
    return {"prompt_ids": ids["chosen"][:n],
            **{f"{s}_ids": ids[s][n:] for s in SIDES},
            **{f"{s}_mask": masks[s][n:] for s in SIDES},
            "length": max(len(ids[s]) for s in SIDES),
            "trimmed_steps": (len(prompt) - len(trimmed)) // 2}


def up_to_last_trained(messages: list[dict]) -> list[dict]:
    """`messages` through its last agent turn with loss (the observation after it is dropped)."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant" and m["loss"]), default=-1)
    return messages[:last + 1]


def token_count(messages: list[dict], tokenizer) -> int:
    from .data import render
    return len(tokenizer(render(messages, tokenizer), add_special_tokens=False).input_ids)


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class AgentTokenCollator:
    """TRL's `DataCollatorForPreference` (prompt + chosen rows, then prompt + rejected rows, right-padded), with its
    completion mask (1 on every continuation token) replaced by the agent-token mask of `pair_features`: TRL scores
    exactly the tokens whose mask is 1. Counts the tokens it sees, for tokens/s."""

    def __init__(self, pad_id: int, max_length: int):
        from trl.trainer.dpo_trainer import DataCollatorForPreference
        self.inner = DataCollatorForPreference(pad_token_id=pad_id, max_length=max_length)
        self.max_length = max_length
        self.tokens = 0
        self.loss_tokens = 0

    def __call__(self, examples: list[dict]) -> dict:
        batch = self.inner(examples)
        width = batch["input_ids"].shape[1]
        masks = [([0] * len(e["prompt_ids"]) + list(e[f"{s}_mask"]))[:self.max_length]
                 for s in SIDES for e in examples]  # the row order of the inner collator
        batch["completion_mask"] = torch.tensor([m + [0] * (width - len(m)) for m in masks], dtype=torch.long)
        self.tokens += int(batch["attention_mask"].sum())
        self.loss_tokens += int(batch["completion_mask"].sum())
        return batch


# --------------------------------------------------------------------------------------------------- metrics
def first_logged_loss(log_history: list[dict]) -> float | None:
    return next((e["loss"] for e in log_history if "loss" in e), None)


def reward_curve(log_history: list[dict]) -> list[dict]:
    """TRL's logged DPO diagnostics per logging step: implicit rewards (beta x log-ratio to the reference) of chosen
    and rejected, their margin, the share of pairs ranked right, and the policy's summed log-probabilities."""
    return [{"step": e["step"], **{k: e[k] for k in REWARD_KEYS if k in e}}
            for e in log_history if "loss" in e and any(k in e for k in REWARD_KEYS)]


def last_rewards(log_history: list[dict]) -> dict:
    curve = reward_curve(log_history)
    last = curve[-1] if curve else {}
    return {"reward_accuracy": last.get("rewards/accuracies"), "reward_margin": last.get("rewards/margins")}
