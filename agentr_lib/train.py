"""Masked SFT of the actor (LoRA / QLoRA) on top of the HF Trainer; checkpoints, resume, an atomic final adapter.

Why the plain HF `Trainer` and not TRL's `SFTTrainer`: our labels are already made, once, by
`data.tokenize_conversation` (the one place where the loss mask lives). SFTTrainer would re-derive a mask of its
own (completion-only / assistant-only masks need `{% generation %}` tags that the SmolLM2 and Llama-3.1 templates
lack) and may append EOS tokens or pack sequences; with the plain Trainer and a small padding collator nothing
can change the mask on the way to the loss. Everything else (optimisers, schedules, checkpoint/resume, gradient
accumulation with a correct token-level loss average, progress bar) is the Trainer's. One addition: the output
head runs only at positions that predict a trained token (PaddingCollator), which saves most of the logits'
memory without changing the loss.

Layout under `output_dir`:
    checkpoints/checkpoint-<step>/   Trainer checkpoints (adapter + optimiser + scheduler + RNG state)
    adapter/                          the final adapter and tokenizer (written to a temp folder, then renamed)
    train_metrics.json                loss curve, tokens, tokens/s, wall time, peak memory, resolved settings
"""
from __future__ import annotations

import os
import re
import resource
import shutil
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from datasets import Dataset

from .config import TrainCfg
from .data import IGNORE_INDEX, tokenize_dataset
from .files import write_dir, write_json
from .kv_cache import supports_prefix_reuse
from .shared_prefix import shared_prefix_loss


@dataclass
class Resolved:
    device: str
    quantized_4bit: bool
    optim: str
    gradient_checkpointing: bool
    precision: str  # "bf16" / "fp16" autocast on CUDA; "as loaded" on CPU
    shared_prefix: bool  # a step's samples trained as one trie (shared_prefix.py)


def resolve_auto(model, settings: TrainCfg) -> Resolved:
    """Fill in the "auto" settings from where the model lives and whether it is 4-bit."""
    device = next(model.parameters()).device.type
    cuda = device == "cuda"
    four_bit = is_4bit(model)
    optim = settings.optim
    if optim == "auto":
        # Paged 8-bit AdamW is the QLoRA recipe on GPUs; bitsandbytes' paged optimisers need CUDA.
        optim = "paged_adamw_8bit" if cuda and four_bit else "adamw_torch"
    gc = settings.gradient_checkpointing
    gc = cuda if gc == "auto" else bool(gc)
    # On CPU no autocast: the model runs in the dtype it was loaded in (bf16 compute for NF4, fp32 adapters).
    precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "as loaded"
    shared = settings.shared_prefix
    shared = not gc and supports_prefix_reuse(model) if shared == "auto" else shared
    return Resolved(device, four_bit, optim, gc, precision, bool(shared))


def is_4bit(model) -> bool:
    return any(type(p).__name__ == "Params4bit" for p in model.parameters())


class PaddingCollator:
    """Right-pads a batch: input ids with the pad id, attention mask with 0, labels with -100 (padding never
    carries loss). Counts the real (non-pad) and labelled tokens it sees, for tokens/s.

    With `trained_logits_only`, the batch also says where the output head is needed: `logits_to_keep`, a
    (batch, seq) boolean mask of the positions whose next token is labelled, and `shift_labels`, those next tokens
    in the same (row-major) order. The model then projects only those hidden states onto the vocabulary and its
    own loss function uses the given targets: same loss, but the (tokens x vocabulary) logits, the largest
    activation of a small model and ~10 GB in fp32 for an 8k-token Llama-3 sample, shrink to the trained share.
    """

    def __init__(self, pad_id: int, trained_logits_only: bool = False):
        self.pad_id = pad_id
        self.trained_logits_only = trained_logits_only
        self.tokens = 0
        self.loss_tokens = 0

    def __call__(self, features: list[dict]) -> dict:
        width = max(len(f["input_ids"]) for f in features)
        ids, mask, labels = [], [], []
        for f in features:
            pad = width - len(f["input_ids"])
            ids.append(list(f["input_ids"]) + [self.pad_id] * pad)
            mask.append([1] * len(f["input_ids"]) + [0] * pad)
            labels.append(list(f["labels"]) + [IGNORE_INDEX] * pad)
            self.tokens += len(f["input_ids"])
            self.loss_tokens += sum(lab != IGNORE_INDEX for lab in f["labels"])
        batch = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), "labels": torch.tensor(labels)}
        if self.trained_logits_only:
            targets = batch["labels"][:, 1:]  # position t predicts token t + 1
            keep = torch.zeros_like(batch["labels"], dtype=torch.bool)
            keep[:, :-1] = targets != IGNORE_INDEX
            batch["logits_to_keep"] = keep
            batch["shift_labels"] = targets[targets != IGNORE_INDEX]
        return batch


