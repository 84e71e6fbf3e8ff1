"""KV reuse across calls: the same replies as computing every prompt from scratch, and less prefill."""
import pytest
import torch

from agentr_lib.actor import load_actor
from agentr_lib.config import ModelCfg
from agentr_lib.kv_cache import GrowingCache, PrefixReuse, PrefixStore, cache_kwarg, tail_groups
from agentr_lib.models import TINY_RANDOM
from agentr_lib.trajectory import Step, conversation

pytestmark = pytest.mark.usefixtures("one_thread")


def episode(name: str, steps: int) -> list[dict]:
    history = [Step(f"Thought: step {i} of {name}.\nAction: get {i} plank", f"get {i} plank",
                    f"Got {i} plank for {name}.") for i in range(steps)]
    return conversation(INSTRUCTION, f"Goal: {name}.", history)


# long enough (> 32 tokens) that prompts of one call share a prefix worth computing once
INSTRUCTION = ("You craft items from recipes. Get ingredients from the environment, look at your inventory, and craft "
               "the goal with the recipes you are given. Reply as\nThought: ...\nAction: ...")


@pytest.mark.parametrize("quantization", ["nf4", "none"])
def test_reused_prefixes_give_the_replies_of_a_fresh_prefill(quantization):
    reusing = load_actor(ModelCfg(name=TINY_RANDOM, quantization=quantization))
    fresh = load_actor(ModelCfg(name=TINY_RANDOM, quantization=quantization, prefix_cache_mb=0))
    assert reusing.prefixes.reuses_prefixes and not fresh.prefixes.reuses_prefixes
    reusing.generate([episode("oak", 0), episode("a longer birch goal " * 5, 1)], temperature=0, max_new_tokens=4)
    assert reusing.prefixes.reused_tokens > 0  # the instruction, shared by both prompts of the first call
    before = reusing.prefixes.reused_tokens
    # a batch mixing: grown episodes (long reuse, different lengths), a new one (instruction only), an exact repeat
    convs = [episode("oak", 3), episode("a longer birch goal " * 5, 2), episode("spruce", 0), episode("oak", 0)]
    for k in (1, 3):  # plain and forked decoding
        got = reusing._generate_batch([reusing.prompt_text(c) for c in convs], k, temperature=0, max_new=12)
        want = fresh._generate_batch([fresh.prompt_text(c) for c in convs], k, temperature=0, max_new=12)
        assert got == want and any(r[0] for r in want)
    assert reusing.prefixes.reused_tokens - before > 2 * reusing.count_tokens(episode("oak", 0))


def test_rows_with_unlike_tails_are_prefilled_in_groups_with_the_same_replies(monkeypatch):
    reusing = load_actor(ModelCfg(name=TINY_RANDOM, quantization="none"))
    fresh = load_actor(ModelCfg(name=TINY_RANDOM, quantization="none", prefix_cache_mb=0))
    grown = [episode(f"goal {i}", 1) for i in range(3)]
    reusing.generate(grown, temperature=0, max_new_tokens=2)  # stored: the next step of each needs a short tail
    convs = [episode(f"goal {i}", 2) for i in range(3)] + [episode("a brand new long goal " * 12, 6)]
    calls = []
    prefill = PrefixReuse.prefill
    monkeypatch.setattr(PrefixReuse, "prefill",
                        lambda self, model, rows: calls.append(len(rows)) or prefill(self, model, rows))
    got = reusing._generate_batch([reusing.prompt_text(c) for c in convs], 2, temperature=0, max_new=10)
    want = fresh._generate_batch([fresh.prompt_text(c) for c in convs], 2, temperature=0, max_new=10)
    assert got == want
    assert sorted(calls[-3:-1]) == [1, 3] and calls[-1] == 4  # the three grown rows, the new one, then the batch


