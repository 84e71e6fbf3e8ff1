"""train.py on a tiny random Llama + LoRA: it learns, the mask reaches the loss, a killed run resumes exactly."""
import json

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import chatml_tokenizer, tiny_lora
from transformers import TrainerCallback

from agentr_lib.config import ModelCfg, TrainCfg
from agentr_lib.data import IGNORE_INDEX, tokenize_conversation
from agentr_lib.train import PaddingCollator, last_complete_checkpoint, resolve_auto, train_actor, train_sft
from agentr_lib.trajectory import message, preamble


def revision_sample(i: int = 0) -> dict:
    msgs = preamble("Craft the goal.", f"Goal: craft oak planks ({i}).") + [
        message("assistant", "Thought: planks first.\nAction: get 1 oak planks", False),
        message("user", "Could not find enough items."),
        message("assistant", "Thought: I made an error. I must determine how to correct it.\nAction: wait", True),
        message("user", "ok."),
        message("assistant", "Thought: logs first.\nAction: get 1 oak log" + " and more" * (i % 3), True),
        message("user", "Got 1 oak log"),
    ]
    return {"messages": msgs, "kind": "revision", "env": "textcraft", "task_id": i}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matrices: a second thread only adds synchronisation


@pytest.fixture(scope="module")
def tokenizer():
    return chatml_tokenizer([m["content"] for i in range(3) for m in revision_sample(i)["messages"]])


def settings(**kw) -> TrainCfg:
    base = dict(max_steps=12, learning_rate=3e-2, batch_size=2, grad_accum=1, max_length=2048, logging_steps=2,
                save_steps=4)
    return TrainCfg(**{**base, **kw})


def batch_loss(model, tokenizer, samples, labels_everywhere: bool = False, trained_logits_only: bool = False) -> float:
    feats = [tokenize_conversation(s["messages"], tokenizer, 512) for s in samples]
    if labels_everywhere:
        feats = [dict(f, labels=list(f["input_ids"])) for f in feats]
    with torch.no_grad():
        return model(**PaddingCollator(tokenizer.pad_token_id, trained_logits_only)(feats)).loss.item()


# --------------------------------------------------------------------------------------------------- learning
def test_a_few_steps_overfit_a_repeated_sample_and_write_the_adapter(tokenizer, tmp_path):
    model = tiny_lora(tokenizer)
    metrics = train_sft(model, tokenizer, [revision_sample()] * 8, settings(), tmp_path)
    curve = [e["loss"] for e in metrics["loss_curve"]]
    assert curve[0] > 4 and curve[-1] < 0.5 * curve[0], curve
    assert [e["step"] for e in metrics["loss_curve"]] == [1, 2, 4, 6, 8, 10, 12]
    assert metrics["global_step"] == 12 and metrics["resumed_from"] is None
    assert metrics["resolved"]["trained_logits_only"]  # the lean output-head path is the one trained here
    assert metrics["train_tokens"] == 12 * 2 * metrics["data"]["tokens"] // 8  # 12 steps x 2 samples
    assert metrics["train_loss_tokens"] > 0 and metrics["tokens_per_s"] > 0 and metrics["peak_rss_mb"] > 0
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "adapter" / "tokenizer.json").is_file()
    assert json.loads((tmp_path / "train_metrics.json").read_text())["global_step"] == 12
    assert not (tmp_path / "checkpoints").exists()  # keep_checkpoints=False: a finished run needs no resume point
    assert model.config.use_cache is not False  # restored for generation
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()  # the same curve, for TensorBoard
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx(curve, rel=1e-4)
    kinds = metrics["data"]["mask_by_kind"]  # the mask audit: what the loss reaches, per sample kind
    assert kinds["revision"]["samples"] == 8 and 0 < kinds["revision"]["loss_share"] < 1


def test_auto_settings_on_cpu(tokenizer):
    r = resolve_auto(tiny_lora(tokenizer), TrainCfg())
    assert (r.device, r.optim, r.gradient_checkpointing, r.quantized_4bit) == ("cpu", "adamw_torch", False, False)


# ------------------------------------------------------------------------------------------------ the mask in the loss
def test_masked_tokens_do_not_reach_the_loss(tokenizer):
    """A causal LM's later predictions see every earlier token, so the only masked tokens whose content can be
    changed without changing the context of a trained token are those after the last trained one (the final
    observation). Changing it must leave the loss as it is; with labels everywhere it must not."""
    model = tiny_lora(tokenizer).eval()
    a = revision_sample()
    b = revision_sample()
    b["messages"][-1] = message("user", "Inventory: nothing useful at all")
    assert batch_loss(model, tokenizer, [a]) == pytest.approx(batch_loss(model, tokenizer, [b]), abs=1e-6)
    assert batch_loss(model, tokenizer, [a], True) != pytest.approx(batch_loss(model, tokenizer, [b], True), abs=1e-3)


