"""data.py: the loss mask token by token, truncation, general-data loading and mixing, dataset round trip."""
import json
import logging

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from agentr_lib.data import (
    IGNORE_INDEX,
    labelled_spans,
    load_data,
    load_general_data,
    mix_general,
    save_data,
    to_dataset,
    tokenize_conversation,
    tokenize_dataset,
)
from agentr_lib.trajectory import message, preamble

BAD = "Thought: I need planks first.\nAction: get 1 oak planks"
REVISION = "Thought: I realize my approach was flawed. I need to revise it.\nAction: wait"
GOOD_1 = "Thought: Logs come first.\nAction: get 1 oak log"
GOOD_2 = "Thought: Now the planks.\nAction: craft 4 oak planks using 1 oak log"


def good_sample() -> dict:
    msgs = preamble("Craft the goal. Reply with Thought: ... Action: ...", "Goal: craft oak planks.") + [
        message("assistant", GOOD_1, True), message("user", "Got 1 oak log"),
        message("assistant", GOOD_2, True), message("user", "Crafted 4 minecraft:oak_planks"),
    ]
    return {"messages": msgs, "kind": "good", "env": "textcraft", "task_id": 7}


def revision_sample() -> dict:
    """Bad prefix (context only), the revision turn + fake "ok.", then the good continuation (trained)."""
    msgs = preamble("Craft the goal. Reply with Thought: ... Action: ...", "Goal: craft oak planks.") + [
        message("assistant", BAD, False), message("user", "Could not find enough items to craft oak planks"),
        message("assistant", REVISION, True), message("user", "ok."),
        message("assistant", GOOD_1, True), message("user", "Got 1 oak log"),
        message("assistant", GOOD_2, True), message("user", "Crafted 4 minecraft:oak_planks"),
    ]
    return {"messages": msgs, "kind": "revision", "env": "textcraft", "task_id": 7, "t_prime": 1,
            "revision_length": 1, "good_leaf": 12, "bad_leaf": 5}


# --------------------------------------------------------------------------------------------------- tokenizers
LLAMA3_STYLE = ("{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n'"
                " + m['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
                "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")


def llama3_style_tokenizer():
    """A byte-level BPE trained in memory on the test texts, with Llama-3's chat layout (header tokens,
    <|eot_id|> with nothing after it, a BOS written by the template)."""
    specials = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [m["content"] for m in revision_sample()["messages"]] * 3
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=500, special_tokens=specials, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   chat_template=LLAMA3_STYLE)


@pytest.fixture(scope="module")
def smollm2():
    from agentr_lib.config import ModelCfg
    from agentr_lib.models import ModelUnavailable, smollm2_tokenizer
    try:
        return smollm2_tokenizer(ModelCfg())
    except ModelUnavailable as err:
        pytest.skip(str(err))


@pytest.fixture(params=["smollm2", "llama3-style"])
def tok_eot(request):
    """(tokenizer, its end-of-turn token) for two chat layouts."""
    if request.param == "smollm2":
        return request.getfixturevalue("smollm2"), "<|im_end|>"
    return llama3_style_tokenizer(), "<|eot_id|>"


# --------------------------------------------------------------------------------------------------- the mask
def test_good_sample_labels_exactly_the_agent_turns(tok_eot):
    tok, eot = tok_eot
    enc = tokenize_conversation(good_sample()["messages"], tok, 4096)
    assert labelled_spans(enc["input_ids"], enc["labels"], tok) == [GOOD_1 + eot, GOOD_2 + eot]
    # the ids are exactly what the chat template gives at generation time
    plain = [{"role": m["role"], "content": m["content"]} for m in good_sample()["messages"]]
    assert enc["input_ids"] == tok(tok.apply_chat_template(plain, tokenize=False), add_special_tokens=False).input_ids
    assert enc["attention_mask"] == [1] * len(enc["input_ids"])


