"""Training on trees (shared_prefix.py): a step's samples as a trie give the loss and the LoRA gradients of the
samples taken one by one (fp32), for full-precision and NF4 weights; the Trainer with it ends where it ends without."""
import random

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import chatml_tokenizer, tiny_lora

from agentr_lib.config import ModelCfg, TrainCfg
from agentr_lib.data import IGNORE_INDEX, tokenize_conversation
from agentr_lib.shared_prefix import computed_tokens, prefix_trie, shared_prefix_loss
from agentr_lib.train import prefix_grouped_indices, resolve_auto, train_sft
from agentr_lib.trajectory import message, preamble

pytestmark = pytest.mark.usefixtures("one_thread")


def tree_samples() -> list[dict]:
    """Samples as one MCTS tree gives them: one instruction; a good path, and a revision sample whose bad prefix
    shares the good path's first step (trained in the good sample, context in the revision one)."""
    head = preamble("Craft the goal. Reply with Thought: ... Action: ...", "Goal: craft 1 oak planks.")
    first = [message("assistant", "Thought: logs first.\nAction: get 1 oak log", True),
             message("user", "Got 1 oak log")]
    good = head + first + [message("assistant", "Thought: now planks.\nAction: craft 4 oak planks using 1 oak log",
                                   True), message("user", "Crafted 4 oak planks")]
    bad_prefix = [dict(m, loss=False) for m in first] + [
        message("assistant", "Thought: sticks.\nAction: craft 4 sticks using 2 oak planks", False),
        message("user", "Could not find enough items.")]
    revision = head + bad_prefix + [
        message("assistant", "Thought: I realize my approach was flawed.\nAction: inventory", True),
        message("user", "Inventory: [oak log] (1)"),
        message("assistant", "Thought: now planks.\nAction: craft 4 oak planks using 1 oak log", True)]
    other = preamble("Craft the goal. Reply with Thought: ... Action: ...", "Goal: craft 1 stick.") + [
        message("assistant", "Thought: planks.\nAction: get 2 oak planks", True)]
    return [{"messages": m, "kind": k} for m, k in ((good, "good"), (revision, "revision"), (other, "good"))]


@pytest.fixture(scope="module")
def tokenizer():
    return chatml_tokenizer([m["content"] for s in tree_samples() for m in s["messages"]])


@pytest.fixture(scope="module")
def features(tokenizer):
    feats = [tokenize_conversation(s["messages"], tokenizer, 1024) for s in tree_samples()]
    return feats + [dict(feats[0])]  # the same sample twice in a step: its tokens are labelled twice


def one_by_one(model, features) -> tuple[torch.Tensor, int]:
    """The reference: each sample alone, the causal LM's own shifted cross-entropy, summed."""
    total, count = 0, 0
    for f in features:
        logits = model(input_ids=torch.tensor([f["input_ids"]], device=model.device)).logits[0, :-1].float()
        targets = torch.tensor(f["labels"][1:], device=model.device)
        total = total + torch.nn.functional.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
        count += int((targets != IGNORE_INDEX).sum())
    return total, count


def lora_grads(model, loss) -> dict[str, torch.Tensor]:
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    return dict(zip(params, torch.autograd.grad(loss, list(params.values()))))


def assert_same_loss_and_grads(model, features, rel=1e-5):
    ids, labels = [f["input_ids"] for f in features], [f["labels"] for f in features]
    ref_loss, ref_n = one_by_one(model, features)
    loss, n = shared_prefix_loss(model, ids, labels, model.device)
    assert n == ref_n > 0 and loss.item() == pytest.approx(ref_loss.item(), rel=rel)
    ref, got = lora_grads(model, ref_loss), lora_grads(model, loss)
    err = sum((ref[k] - got[k]).norm() ** 2 for k in ref) ** 0.5 / sum(g.norm() ** 2 for g in ref.values()) ** 0.5
    assert err < rel * 20 and any(g.abs().sum() > 0 for g in got.values())


def test_the_trie_computes_shared_tokens_once():
    rows = [[1, 2, 3, 4], [1, 2, 3, 5, 6], [1, 2, 7], [8], [1, 2, 3, 4]]
    runs = prefix_trie(rows)
    assert [(r.start, r.end, sorted(r.rows)) for r in runs] == [(0, 2, [0, 1, 2, 4]), (0, 1, [3])]
    below = {(c.start, c.end, tuple(sorted(c.rows))) for c in runs[0].children}
    assert below == {(2, 3, (0, 1, 4)), (2, 3, (2,))}
    assert computed_tokens(runs) == 2 + 1 + 1 + 1 + 2 + 1 < sum(map(len, rows))  # [1 2] [3] [7] [4] [5 6] [8]


def test_the_tree_samples_share_the_instruction_and_the_first_step(features):
    rows = [f["input_ids"] for f in features]
    top = prefix_trie(rows)
    assert len(top) == 1 and len(top[0].rows) == 4  # one instruction for all
    assert computed_tokens(top) < 0.6 * sum(map(len, rows))


def test_loss_and_lora_gradients_equal_those_of_the_samples_one_by_one(tokenizer, features):
    assert_same_loss_and_grads(tiny_lora(tokenizer).float(), features)