def can_keep_trained_logits(model) -> bool:
    """Whether the model's forward takes a boolean `logits_to_keep` mask (transformers >= 5 causal LMs)."""
    import inspect

    from transformers import modeling_utils
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return (hasattr(modeling_utils, "slice_logits_to_keep")
            and "logits_to_keep" in inspect.signature(base.forward).parameters)


def pad_id_of(tokenizer) -> int:
    for tok_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if tok_id is not None:
            return tok_id
    return 0  # any id works: padded positions are masked out of attention and loss


# --------------------------------------------------------------------------------------------------- training
def train_sft(model, tokenizer, data: list[dict] | Dataset, settings: TrainCfg, output_dir: str | Path,
              epochs: float = 1, seed: int = 0, callbacks: list | None = None) -> dict:
    """Train `model` (a peft model, or any causal LM) on `data` with the loss mask of `data.tokenize_conversation`.

    `settings` is the params' train section (its per-iteration `epochs` list and the data mixing keys are the
    stage's business: `epochs` here is this call's number, `seed` the data order's and the LoRA dropout's).

    `data`: samples (dicts with `messages`), a dataset of them, or an already tokenised dataset (input_ids,
    labels). Resumes from the last complete checkpoint under `output_dir/checkpoints` when there is one. Writes
    the final adapter + tokenizer to `output_dir/adapter` and `output_dir/train_metrics.json`; returns the metrics.
    """
    quiet_transformers()
    output_dir = Path(output_dir)
    dataset, data_report = as_tokenized(data, tokenizer, settings.max_length)
    resolved = resolve_auto(model, settings)
    keep = settings.trained_logits_only and can_keep_trained_logits(model) and not resolved.shared_prefix
    collator = PaddingCollator(pad_id_of(tokenizer), keep)
    use_cache = getattr(model.config, "use_cache", None)
    args = training_arguments(settings, resolved, output_dir / "checkpoints", epochs, seed)
    trainer = make_trainer(settings, resolved)(model=model, args=args, train_dataset=dataset, data_collator=collator,
                                     processing_class=tokenizer, callbacks=logging_callbacks(settings, output_dir)
                                     + list(callbacks or []))
    resume = last_complete_checkpoint(output_dir / "checkpoints")
    reset_peak_memory()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Could not find a config file")  # see save_adapter_atomic
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    wall = time.perf_counter() - start
    model.config.use_cache = use_cache  # the Trainer turned it off; generation wants it back
    model.eval()
    adapter_dir = save_adapter_atomic(model, tokenizer, output_dir / "adapter")
    metrics = {
        "global_step": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "train_loss": result.training_loss,  # mean over the steps run in this call
        "final_loss": last_logged_loss(trainer.state.log_history),
        "loss_curve": loss_curve(trainer.state.log_history),
        "train_tokens": collator.tokens,  # non-pad tokens processed in this call (a resumed call counts its part)
        "train_loss_tokens": collator.loss_tokens,
        "tokens_per_s": collator.tokens / wall if wall > 0 else None,
        "wall_s": wall,
        **peak_memory(resolved.device),
        "resumed_from": resume.name if resume else None,
        "data": data_report,
        "settings": {**settings.model_dump(mode="json"), "epochs": epochs, "seed": seed},
        # the trie runs the output head only where a label is, whatever the collator does
        "resolved": {**asdict(resolved), "trained_logits_only": collator.trained_logits_only or resolved.shared_prefix},
        "adapter": str(adapter_dir),
    }
    write_json(output_dir / "train_metrics.json", metrics)
    if not settings.keep_checkpoints:
        shutil.rmtree(output_dir / "checkpoints", ignore_errors=True)
    return metrics