def test_revision_sample_masks_bad_prefix_and_trains_revision_and_continuation(tok_eot):
    tok, eot = tok_eot
    enc = tokenize_conversation(revision_sample()["messages"], tok, 4096)
    ids, labels = enc["input_ids"], enc["labels"]
    assert labelled_spans(ids, labels, tok) == [REVISION + eot, GOOD_1 + eot, GOOD_2 + eot]
    # token by token: a label is either the token itself or -100, nothing else
    assert all(lab in (tok_id, IGNORE_INDEX) for tok_id, lab in zip(ids, labels))
    # the header before each trained turn is context: the token right before a labelled run is never labelled,
    # and it is the end of the assistant header, not part of the content
    header_end = tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False,
                                         add_generation_prompt=True)[-3:]
    starts = [i for i in range(1, len(labels)) if labels[i] != IGNORE_INDEX and labels[i - 1] == IGNORE_INDEX]
    assert len(starts) == 3
    for i in starts:
        assert tok.decode(ids[:i]).endswith(header_end)
    # nothing of the bad prefix, the "Ok." or any observation is trained
    trained = "".join(labelled_spans(ids, labels, tok))
    for context in (BAD, "Ok.", "ok.", "Could not find", "Got 1 oak log", "Goal:"):
        assert context not in trained


def test_truncation_keeps_the_left_part_and_drops_samples_without_loss(smollm2):
    msgs = revision_sample()["messages"]
    full = tokenize_conversation(msgs, smollm2, 4096)
    first_label = next(i for i, lab in enumerate(full["labels"]) if lab != IGNORE_INDEX)
    cut = first_label + 5  # inside the revision turn
    enc = tokenize_conversation(msgs, smollm2, cut)
    assert enc["input_ids"] == full["input_ids"][:cut] and enc["labels"] == full["labels"][:cut]
    (partial,) = labelled_spans(enc["input_ids"], enc["labels"], smollm2)
    assert REVISION.startswith(partial) and partial != REVISION
    # cut before the first trained token: nothing to learn, so no sample at all
    assert tokenize_conversation(msgs, smollm2, first_label) is None
    ds, report = tokenize_dataset([revision_sample(), good_sample()], smollm2, first_label)
    assert report["dropped_no_loss"] == 1 and report["kept"] == 1 and len(ds) == 1
    assert all(n <= first_label for n in ds["length"])


def test_zero_loss_sample_is_dropped_and_reported(smollm2, caplog):
    silent = good_sample()
    silent["messages"] = [dict(m, loss=False) for m in silent["messages"]]
    assert tokenize_conversation(silent["messages"], smollm2, 4096) is None
    with caplog.at_level(logging.WARNING):
        ds, report = tokenize_dataset([silent, good_sample()], smollm2, 4096)
    assert report["dropped_no_loss"] == 1 and len(ds) == 1 and "dropped 1 of 2" in caplog.text
    assert report["loss_tokens"] == sum(ds["loss_tokens"]) > 0
    with pytest.raises(ValueError, match="no sample has a loss token"):
        tokenize_dataset([silent], smollm2, 4096)


def test_template_that_does_not_render_message_by_message_is_refused():
    tok = llama3_style_tokenizer()
    tok.chat_template = "{{ messages | length }}" + LLAMA3_STYLE  # every prefix renders differently
    with pytest.raises(ValueError, match="does not render message by message"):
        tokenize_conversation(good_sample()["messages"], tok, 4096)


# --------------------------------------------------------------------------------------------------- general data
def agent_samples(n):
    return [dict(good_sample(), task_id=i) for i in range(n)]


def general_samples(n):
    return [{"messages": [message("user", f"q{i}"), message("assistant", f"a{i}", True)], "kind": "general",
             "env": None, "task_id": None, "source_id": str(i)} for i in range(n)]


def test_mixing_counts_follow_eta():
    agent, general = agent_samples(10), general_samples(100)
    mixed = mix_general(agent, general, eta=0.2, seed=1)
    kinds = [s["kind"] for s in mixed]
    assert kinds.count("good") == 10 and kinds.count("general") == 40  # agent share 10/50 = 0.2
    ids = [s["source_id"] for s in mixed if s["kind"] == "general"]
    assert len(set(ids)) == 40  # without replacement
    assert mix_general(agent, general, eta=0.2, seed=1) == mixed  # seeded
    assert mix_general(agent, general, eta=1.0) == agent
    assert mix_general(agent, [], eta=0.2) == agent
    assert [s["kind"] for s in mix_general(agent, general, eta=0.5)].count("general") == 10
    with pytest.raises(ValueError):
        mix_general(agent, general, eta=0.0)