def test_masks_are_per_sample_a_token_shared_as_context_in_one_sample_and_trained_in_another(tokenizer, features):
    good, revision = features[0], features[1]
    shared = next(t for t in range(len(good["input_ids"]))
                  if good["input_ids"][t] != revision["input_ids"][t] or
                  (good["labels"][t] != IGNORE_INDEX) != (revision["labels"][t] != IGNORE_INDEX))
    assert good["input_ids"][:shared] == revision["input_ids"][:shared]
    assert good["labels"][shared] != IGNORE_INDEX == revision["labels"][shared]  # the bad prefix: context only
    model = tiny_lora(tokenizer).float()
    alone, _ = shared_prefix_loss(model, [good["input_ids"]], [good["labels"]], "cpu")
    rev_alone, _ = shared_prefix_loss(model, [revision["input_ids"]], [revision["labels"]], "cpu")
    both, _ = shared_prefix_loss(model, [good["input_ids"], revision["input_ids"]],
                                 [good["labels"], revision["labels"]], "cpu")
    assert both.item() == pytest.approx(alone.item() + rev_alone.item(), rel=1e-5)


def test_the_nf4_path_gives_the_same_loss_and_gradients(features):
    from agentr_lib.actor import load_actor
    from agentr_lib.models import TINY_RANDOM, ModelUnavailable
    try:
        actor = load_actor(ModelCfg(name=TINY_RANDOM, quantization="nf4", compute_dtype="fp32",
                                    device="cuda" if torch.cuda.is_available() else "cpu"), trainable=True)
    except ModelUnavailable as err:
        pytest.skip(str(err))
    assert actor.is_quantized
    actor.model.eval()  # no LoRA dropout: both ways must see the same weights
    feats = [tokenize_conversation(s["messages"], actor.tokenizer, 1024) for s in tree_samples()]
    assert_same_loss_and_grads(actor.model, feats, rel=1e-4)


def test_auto_is_on_without_gradient_checkpointing_and_a_forced_pair_is_refused(tokenizer):
    model = tiny_lora(tokenizer)
    assert resolve_auto(model, TrainCfg()).shared_prefix  # CPU: no checkpointing
    assert not resolve_auto(model, TrainCfg(gradient_checkpointing=True)).shared_prefix
    with pytest.raises(ValueError, match="shared_prefix needs gradient_checkpointing off"):
        TrainCfg(shared_prefix=True, gradient_checkpointing=True)


def test_prefix_grouped_steps_hold_each_sample_once_per_epoch_in_an_order_the_seed_fixes():
    rng = random.Random(0)
    rows = [[env] + [rng.randrange(5) for _ in range(3)] for env in (0, 1, 2) for _ in range(8)]
    order = prefix_grouped_indices(rows, 4, torch.Generator().manual_seed(3))
    assert sorted(order) == list(range(len(rows)))
    assert order == prefix_grouped_indices(rows, 4, torch.Generator().manual_seed(3))
    others = {tuple(prefix_grouped_indices(rows, 4, torch.Generator().manual_seed(s))) for s in range(8)}
    assert len(others) == 8  # another seed (epoch), another order
    steps = [order[i:i + 4] for i in range(0, len(order), 4)]
    assert sum(len({rows[i][0] for i in s}) == 1 for s in steps) >= 3  # steps of one env: they share its instruction


def samples_for_training() -> list[dict]:
    return [dict(s, messages=s["messages"] + [message("user", f"({i})")]) for i in range(4) for s in tree_samples()]


@pytest.mark.parametrize("group_by_prefix", [False, True])
def test_the_trainer_on_tries_ends_where_it_ends_one_by_one(tokenizer, tmp_path, group_by_prefix):
    """Same data order (group_by_prefix off) → the same steps: same loss curve, same adapter. With the grouped
    order the steps differ, so only the trie path's own bookkeeping is checked (tokens, steps, a falling loss)."""
    def run(shared, folder, by_prefix=False):
        cfg = TrainCfg(max_steps=6, learning_rate=1e-2, batch_size=1, grad_accum=4, logging_steps=1, save_steps=100,
                       shared_prefix=shared, group_by_prefix=by_prefix, tensorboard=False)
        return train_sft(tiny_lora(tokenizer).float(), tokenizer, samples_for_training(), cfg, tmp_path / folder,
                         epochs=2)
    plain = run(False, "plain")
    if not group_by_prefix:
        tree = run(True, "tree")
        assert tree["resolved"]["shared_prefix"] and not plain["resolved"]["shared_prefix"]
        assert [e["loss"] for e in tree["loss_curve"]] == pytest.approx([e["loss"] for e in plain["loss_curve"]],
                                                                        rel=1e-4)
        a = load_file(tmp_path / "plain" / "adapter" / "adapter_model.safetensors")
        b = load_file(tmp_path / "tree" / "adapter" / "adapter_model.safetensors")
        assert all(torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-5) for k in a)
    else:
        tree = run(True, "grouped", by_prefix=True)
        curve = [e["loss"] for e in tree["loss_curve"]]
        assert tree["global_step"] == plain["global_step"] == 6 and curve[-1] < curve[0]
    assert tree["train_tokens"] == plain["train_tokens"] and tree["train_loss_tokens"] == plain["train_loss_tokens"]
