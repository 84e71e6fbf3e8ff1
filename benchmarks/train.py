"""Training throughput and peak memory: QLoRA (NF4) vs LoRA on fp32 / bf16 weights, same data, same steps; and
training on trees (train.shared_prefix) vs one sample at a time, on a study's own data.

    python benchmarks/train.py                       # SmolLM2-135M (offline), CPU or CUDA, every variant
    python benchmarks/train.py --model tiny-random --steps 4
    python benchmarks/train.py --data results/tiny/agent_r/iter_1/data/dataset --params params/tiny.yaml
        # that data, windowed and trained as the train stage does (its train section), one epoch, three ways:
        # one by one, as a trie per step in the random order, as a trie per step in the prefix-grouped order
Each row runs in its own process, so that its peak memory is its own. Tokens/s counts the samples' real (non-pad)
tokens, however many of them a trie computes; "steady" leaves out the first step (allocator warm-up, lazy init).
A busy machine is noisy: compare rows of one run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = {  # name: (quantization, compute dtype); "auto" = bf16 where the device has it, else fp32 (CPU) / fp16
    "qlora-nf4": ("nf4", "auto"),
    "lora-fp32": ("none", "fp32"),
    "lora-bf16": ("none", "bf16"),  # skipped where the device has no bf16
}


def agent_sample(i: int, steps: int = 8) -> dict:
    """A TextCraft-like revision sample (~60 tokens per step); all samples the same shape, so every batch has
    about the same number of tokens."""
    from agentr_lib.trajectory import message, preamble
    msgs = preamble("You are given few useful crafting recipes to craft items in Minecraft. Crafting commands are "
                    "of the format \"craft [target object] using [input ingredients]\". Reply with Thought: ... "
                    "Action: ...", f"Crafting commands: craft 4 oak planks using 1 oak log. Goal: craft item {i}.")
    for s in range(steps):
        msgs += [message("assistant", f"Thought: step {s} of task {i}, I check what I have and get what I need.\n"
                                      f"Action: get {s + 1} oak logs", s >= steps // 2),
                 message("user", f"Got {s + 1} oak logs. Inventory: [oak log] ({s + 1}), [stick] ({i % 7})")]
    return {"messages": msgs, "kind": "revision", "env": "textcraft", "task_id": i}


WAYS = {"one-by-one": {"shared_prefix": False}, "trie": {"shared_prefix": True, "group_by_prefix": False},
        "trie-grouped": {"shared_prefix": True, "group_by_prefix": True}}


def run_one(variant: str, model: str, steps: int, batch_size: int, threads: int | None, data: str | None = None,
            params: str | None = None) -> dict:
    """One row. A variant name may end in "+full-logits" (the plain loss over every position's logits) or in
    "+<way>" (one of WAYS: how a step's samples are computed)."""
    import torch
    from transformers import TrainerCallback

    from agentr_lib.actor import load_actor
    from agentr_lib.config import ModelCfg, TrainCfg
    from agentr_lib.models import pick_dtype
    from agentr_lib.train import train_actor

    if threads:
        torch.set_num_threads(threads)
    name, _, option = variant.partition("+")
    quantization, dtype = VARIANTS[name]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.perf_counter()
    model_cfg = ModelCfg(name=model, quantization=quantization, compute_dtype=dtype, device=device)
    actor = load_actor(model_cfg, trainable=True)
    compute = str(pick_dtype(model_cfg, actor.device)).replace("torch.", "")
    load_s = time.perf_counter() - t0

    class StepClock(TrainerCallback):
        times: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter())

    clock = StepClock()
    way = WAYS.get(option, {"shared_prefix": False})
    if data:
        settings, samples = study_data(data, params, actor)
        settings = settings.model_copy(update={"logging_steps": 1, "save_steps": 10_000, "tensorboard": False, **way})
    else:
        settings = TrainCfg(max_steps=steps, batch_size=batch_size, grad_accum=1, learning_rate=1e-4,
                            logging_steps=1, save_steps=10_000, max_length=2048, tensorboard=False,
                            trained_logits_only=option != "full-logits", **way)
        samples = [agent_sample(i) for i in range(steps * batch_size)]
    with tempfile.TemporaryDirectory() as out:
        m = train_actor(actor, samples, settings, out, callbacks=[clock])
    steps = m["global_step"]
    per_step = m["train_tokens"] / steps
    steady = per_step * (steps - 1) / (clock.times[-1] - clock.times[0]) if steps > 1 else None
    return {"variant": variant, "model": model, "device": device, "compute": compute,
            "threads": torch.get_num_threads(),
            "load_s": round(load_s, 1), "tokens_per_step": round(per_step), "wall_s": round(m["wall_s"], 1),
            "tokens_per_s": round(m["tokens_per_s"], 1), "steady_tokens_per_s": steady and round(steady, 1),
            "peak_rss_mb": round(m["peak_rss_mb"]), "peak_cuda_mb": round(m.get("peak_cuda_mb", 0)),
            "samples": len(samples), "steps": steps,
            "first_loss": m["loss_curve"][0]["loss"], "last_loss": m["loss_curve"][-1]["loss"],
            "optim": m["resolved"]["optim"], "grad_ckpt": m["resolved"]["gradient_checkpointing"]}


def study_data(folder: str, params: str | None, actor):
    """A train stage's samples (a saved dataset), windowed as the stage windows them, and its params' train section."""
    from agentr_lib.config import TrainCfg, load_config
    from agentr_lib.data import fitted, load_data
    settings = load_config(params).train if params else TrainCfg()
    windows = [w for s in load_data(folder) for w in fitted(s, actor.fits(settings.max_length))]
    return settings, windows


def bf16_ok() -> bool:
    from agentr_lib.config import ModelCfg
    from agentr_lib.models import bf16_supported, pick_device
    return bf16_supported(pick_device(ModelCfg()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--full-logits", action="store_true", help="also run each variant with full-sequence logits")
    p.add_argument("--data", help="a train stage's saved samples: train on them one by one and as tries")
    p.add_argument("--params", help="with --data: the params file whose train section applies")
    p.add_argument("--ways", default=",".join(WAYS), help="with --data: which of " + ", ".join(WAYS))
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one variant, print its JSON row
    a = p.parse_args()
    if a.one:
        print("RESULT " + json.dumps(run_one(a.one, a.model, a.steps, a.batch_size, a.threads, a.data, a.params)))
        return
    rows = []
    variants = a.variants.split(",")
    if a.data:
        variants = [f"{v}+{w}" for v in variants for w in a.ways.split(",")]
    if a.full_logits:
        variants = [x for v in variants for x in (v, v + "+full-logits")]
    for v in variants:
        if v.startswith("lora-bf16") and not bf16_ok():
            print(f"{v}: skipped (no bf16 on this device)")
            continue
        cmd = [sys.executable, __file__, "--one", v, "--model", a.model, "--steps", str(a.steps),
               "--batch-size", str(a.batch_size)] + (["--threads", str(a.threads)] if a.threads else []) + \
            (["--data", a.data] + (["--params", a.params] if a.params else []) if a.data else [])
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(f"{v}: failed\n{out.stderr[-2000:]}")
            continue
        rows.append(json.loads(line[len("RESULT "):]))
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    from benchmarks.reproducibility import cpu_name
    print(f"CPU: {cpu_name()}")
    cols = ["variant", "compute", "device", "threads", "samples", "steps", "tokens_per_step", "tokens_per_s",
            "steady_tokens_per_s", "wall_s",
            "peak_rss_mb", "peak_cuda_mb", "load_s", "first_loss", "last_loss", "optim", "grad_ckpt"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) and "loss" in c else str(r[c])
                                for c in cols) + " |")


if __name__ == "__main__":
    main()