def test_tail_groups_bound_the_padding():
    assert tail_groups([10, 60, 5]) == [[2, 0, 1]]  # short tails (≤ 64) never split off
    assert tail_groups([10, 20, 700, 15]) == [[0, 3, 1], [2]]
    assert tail_groups([100, 110, 900, 120]) == [[0, 1, 3], [2]]
    assert tail_groups([300, 310, 320, 330]) == [[0, 1, 2, 3]]
    for tails in ([5, 80, 81, 400, 420, 1000, 1010, 2], [700] * 5 + [70] * 5, list(range(0, 2000, 37))):
        groups = tail_groups(tails)
        assert sorted(i for g in groups for i in g) == list(range(len(tails)))
        for g in groups:
            longest = max(tails[i] for i in g)
            assert len(g) * longest <= 1.5 * sum(tails[i] for i in g) or longest <= 64


def test_trainable_actor_does_not_reuse_stale_kv():
    actor = load_actor(ModelCfg(name=TINY_RANDOM), trainable=True)
    actor.generate([episode("oak", 1)], temperature=0, max_new_tokens=4)
    actor.generate([episode("oak", 1)], temperature=0, max_new_tokens=4)
    assert actor.prefixes.reused_tokens == 0 and not actor.prefixes.store.entries


def kv(tokens: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.zeros(1, tokens, 4), torch.zeros(1, tokens, 4))]  # 2 * 16 bytes per token


def test_store_finds_the_longest_shared_prefix_and_forgets_the_least_recent():
    store = PrefixStore(max_mb=95 * 32 / 2**20)  # room for 95 tokens
    store.add([1, 2, 3], kv(3))
    store.add([1, 2, 9, 9], kv(4))
    assert store.longest([1, 2, 3, 4])[0] == 3
    assert store.longest([1, 2, 9, 5])[0] == 3
    assert store.longest([7])[0] == 0
    store.longest([1, 2, 3])  # touch [1, 2, 3]: [1, 2, 9, 9] is now the least recently used
    store.add(list(range(100, 190)), kv(90))
    assert list(store.entries) == [(1, 2, 3), tuple(range(100, 190))] and store.bytes == 93 * 32
    store.add(list(range(500)), kv(500))  # larger than the whole store: not kept
    assert store.bytes == 93 * 32


def test_growing_cache_matches_dynamic_cache_through_generate():
    from transformers import DynamicCache
    actor = load_actor(ModelCfg(name=TINY_RANDOM, quantization="none"))
    enc = actor.tokenizer(actor.prompt_text(episode("oak", 2)), return_tensors="pt", add_special_tokens=False)
    outs = []
    for cache in (GrowingCache(actor.model.config.num_hidden_layers), DynamicCache(config=actor.model.config)):
        # 150 new tokens: past the first growth (+64)
        outs.append(actor.model.generate(**enc, **{cache_kwarg(actor.model): cache}, do_sample=False,
                                         max_new_tokens=150, min_new_tokens=150, pad_token_id=0))
    assert torch.equal(outs[0], outs[1])


def test_shared_prefixes_are_the_shortest_common_roots():
    from agentr_lib.kv_cache import shared_prefixes
    instruction = list(range(40))
    rows = [instruction + [1, 2], instruction + [1, 3], instruction + [7], [9] * 50, [9] * 40 + [8], [5] * 60]
    assert shared_prefixes(rows, min_tokens=32) == [instruction, [9] * 40]
    assert shared_prefixes(rows, min_tokens=41) == [instruction + [1]]


def test_sliding_window_models_keep_their_own_cache_and_no_reuse():
    from transformers import DynamicCache, MistralConfig, MistralForCausalLM

    from agentr_lib.kv_cache import new_cache, supports_prefix_reuse
    config = MistralConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, sliding_window=16)
    windowed = MistralForCausalLM(config)
    assert not supports_prefix_reuse(windowed)
    assert type(new_cache(windowed)) is DynamicCache
    full = load_actor(ModelCfg(name=TINY_RANDOM, quantization="none"))
    assert supports_prefix_reuse(full.model) and isinstance(new_cache(full.model), GrowingCache)
