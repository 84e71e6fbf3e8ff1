"""preference.py (ETO's DPO stage) on a tiny random Llama + LoRA: it runs and learns from log 2, only agent tokens are
scored, the reference is the policy DPO starts from, a seed fixes the adapter, a killed run resumes exactly."""
import copy
import json
import math

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import chatml_tokenizer, tiny_lora
from transformers import TrainerCallback

from agentr_lib.config import ModelCfg, TrainCfg
from agentr_lib.preference import pair_features, preference_dataset, train_actor_dpo, train_dpo
from agentr_lib.train import last_complete_checkpoint
from agentr_lib.trajectory import SYSTEM_PROMPT, message, preamble

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matrices: a second thread only adds synchronisation

LOG2 = math.log(2)


def pair(i: int = 0, shared_steps: int = 1, last_observation: str = "Crafted 4 oak planks") -> dict:
    """A TextCraft-like pair in `revision.preference_pair`'s layout: the paths part after `shared_steps` steps."""
    prompt = preamble("Craft the goal.", f"Goal: craft oak planks ({i}).")
    for k in range(shared_steps):
        prompt += [message("assistant", f"Thought: look around ({k}).\nAction: inventory"),
                   message("user", f"Inventory: nothing yet ({k})")]
    chosen = [message("assistant", "Thought: logs first.\nAction: get 1 oak log", True),
              message("user", "Got 1 oak log"),
              message("assistant", "Action: craft 4 oak planks using 1 oak log" + " now" * (i % 2), True),
              message("user", last_observation)]
    rejected = [message("assistant", "Thought: planks.\nAction: get 1 oak planks", True),
                message("user", "Could not find enough items to get oak planks"),
                message("assistant", "Action: wait", True),
                message("user", "ok.")]
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "env": "textcraft", "task_id": i}


@pytest.fixture(scope="module")
def tokenizer():
    """A small vocabulary keeps TRL's output head cheap on CPU (it scores every position there)."""
    p = pair(0, 3)
    return chatml_tokenizer([SYSTEM_PROMPT] + [m["content"] for part in ("prompt", "chosen", "rejected")
                                               for m in p[part]])


def settings(**kw) -> TrainCfg:
    base = dict(max_steps=6, learning_rate=1e-2, batch_size=2, grad_accum=1, max_length=512, logging_steps=1,
                save_steps=50, warmup_ratio=0.0)
    return TrainCfg(**{**base, **kw})


def scored_runs(ids: list[int], mask: list[int], tokenizer) -> list[str]:
    runs, current = [], []
    for tok, m in zip(ids, mask):
        if m:
            current.append(tok)
        elif current:
            runs, current = runs + [current], []
    return [tokenizer.decode(r) for r in runs + ([current] if current else [])]


def sequence_logp(model, prompt_ids: list[int], ids: list[int], mask: list[int]) -> float:
    """Summed log-probability of the continuation tokens whose mask is 1, after the prompt (a direct computation)."""
    full = torch.tensor([prompt_ids + ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=full).logits[0, :-1].float(), dim=-1)
    targets = full[0, 1:]
    scored = torch.tensor([0] * len(prompt_ids) + list(mask))[1:].bool()
    return logp[torch.arange(len(targets)), targets][scored].sum().item()


def adapter_weights(folder) -> dict:
    return load_file(folder / "adapter" / "adapter_model.safetensors")


# --------------------------------------------------------------------------------------------------- (a) it runs
def test_dpo_starts_at_log_2_learns_and_writes_the_adapter_and_metrics(tokenizer, tmp_path):
    model = tiny_lora(tokenizer)
    metrics = train_dpo(model, tokenizer, [pair(i) for i in range(4)], settings(), tmp_path, beta=0.1)
    curve = [e["loss"] for e in metrics["loss_curve"]]
    assert [e["step"] for e in metrics["loss_curve"]] == [1, 2, 3, 4, 5, 6]
    assert metrics["first_loss"] == curve[0] == pytest.approx(LOG2, abs=1e-6)  # policy == reference at step 0
    assert curve[-1] < 0.5 * LOG2, curve  # good and bad paths are told apart after a few steps
    assert metrics["reward_curve"][0]["rewards/margins"] == pytest.approx(0, abs=1e-6)
    assert metrics["reward_accuracy"] == 1.0 and metrics["reward_margin"] > 0
    assert (metrics["method"], metrics["pairs"], metrics["beta"], metrics["global_step"]) == ("dpo", 4, 0.1, 6)
    assert 0 < metrics["train_loss_tokens"] < metrics["train_tokens"] and metrics["wall_s"] > 0
    assert metrics["data"]["kept"] == 4 and metrics["settings"]["beta"] == 0.1
    saved = json.loads((tmp_path / "train_metrics.json").read_text())
    assert saved["final_loss"] == metrics["final_loss"] and saved["loss_curve"] == metrics["loss_curve"]
    weights = adapter_weights(tmp_path)
    assert weights and not any(".ref." in k for k in weights)  # TRL's reference copy is not part of the adapter
    assert not (tmp_path / "adapter" / "ref").exists() and list(model.peft_config) == ["default"]
    assert (tmp_path / "adapter" / "tokenizer.json").is_file()
    assert not (tmp_path / "checkpoints").exists()  # keep_checkpoints=False
    assert model.config.use_cache is not False  # restored for generation