def test_mixing_with_too_few_general_samples_repeats_them_and_says_so(caplog):
    with caplog.at_level(logging.WARNING):
        mixed = mix_general(agent_samples(10), general_samples(5), eta=0.2, seed=0)
    ids = [s["source_id"] for s in mixed if s["kind"] == "general"]
    assert len(ids) == 40 and set(ids) == {str(i) for i in range(5)}
    assert "with replacement" in caplog.text


def test_sharegpt_and_messages_files_load_as_general_samples(tmp_path):
    sharegpt = [
        {"id": "a", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"},
                                      {"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]},
        {"id": "b", "conversations": [{"from": "gpt", "value": "(leading bot turn)"},
                                      {"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]},
        {"id": "c", "conversations": [{"from": "human", "value": "Q"}, {"from": "human", "value": "Q again"}]},
        {"id": "d", "conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Q"},
                                      {"from": "gpt", "value": "A"}]},
        {"id": "e", "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "  "}]},
    ]
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(sharegpt))
    samples = load_general_data(path)
    assert [s["source_id"] for s in samples] == ["a", "b", "d"]  # c: no alternation, e: empty reply
    assert all(s["kind"] == "general" for s in samples)
    a, b, d = samples
    assert [(m["role"], m["content"], m["loss"]) for m in a["messages"]] == [
        ("user", "Hi", False), ("assistant", "Hello!", True), ("user", "2+2?", False), ("assistant", "4", True)]
    assert [m["role"] for m in b["messages"]] == ["user", "assistant"]
    assert [(m["role"], m["loss"]) for m in d["messages"]] == [("system", False), ("user", False),
                                                               ("assistant", True)]
    jsonl = tmp_path / "chat.jsonl"
    jsonl.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                         {"role": "assistant", "content": f"a{i}"}]})
                               for i in range(3)))
    assert len(load_general_data(jsonl)) == 3 and len(load_general_data(jsonl, limit=2)) == 2


def test_general_samples_tokenize_with_loss_on_every_reply(smollm2, tmp_path):
    path = tmp_path / "g.json"
    turns = [("human", "Hi"), ("gpt", "Yo"), ("human", "Bye"), ("gpt", "Ciao")]
    path.write_text(json.dumps([{"conversations": [{"from": f, "value": v} for f, v in turns]}]))
    (sample,) = load_general_data(path)
    enc = tokenize_conversation(sample["messages"], smollm2, 512)
    assert labelled_spans(enc["input_ids"], enc["labels"], smollm2) == ["Yo<|im_end|>", "Ciao<|im_end|>"]


# --------------------------------------------------------------------------------------------------- datasets
def test_dataset_round_trip_keeps_messages_flags_and_provenance(tmp_path):
    samples = [good_sample(), revision_sample(), *general_samples(2)]
    ds = to_dataset(samples)
    assert set(ds.column_names) >= {"messages", "kind", "env", "task_id", "t_prime", "revision_length", "source_id"}
    save_data(samples, tmp_path / "data")
    save_data(samples[:2], tmp_path / "data")  # replacing an existing dataset works
    back = load_data(tmp_path / "data").to_list()
    assert len(back) == 2
    assert back[1]["messages"] == revision_sample()["messages"]
    assert back[1]["t_prime"] == 1 and back[0]["t_prime"] is None  # provenance missing from a kind → None
    assert [m["loss"] for m in back[1]["messages"]] == [m["loss"] for m in revision_sample()["messages"]]
    assert not list(tmp_path.glob(".tmp-*")) and not list(tmp_path.glob(".old-*"))


def test_to_dataset_rejects_unknown_kinds_and_message_keys():
    with pytest.raises(ValueError, match="kind"):
        to_dataset([dict(good_sample(), kind="bad")])
    broken = good_sample()
    broken["messages"][0] = {"role": "system", "content": "x"}
    with pytest.raises(ValueError, match="role, content, loss"):
        to_dataset([broken])