@pytest.mark.parametrize("trained_logits_only", [False, True])
def test_padding_carries_no_loss(tokenizer, trained_logits_only):
    """Batch loss of a padded batch = the token-weighted mean of the samples' own losses."""
    model = tiny_lora(tokenizer).eval()
    a, b = revision_sample(0), revision_sample(2)  # different lengths
    n = [sum(lab != IGNORE_INDEX for lab in tokenize_conversation(s["messages"], tokenizer, 512)["labels"])
         for s in (a, b)]
    assert n[0] != n[1]
    solo = [batch_loss(model, tokenizer, [s]) for s in (a, b)]
    expected = (solo[0] * (n[0] - 1) + solo[1] * (n[1] - 1)) / (n[0] - 1 + n[1] - 1)  # the shift drops one label
    assert batch_loss(model, tokenizer, [a, b], trained_logits_only=trained_logits_only) == pytest.approx(
        expected, rel=1e-5)


def test_logits_only_where_trained_give_the_same_loss_and_gradients_with_fewer_logits(tokenizer):
    model = tiny_lora(tokenizer)
    feats = [tokenize_conversation(revision_sample(i)["messages"], tokenizer, 512) for i in (0, 2)]
    full, lean = PaddingCollator(0)(feats), PaddingCollator(0, trained_logits_only=True)(feats)
    n_trained = sum(sum(lab != IGNORE_INDEX for lab in f["labels"]) for f in feats)
    out_full, out_lean = model(**full), model(**lean)
    assert out_lean.logits.shape[0] == n_trained < out_full.logits.shape[0] * out_full.logits.shape[1] / 2
    assert out_lean.loss.item() == pytest.approx(out_full.loss.item(), rel=1e-6)
    lora = [p for n, p in model.named_parameters() if "lora_B" in n][0]
    g_full = torch.autograd.grad(out_full.loss, lora)[0]
    g_lean = torch.autograd.grad(out_lean.loss, lora)[0]
    assert torch.allclose(g_full, g_lean, atol=1e-6) and g_full.abs().sum() > 0


# --------------------------------------------------------------------------------------------------- resume
class Killed(Exception):
    pass


class KillAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Killed


@pytest.mark.parametrize("shared_prefix", ["auto", False])
def test_a_killed_run_resumes_from_its_last_complete_checkpoint_and_ends_where_an_unbroken_run_ends(
        tokenizer, tmp_path, shared_prefix):
    """auto on CPU: tries in the prefix-grouped order; off (CUDA's default): plain batches, length-grouped order."""
    data = [revision_sample(i) for i in range(10)]  # 3 lengths: the length-grouped order matters
    cfg = settings(shared_prefix=shared_prefix)
    unbroken = train_sft(tiny_lora(tokenizer), tokenizer, data, cfg, tmp_path / "a")
    assert unbroken["resolved"]["shared_prefix"] is (shared_prefix == "auto")
    with pytest.raises(Killed):
        train_sft(tiny_lora(tokenizer), tokenizer, data, cfg, tmp_path / "b", callbacks=[KillAt(10)])
    ckpts = tmp_path / "b" / "checkpoints"
    assert last_complete_checkpoint(ckpts).name == "checkpoint-8"
    (ckpts / "checkpoint-9").mkdir()  # a checkpoint cut short by the kill (no trainer_state.json) is passed over
    fresh = tiny_lora(tokenizer)
    with torch.no_grad():  # the adapter weights must come from the checkpoint, not from the same initialisation
        for name, p in fresh.named_parameters():
            if "lora_" in name:
                p.add_(0.5)
    resumed = train_sft(fresh, tokenizer, data, cfg, tmp_path / "b")
    assert resumed["resumed_from"] == "checkpoint-8" and resumed["global_step"] == 12
    assert resumed["train_tokens"] < unbroken["train_tokens"]  # only steps 9-12 ran in the resumed call
    assert [e["loss"] for e in resumed["loss_curve"]] == pytest.approx([e["loss"] for e in unbroken["loss_curve"]])
    a = load_file(tmp_path / "a" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


# --------------------------------------------------------------------------------------------------- the real actor
@pytest.mark.slow
def test_qlora_actor_trains_on_cpu_and_its_adapter_loads_back(tmp_path):
    from agentr_lib.actor import load_actor
    from agentr_lib.models import TINY_RANDOM, ModelUnavailable
    actor_settings = ModelCfg(name=TINY_RANDOM, quantization="nf4", device="cpu")
    try:
        actor = load_actor(actor_settings, trainable=True)
    except ModelUnavailable as err:
        pytest.skip(str(err))
    assert actor.is_quantized
    metrics = train_actor(actor, [revision_sample(i) for i in range(4)], settings(max_steps=3), tmp_path)
    assert metrics["resolved"]["quantized_4bit"] and metrics["global_step"] == 3
    curve = [e["loss"] for e in metrics["loss_curve"]]
    assert all(torch.isfinite(torch.tensor(curve)))
    reloaded = load_actor(actor_settings, adapter=str(tmp_path / "adapter"))
    assert reloaded.generate([revision_sample()["messages"][:4]], temperature=0, max_new_tokens=4)[0][0] is not None