# --------------------------------------------------------------------------------------------------- (b) the mask
def test_only_the_agent_replies_of_each_continuation_are_scored(tokenizer):
    f = pair_features(pair(), tokenizer, 512)
    assert tokenizer.decode(f["prompt_ids"]).endswith("Inventory: nothing yet (0)<|im_end|>\n<|im_start|>assistant\n")
    assert scored_runs(f["chosen_ids"], f["chosen_mask"], tokenizer) == [
        "Thought: logs first.\nAction: get 1 oak log<|im_end|>", "Action: craft 4 oak planks using 1 oak log<|im_end|>"]
    assert scored_runs(f["rejected_ids"], f["rejected_mask"], tokenizer) == [
        "Thought: planks.\nAction: get 1 oak planks<|im_end|>", "Action: wait<|im_end|>"]
    # the observation between the two replies is context (in the sequence, unscored); the last one cannot matter
    assert "Got 1 oak log" in tokenizer.decode(f["chosen_ids"])
    assert "Crafted" not in tokenizer.decode(f["chosen_ids"])


def test_trl_scores_exactly_the_masked_tokens(tokenizer, tmp_path):
    """End to end: the log-probabilities TRL logs at step 1 are the agent tokens' sums, not the whole continuation's
    (which is what TRL's own tokenisation of a conversational pair would score)."""
    model = tiny_lora(tokenizer)
    f = pair_features(pair(), tokenizer, 512)
    agent = {s: sequence_logp(model, f["prompt_ids"], f[f"{s}_ids"], f[f"{s}_mask"]) for s in ("chosen", "rejected")}
    whole = sequence_logp(model, f["prompt_ids"], f["chosen_ids"], [1] * len(f["chosen_ids"]))
    metrics = train_dpo(model, tokenizer, [pair()], settings(max_steps=1, batch_size=1), tmp_path)
    first = metrics["reward_curve"][0]
    assert first["logps/chosen"] == pytest.approx(agent["chosen"], rel=1e-4)
    assert first["logps/rejected"] == pytest.approx(agent["rejected"], rel=1e-4)
    assert abs(whole - agent["chosen"]) > 5  # the observation tokens would have counted for something
    assert metrics["train_loss_tokens"] == sum(f["chosen_mask"]) + sum(f["rejected_mask"])


