"""The decoding loop: exact sampling, finished rows dropped without changing anyone's tokens (merged LoRA:
test_actor.py's adapter round trip); where a reply ends (stop rules, both Action layouts)."""
import math

import pytest
import torch

from agentr_lib.actor import load_actor
from agentr_lib.config import ModelCfg
from agentr_lib.decoding import ActionLineDone, cut_reply, decode, has_complete_action_line, sample_tokens, stop_rule
from agentr_lib.kv_cache import cache_kwarg
from agentr_lib.models import TINY_RANDOM
from agentr_lib.trajectory import Step, conversation, parse_action

pytestmark = pytest.mark.usefixtures("one_thread")


def chat(observation: str, steps: int = 0) -> list[dict]:
    history = [Step(response=f"Thought: step {i}.\nAction: look", action="look", observation=f"You see item {i}.")
               for i in range(steps)]
    return conversation("Craft the goal. Reply as Thought: ...\nAction: ...", observation, history)


def frequencies(logits: list[float], temperature: float, draws: int = 40000) -> torch.Tensor:
    torch.manual_seed(0)
    rows = torch.tensor([logits]).expand(draws, -1)
    return torch.bincount(sample_tokens(rows, temperature), minlength=len(logits)).double() / draws


def test_sampling_follows_the_softmax():
    logits = [math.log(0.5), math.log(0.3), math.log(0.2), -math.inf]
    assert torch.allclose(frequencies(logits, 1.0), torch.tensor([0.5, 0.3, 0.2, 0.0], dtype=torch.double),
                          atol=0.01)
    # temperature 2: p^(1/2), renormalised
    sharp = torch.tensor([0.5, 0.3, 0.2]).sqrt()
    want = torch.cat([sharp / sharp.sum(), torch.zeros(1)]).double()
    assert torch.allclose(frequencies(logits, 2.0), want, atol=0.01)


def test_zero_probability_tokens_are_never_drawn():
    logits = [-math.inf] * 5 + [0.0] + [-math.inf] * 5 + [0.0]  # two tokens, one at each end of a zero run
    freq = frequencies(logits, 1.0, draws=5000)
    assert set(torch.nonzero(freq).flatten().tolist()) == {5, 11}


def test_temperature_zero_is_argmax():
    logits = torch.tensor([[0.1, 3.0, 2.9], [5.0, -1.0, 4.0]])
    assert sample_tokens(logits, 0).tolist() == [1, 0]


@pytest.fixture(scope="module")
def fp32_actor():
    return load_actor(ModelCfg(name=TINY_RANDOM, quantization="none", compute_dtype="fp32"))


def decode_rows(actor, convs, is_done, drop_share, max_new=12):
    rows = [actor.tokenizer(actor.prompt_text(c), add_special_tokens=False).input_ids for c in convs]
    actor.forget_prefixes()
    ids, mask, cache = actor.prefixes.prefill(actor.model, rows)
    return decode(actor.model, ids, mask, cache, max_new, 0, [], is_done, cache_kwarg(actor.model), drop_share)


def test_dropping_finished_rows_keeps_everyone_elses_tokens(fp32_actor):
    convs = [chat("short"), chat("a much longer first observation " * 4, steps=2), chat("middle", steps=1),
             chat("x")]
    full = decode_rows(fp32_actor, convs, lambda tokens: False, drop_share=1.0)
    assert all(len(r) == 12 for r in full) and len({tuple(r) for r in full}) > 1
    stop_after = {tuple(full[i][:2 + 3 * i]): 2 + 3 * i for i in range(len(convs))}  # row i stops after 2 + 3i

    def done(tokens):
        return stop_after.get(tuple(tokens)) == len(tokens)

    for share in (0.01, 0.5, 1.0):  # drop at every end, at half, never
        got = decode_rows(fp32_actor, convs, done, drop_share=share)
        assert got == [full[i][:2 + 3 * i] if 2 + 3 * i <= 12 else full[i] for i in range(len(convs))]


def test_grouped_kv_attention_under_a_padding_mask_gives_the_same_tokens_and_logits(fp32_actor, monkeypatch):
    """models.grouped_kv_attention: SDPA reads the grouped KV heads itself instead of transformers copying them out
    (repeat_kv); a left-padded batch (a mask) takes that path on CPU."""
    import os
    assert os.environ.get("TRANSFORMERS_SDPA_FORCE_GQA") == "1"  # set by load_actor on CPU
    assert fp32_actor.model.config.num_key_value_heads < fp32_actor.model.config.num_attention_heads
    convs = [chat("short"), chat("a much longer first observation " * 4, steps=2), chat("middle", steps=1)]
    rows = [fp32_actor.tokenizer(fp32_actor.prompt_text(c), add_special_tokens=False).input_ids for c in convs]

    sdpa, grouped_calls = torch.nn.functional.scaled_dot_product_attention, []

    def counting_sdpa(*args, **kwargs):
        grouped_calls.append(kwargs.get("enable_gqa", False))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting_sdpa)

    def run():
        grouped_calls.clear()
        ids, mask, _ = fp32_actor.prefixes.prefill(fp32_actor.model, [[0] * 3 + rows[0]] + rows[1:])
        with torch.no_grad():
            logits = fp32_actor.model(input_ids=ids, attention_mask=mask).logits
        return logits, decode_rows(fp32_actor, convs, lambda tokens: False, drop_share=1.0), set(grouped_calls)

    grouped_logits, grouped, paths = run()
    assert paths == {True}
    monkeypatch.setenv("TRANSFORMERS_SDPA_FORCE_GQA", "0")
    copied_logits, copied, paths = run()
    assert False in paths  # the padded calls copy the heads out (unpadded ones group either way)
    assert grouped == copied and len(grouped[0]) == 12
    assert torch.allclose(grouped_logits, copied_logits, atol=1e-5)