def train_actor(actor, data, settings: TrainCfg, output_dir: str | Path, epochs: float = 1, seed: int = 0,
                callbacks: list | None = None) -> dict:
    """`train_sft` on an `actor.Actor` (its trainable peft model and tokenizer)."""
    return train_sft(actor.model, actor.tokenizer, data, settings, output_dir, epochs, seed, callbacks)


def logging_callbacks(settings: TrainCfg, output_dir: Path) -> list:
    """TensorBoard events beside the stage's outputs (`output_dir/tensorboard`), offline. Given as a callback with
    its own writer, not through `report_to`: the Trainer would write under checkpoints/, which is deleted after a
    run, and `report_to` would also pick up any other installed tracker (wandb, ...)."""
    if not settings.tensorboard:
        return []
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback
    return [TensorBoardCallback(SummaryWriter(log_dir=str(Path(output_dir) / "tensorboard")))]


def make_trainer(settings: TrainCfg, resolved: Resolved):
    """The HF Trainer, with a length-grouped sampler that a resume replays exactly (see EpochSeededSampler);
    with `resolved.shared_prefix`, each step's samples come as one batch and are trained as a trie."""
    from transformers import Trainer
    from transformers.trainer_pt_utils import get_length_grouped_indices

    by_prefix = resolved.shared_prefix and settings.group_by_prefix
    by_length = settings.group_by_length and settings.batch_size > 1

    class SFTTrainer(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            if not (by_prefix or by_length):
                return super()._get_train_sampler(train_dataset)
            ds = train_dataset if train_dataset is not None else self.train_dataset
            per_update = self.args.train_batch_size * self.args.gradient_accumulation_steps
            if by_prefix:
                return EpochSeededSampler(prefix_grouped_indices, ds["input_ids"], per_update, self.args.seed)
            return EpochSeededSampler(get_length_grouped_indices, ds["length"], per_update, self.args.seed)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not resolved.shared_prefix:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            rows = inputs["attention_mask"].sum(-1).tolist()  # right-padded: each row's real tokens come first
            ids = [r[:n] for r, n in zip(inputs["input_ids"].tolist(), rows)]
            labels = [r[:n] for r, n in zip(inputs["labels"].tolist(), rows)]
            loss, count = shared_prefix_loss(model, ids, labels, inputs["input_ids"].device)
            # the step's labelled tokens (all devices' under DDP), as the model's own loss divides by
            return loss / (num_items_in_batch if num_items_in_batch is not None else max(count, 1))

    return SFTTrainer


def prefix_grouped_indices(input_ids: list[list[int]], batch_size: int, generator) -> list[int]:
    """Samples in token order (an env's together, a tree's paths beside each other), rotated by a random offset
    (other step-mates each epoch) and cut into steps of `batch_size`, the full steps in a random order and a short
    one last (the DataLoader cuts the order into batches of `batch_size` again); ties in token order are broken at
    random."""
    shuffled = torch.randperm(len(input_ids), generator=generator).tolist()
    ordered = sorted(shuffled, key=lambda i: input_ids[i])
    cut = int(torch.randint(batch_size, (1,), generator=generator))
    ordered = ordered[cut:] + ordered[:cut]
    full = len(ordered) // batch_size
    steps = [ordered[i * batch_size:(i + 1) * batch_size] for i in range(full)]
    shuffled_steps = [i for s in torch.randperm(full, generator=generator).tolist() for i in steps[s]]
    return shuffled_steps + ordered[full * batch_size:]


class EpochSeededSampler(torch.utils.data.Sampler):
    """An order drawn by `indices(keys, batch_size, generator=...)` that depends only on (seed, epoch). The Trainer's
    own LengthGroupedSampler draws from the global RNG, which a resume restores to its state at the checkpoint
    rather than at the epoch start, so the resumed epoch would see other batches (some samples twice, some never)."""

    def __init__(self, indices, keys: list, batch_size: int, seed: int):
        self.indices, self.keys, self.batch_size, self.seed = indices, list(keys), batch_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # the Trainer calls this at every epoch start
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(self.indices(self.keys, self.batch_size, generator=g))


def as_tokenized(data, tokenizer, max_length: int) -> tuple[Dataset, dict]:
    if isinstance(data, Dataset) and {"input_ids", "labels"} <= set(data.column_names):
        if "length" not in data.column_names:
            data = data.add_column("length", [len(x) for x in data["input_ids"]])
        return data, {"samples": len(data), "kept": len(data), "pretokenized": True}
    return tokenize_dataset(data, tokenizer, max_length)


def training_arguments(settings: TrainCfg, resolved: Resolved, checkpoint_dir: Path, epochs: float, seed: int):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        num_train_epochs=epochs,
        max_steps=settings.max_steps,
        # shared prefixes are found within a batch: the step's samples come as one (same step, same loss)
        per_device_train_batch_size=settings.batch_size * (settings.grad_accum if resolved.shared_prefix else 1),
        gradient_accumulation_steps=1 if resolved.shared_prefix else settings.grad_accum,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=settings.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps (transformers >= 5)
        weight_decay=settings.weight_decay,
        max_grad_norm=settings.max_grad_norm,
        optim=resolved.optim,
        activation_checkpointing=resolved.gradient_checkpointing,
        bf16=resolved.precision == "bf16",
        fp16=resolved.precision == "fp16",
        use_cpu=resolved.device == "cpu",
        seed=seed,
        logging_steps=settings.logging_steps,
        logging_first_step=True,  # the curve starts at the untrained model's loss
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        train_sampling_strategy="random",  # length grouping: make_trainer's sampler (seeded per epoch)
        remove_unused_columns=False,  # the collator picks its columns; keeps `length` for the sampler
        dataloader_num_workers=0,  # the collator counts tokens in this process
        report_to="none",
        disable_tqdm=False,
    )