# --------------------------------------------------------------------------------------------------- (c) a seed
def test_the_same_seed_gives_the_same_adapter(tokenizer, tmp_path):
    data = [pair(i) for i in range(4)]
    for run in ("a", "b"):
        train_dpo(tiny_lora(tokenizer), tokenizer, data, settings(max_steps=3), tmp_path / run, seed=7)
    a, b = adapter_weights(tmp_path / "a"), adapter_weights(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    start = tiny_lora(tokenizer).state_dict()
    assert any(not torch.equal(a[k], start[k.replace(".weight", ".default.weight")]) for k in a)  # it did train


# --------------------------------------------------------------------------------------------------- (d) reference
def test_the_reference_is_the_starting_policy_not_the_base_model(tokenizer, tmp_path):
    """An SFT-trained adapter (here: random lora_B) makes the policy differ from the adapter-disabled base; DPO's
    reference must be the policy itself, so step 1 is still at log 2 with zero implicit rewards."""
    model = tiny_lora(tokenizer)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    f = pair_features(pair(), tokenizer, 512)
    policy = sequence_logp(model, f["prompt_ids"], f["chosen_ids"], f["chosen_mask"])
    with model.disable_adapter():
        base = sequence_logp(model, f["prompt_ids"], f["chosen_ids"], f["chosen_mask"])
    assert abs(policy - base) > 1  # a base-model reference would give non-zero rewards at step 1
    metrics = train_dpo(model, tokenizer, [pair(i) for i in range(2)], settings(max_steps=2), tmp_path)
    first = metrics["reward_curve"][0]
    assert metrics["first_loss"] == pytest.approx(LOG2, abs=1e-6)
    assert (first["rewards/chosen"], first["rewards/rejected"]) == pytest.approx((0, 0), abs=1e-6)
    assert metrics["loss_curve"][-1]["loss"] < LOG2


def test_a_model_without_lora_trains_against_a_frozen_copy_of_itself(tokenizer, tmp_path):
    model = tiny_lora(tokenizer).merge_and_unload().requires_grad_(True)  # a plain causal LM: full fine-tuning
    metrics = train_dpo(model, tokenizer, [pair(i) for i in range(2)], settings(max_steps=2, learning_rate=1e-3),
                        tmp_path)
    assert metrics["first_loss"] == pytest.approx(LOG2, abs=1e-6) and metrics["loss_curve"][-1]["loss"] < LOG2
    assert "copy of the model" in metrics["resolved"]["reference"]


# --------------------------------------------------------------------------------------------------- length
def test_a_long_pair_loses_its_oldest_shared_steps_first(tokenizer):
    long = pair(0, shared_steps=12)
    full = pair_features(long, tokenizer, 4096)
    width = len(full["prompt_ids"]) + max(len(full["chosen_ids"]), len(full["rejected_ids"]))
    fitted = pair_features(long, tokenizer, width - 30)
    prompt = tokenizer.decode(fitted["prompt_ids"])
    assert "Goal: craft oak planks (0)." in prompt and "look around (0)" in prompt  # preamble + first step kept
    assert "look around (1)" not in prompt and "look around (11)" in prompt  # then the latest steps
    assert len(fitted["prompt_ids"]) + len(fitted["chosen_ids"]) <= width - 30
    assert fitted["chosen_mask"] == full["chosen_mask"]  # the continuations are whole
    _, report = preference_dataset([long, pair(1)], tokenizer, width - 30)
    assert (report["kept"], report["prompt_trimmed"], report["dropped_no_loss"]) == (2, 1, 0)


def test_a_pair_without_an_agent_token_within_max_length_is_dropped(tokenizer):
    bare = dict(pair(1), rejected=[message("user", "nothing")])
    _, report = preference_dataset([pair(0), bare], tokenizer, 512)
    assert (report["pairs"], report["kept"], report["dropped_no_loss"]) == (2, 1, 1)


# --------------------------------------------------------------------------------------------------- resume
class Killed(Exception):
    pass


class KillAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Killed


def test_a_killed_run_resumes_against_the_same_reference_and_ends_where_an_unbroken_run_ends(tokenizer, tmp_path):
    data = [pair(i) for i in range(4)]
    cfg = settings(max_steps=4, save_steps=2)
    start = tiny_lora(tokenizer)
    unbroken = train_dpo(copy.deepcopy(start), tokenizer, data, cfg, tmp_path / "a")
    with pytest.raises(Killed):
        train_dpo(copy.deepcopy(start), tokenizer, data, cfg, tmp_path / "b", callbacks=[KillAt(3)])
    assert last_complete_checkpoint(tmp_path / "b" / "checkpoints").name == "checkpoint-2"
    resumed = train_dpo(copy.deepcopy(start), tokenizer, data, cfg, tmp_path / "b")
    assert resumed["resumed_from"] == "checkpoint-2" and resumed["global_step"] == 4
    assert [e["loss"] for e in resumed["loss_curve"]] == pytest.approx([e["loss"] for e in unbroken["loss_curve"]])
    a, b = adapter_weights(tmp_path / "a"), adapter_weights(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


# --------------------------------------------------------------------------------------------------- the real actor
@pytest.mark.parametrize("quantization", ["none", pytest.param("nf4", marks=pytest.mark.slow)])
def test_the_actor_trains_from_its_own_policy_and_its_adapter_loads_back(tmp_path, quantization):
    from agentr_lib.actor import load_actor
    from agentr_lib.models import TINY_RANDOM, ModelUnavailable
    actor_settings = ModelCfg(name=TINY_RANDOM, quantization=quantization, device="cpu")
    try:
        actor = load_actor(actor_settings, trainable=True)
    except ModelUnavailable as err:
        pytest.skip(str(err))
    dtypes = {n: p.dtype for n, p in actor.model.named_parameters() if p.requires_grad}
    metrics = train_actor_dpo(actor, [pair(0)], settings(max_steps=1, batch_size=1), tmp_path, beta=0.2)
    assert metrics["first_loss"] == pytest.approx(LOG2, abs=1e-4) and metrics["global_step"] == 1
    assert metrics["resolved"]["quantized_4bit"] == (quantization == "nf4")
    assert {n: p.dtype for n, p in actor.model.named_parameters() if p.requires_grad} == dtypes  # as SFT left them
    reloaded = load_actor(actor_settings, adapter=str(tmp_path / "adapter"))
    assert reloaded.generate([pair()["prompt"]], temperature=0, max_new_tokens=4)[0][0] is not None