def test_end_of_turn_ends_a_row_and_is_not_kept(fp32_actor):
    convs = [chat("a"), chat("b", steps=1)]
    full = decode_rows(fp32_actor, convs, lambda tokens: False, drop_share=1.0)
    end = full[0][3]  # pretend the 4th token of row 0 ends a turn
    rows = [fp32_actor.tokenizer(fp32_actor.prompt_text(c), add_special_tokens=False).input_ids for c in convs]
    fp32_actor.forget_prefixes()
    ids, mask, cache = fp32_actor.prefixes.prefill(fp32_actor.model, rows)
    got = decode(fp32_actor.model, ids, mask, cache, 12, 0, [end], lambda t: False, cache_kwarg(fp32_actor.model))
    assert got[0] == full[0][:full[0].index(end)]
    assert got[1] == (full[1][:full[1].index(end)] if end in full[1] else full[1])


# -- where an agent reply ends: both Action layouts ------------------------------------------------------------

ONE_LINE = "Thought: go.\nAction: craft 1 stick"
TWO_LINE = "Thought:\ngo.\nAction:\ncraft 1 stick"  # AgentGym's prompts: the action on the line after "Action:"


@pytest.mark.parametrize("reply", [ONE_LINE, TWO_LINE])
def test_both_layouts_are_cut_after_their_action(reply):
    assert cut_reply(reply + "\nObservation: fake\nAction: more") == reply
    assert cut_reply(reply) == reply  # a finished reply: its last line counts as whole
    assert parse_action(reply) == parse_action(reply + "\n") == "craft 1 stick"


def test_a_bare_action_line_is_not_an_action_yet():
    assert not has_complete_action_line("Thought:\ngo.\nAction:\n")
    assert not has_complete_action_line("Thought:\ngo.\nAction:\ncraft 1 st")  # the action's line is not whole
    assert not has_complete_action_line("Thought:\ngo.\nAction:\n\n")  # blank lines are skipped, as parse_action does
    assert has_complete_action_line("Thought:\ngo.\nAction:\n\ncraft 1 stick\n")
    assert has_complete_action_line(TWO_LINE + "\n") and has_complete_action_line(ONE_LINE + "\n")
    assert not has_complete_action_line(ONE_LINE)  # no newline yet: the action may still grow
    assert cut_reply("Thought:\ngo.\nAction:\n\ncraft 1 stick\nmore") == "Thought:\ngo.\nAction:\n\ncraft 1 stick"
    assert cut_reply("Thought: go.\nAction:") == "Thought: go.\nAction:"  # no action follows: kept whole
    assert parse_action("Thought: go.\nAction:") == ""


def test_the_word_action_mid_line_is_no_action_line():
    assert not has_complete_action_line("Thought: the Action: word.\nmore\n")
    assert cut_reply("Thought: the Action: word.\nmore") == "Thought: the Action: word.\nmore"


@pytest.mark.parametrize("layout", [ONE_LINE, TWO_LINE])
def test_action_line_done_on_a_token_stream(fp32_actor, layout):
    """Fed one token at a time, the tiny model's tokenizer: done exactly at the token that ends the action's line."""
    tok = fp32_actor.tokenizer
    done = ActionLineDone(tok)
    ids = tok(layout + "\nObservation: fake\n", add_special_tokens=False).input_ids
    first = next(n for n in range(1, len(ids) + 1) if done(ids[:n]))
    assert tok.decode(ids[:first]) == layout + "\n"
    assert not done(tok("Thought:\ngo.\nAction:\n", add_special_tokens=False).input_ids)


def test_stop_rules(fp32_actor):
    is_done, cut = stop_rule("none", fp32_actor.tokenizer)
    text = " Action: x\nObservation: y\nJudgment: Bad \n"
    assert not is_done(fp32_actor.tokenizer(text, add_special_tokens=False).input_ids)
    assert cut(text) == text.strip()
    is_done, cut = stop_rule("action", fp32_actor.tokenizer)
    assert is_done(fp32_actor.tokenizer(text, add_special_tokens=False).input_ids) and cut(text) == "Action: x"
    with pytest.raises(ValueError, match="stop rule"):
        stop_rule("judgment", fp32_actor.tokenizer)