# --------------------------------------------------------------------------------------------------- checkpoints
def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest `checkpoint-<step>` that holds `trainer_state.json` (the Trainer writes it last, so a
    checkpoint cut short by a kill lacks it and is passed over)."""
    if not folder.is_dir():
        return None
    done = [p for p in folder.iterdir()
            if re.fullmatch(r"checkpoint-\d+", p.name) and (p / "trainer_state.json").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def save_adapter_atomic(model, tokenizer, path: Path) -> Path:
    """Adapter (or whole model, if not a peft model) + tokenizer, written atomically (files.write_dir)."""
    def write(tmp: Path):
        with warnings.catch_warnings():
            # peft looks for the base model's config.json to see whether the vocabulary grew; a base model built in
            # memory (the tiny test model) has none, and the vocabulary never changes here.
            warnings.filterwarnings("ignore", message="Could not find a config file")
            model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    return write_dir(path, write)


# --------------------------------------------------------------------------------------------------- metrics
def loss_curve(log_history: list[dict]) -> list[dict]:
    keys = ("step", "epoch", "loss", "learning_rate", "grad_norm")
    return [{k: e[k] for k in keys if k in e} for e in log_history if "loss" in e]


def last_logged_loss(log_history: list[dict]) -> float | None:
    losses = [e["loss"] for e in log_history if "loss" in e]
    return losses[-1] if losses else None


def reset_peak_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:  # Linux: "5" resets this process's peak RSS (VmHWM), so the peak is the training's, not the loading's
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_memory(device: str) -> dict:
    out = {"peak_rss_mb": peak_rss_mb()}
    if device == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["peak_cuda_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
    return out


def peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB; process lifetime


def quiet_transformers() -> None:
    """Keep notebooks readable: transformers' info/advice lines off, warnings (and the progress bar) kept."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_warning()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warning from the tokenizers library
