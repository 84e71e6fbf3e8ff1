"""The actor on the tiny random Llama (seconds), plus one slow test on the real offline SmolLM2: loading, decoding
(prefix reuse, stop rules), LoRA, and choosing among fixed continuations (a forced verdict)."""
import math
import time
from contextlib import contextmanager

import pytest
import torch
from pydantic import ValidationError

from agentr_lib import models
from agentr_lib.actor import load_actor
from agentr_lib.batching import Request, run_jobs
from agentr_lib.config import ConfigError, ModelCfg, from_dict
from agentr_lib.decoding import ActionLineDone, cut_reply
from agentr_lib.models import TINY_RANDOM, ModelUnavailable, build_tiny_random
from agentr_lib.trajectory import Step, conversation


def tiny(**kw) -> ModelCfg:
    return ModelCfg(name=TINY_RANDOM, **kw)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def nf4_actor(one_thread):
    start = time.time()
    actor = load_actor(tiny())
    actor.load_seconds = time.time() - start
    return actor


def chat(observation: str, steps: int = 0) -> list[dict]:
    history = [Step(response=f"Thought: step {i}.\nAction: look", action="look", observation=f"You see item {i}.")
               for i in range(steps)]
    return conversation("Craft the goal. Reply as Thought: ...\nAction: ...", observation, history)


def plain_greedy(actor, messages, max_new_tokens):
    """The reference: HF's own generate on one unpadded prompt."""
    enc = actor.tokenizer(actor.prompt_text(messages), return_tensors="pt", add_special_tokens=False)
    out = actor.model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens,
                               pad_token_id=actor.tokenizer.pad_token_id, eos_token_id=actor.eos_token_ids)
    tokens = out[0, enc.input_ids.shape[1]:].tolist()
    ends = [i for i, t in enumerate(tokens) if t in actor.eos_token_ids]
    return cut_reply(actor.tokenizer.decode(tokens[:ends[0]] if ends else tokens, skip_special_tokens=True))


def test_tiny_loads_in_seconds_as_nf4(nf4_actor):
    assert nf4_actor.load_seconds < 60  # seconds when warm; generous for a busy 2-core machine
    assert nf4_actor.is_quantized
    assert nf4_actor.model.config.num_hidden_layers == 2
    assert "<|im_start|>assistant\n" in nf4_actor.prompt_text(chat("hi"))  # ChatML, generation prompt added


def test_tiny_weights_follow_the_seed(nf4_actor):
    a, b, c = (build_tiny_random(nf4_actor.tokenizer, s).lm_head.weight for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_generate_shape(nf4_actor):
    replies = nf4_actor.generate([chat("a"), chat("b", steps=2), chat("c")], num_samples=2, temperature=1.0,
                                 max_new_tokens=8)
    assert len(replies) == 3 and all(len(r) == 2 for r in replies)
    assert all(isinstance(s, str) for r in replies for s in r)
    assert any(s for r in replies for s in r)


def test_greedy_is_deterministic(nf4_actor):
    convs = [chat("a"), chat("b", steps=1)]
    first = nf4_actor.generate(convs, num_samples=2, temperature=0, max_new_tokens=10)
    second = nf4_actor.generate(convs, num_samples=1, temperature=0, max_new_tokens=10)
    assert first[0][0] == first[0][1] == second[0][0] and first[1][0] == second[1][0]
    assert first[0][0] and first[0][0] != first[1][0]


@pytest.mark.parametrize("quantization", ["nf4", "none"])
def test_prefix_reuse_equals_plain_generate(quantization, nf4_actor):
    actor = nf4_actor if quantization == "nf4" else load_actor(tiny(quantization="none"))
    # different lengths, so that the batch is left-padded
    convs = [chat("short"), chat("a much longer first observation " * 6, steps=2), chat("middle one", steps=1)]
    # the batch step itself: generate() would decode greedy samples once and copy them, skipping the fork
    forked = actor._generate_batch([actor.prompt_text(c) for c in convs], 3, temperature=0, max_new=16)
    assert forked == actor.generate(convs, num_samples=3, temperature=0, max_new_tokens=16)
    for conv, samples in zip(convs, forked):
        reference = plain_greedy(actor, conv, 16)
        assert reference  # a random model writes text, so equality below says something
        assert samples == [reference] * 3


def test_nf4_forward_and_lora_backward():
    actor = load_actor(tiny(), trainable=True)
    assert actor.is_quantized
    ids = actor.tokenizer(actor.prompt_text(chat("train me")), return_tensors="pt").input_ids
    loss = actor.model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert math.isfinite(loss.item())
    lora = {n: p for n, p in actor.model.named_parameters() if "lora_" in n}
    assert lora and all(p.requires_grad for p in lora.values())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora.values())
    assert not [n for n, p in actor.model.named_parameters() if p.requires_grad and "lora_" not in n]


@pytest.mark.parametrize("quantization", ["nf4", "none"])
def test_adapter_round_trip(quantization, tmp_path):
    # fp32 compute: on a bf16 CPU, rounding differs between the trainable actor (no prefix reuse) and the loaded
    # one, and greedy decoding of a random model follows near-tied logits apart
    settings = tiny(quantization=quantization, compute_dtype="fp32")
    actor = load_actor(settings, trainable=True)
    with torch.no_grad():  # LoRA B starts at zero (a no-op adapter); give it weights so the round trip means something
        torch.manual_seed(0)
        for name, param in actor.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    convs = [chat("a"), chat("b", steps=1)]
    before = actor.generate(convs, temperature=0, max_new_tokens=12)
    actor.save_adapter(tmp_path / "adapter")
    base = load_actor(settings).generate(convs, temperature=0, max_new_tokens=12)
    assert before != base
    loaded = load_actor(settings, adapter=str(tmp_path / "adapter"))
    assert loaded.lora_merged == (quantization == "none")  # fp32 weights only: merging 4-bit would round LoRA away
    assert loaded.generate(convs, temperature=0, max_new_tokens=12) == before
    # the prefill-and-fork path through the peft wrapper
    forked = loaded._generate_batch([loaded.prompt_text(c) for c in convs], 2, temperature=0, max_new=12)
    assert sorted(forked) == sorted([r * 2 for r in before])  # _generate_batch keeps its input order: same set
    resumed = load_actor(settings, adapter=str(tmp_path / "adapter"), trainable=True)  # continue training
    assert any(p.requires_grad for n, p in resumed.model.named_parameters() if "lora_" in n)
    loaded.trainable()  # a merged actor unmerges to train
    assert not loaded.lora_merged
    assert loaded.generate(convs, temperature=0, max_new_tokens=12) == before


def test_save_adapter_without_lora_says_what_to_do(nf4_actor, tmp_path):
    with pytest.raises(ValueError, match="trainable"):
        nf4_actor.save_adapter(tmp_path / "x")


def test_trimming_keeps_the_preamble(nf4_actor):
    nf4_actor.cfg.max_context_tokens = 300
    try:
        long = chat("start here", steps=40)
        assert nf4_actor.count_tokens(long) > 300
        kept = nf4_actor.fit_context(long, max_new_tokens=32)
        assert nf4_actor.count_tokens(kept) <= 300 - 32
        assert kept[:4] == long[:4] and kept[-2:] == long[-2:]  # preamble and the latest step stay
        assert kept[4:6] == long[4:6]  # so does the first action/observation pair
        assert len(nf4_actor.generate([long], max_new_tokens=4)[0]) == 1
    finally:
        nf4_actor.cfg.max_context_tokens = 2048


def test_fits_is_the_token_budget_check(nf4_actor):
    conv = chat("hi", steps=2)
    n = nf4_actor.count_tokens(conv)
    assert nf4_actor.fits(n)(conv) and not nf4_actor.fits(n - 1)(conv)


def test_missing_local_dir_names_the_setting():
    with pytest.raises(ModelUnavailable, match="model.name"):
        load_actor(ModelCfg(name="/no/such/model/dir"))


def test_hub_id_without_downloads_names_the_setting(monkeypatch):
    monkeypatch.setattr(models, "downloads_off", lambda: True)
    with pytest.raises(ModelUnavailable, match="downloads are off: set model.name"):
        load_actor(ModelCfg(name="nobody-agentr/no-such-model", quantization="none"))


def test_bf16_where_unsupported_names_the_setting(monkeypatch):
    monkeypatch.setattr(models, "cpu_supports_bf16", lambda: False)
    with pytest.raises(ModelUnavailable, match="model.compute_dtype"):
        load_actor(tiny(compute_dtype="bf16", device="cpu"))
    assert models.pick_dtype(tiny(device="cpu"), torch.device("cpu")) == torch.float32
    monkeypatch.setattr(models, "cpu_supports_bf16", lambda: True)
    assert models.pick_dtype(tiny(device="cpu"), torch.device("cpu")) == torch.bfloat16


def test_cuda_without_cuda_names_the_setting(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelUnavailable, match="model.device"):
        load_actor(tiny(device="cuda"))


def test_bad_setting_names_the_key():
    with pytest.raises(ValidationError, match="quantization"):
        ModelCfg(quantization="int3")
    with pytest.raises(ConfigError, match="model.quantization"):
        from_dict({"model": {"quantization": "int3"}})


def test_cut_reply_ends_at_the_action_line():
    assert cut_reply("Thought: go.\nAction: craft 1 stick\nObservation: fake\nAction: more") == \
        "Thought: go.\nAction: craft 1 stick"
    assert cut_reply("  just text \n") == "just text"


def test_action_line_done_waits_for_the_full_line(nf4_actor):
    tok = nf4_actor.tokenizer
    done = ActionLineDone(tok)

    def finished(text):
        return done(tok(text, add_special_tokens=False).input_ids)

    assert not finished("Thought: go.\nAction: craft 1 st")
    assert finished("Thought: go.\nAction: craft 1 stick\n")
    assert not finished("Thought: the Action: word mid-line.\n")
    assert not finished("")


@pytest.mark.slow
def test_offline_smollm2_writes_a_reply():
    start = time.time()
    actor = load_actor(ModelCfg(max_new_tokens=32))
    loaded = time.time() - start
    [[reply]] = actor.generate([[{"role": "system", "content": "You are a helpful assistant."},
                                 {"role": "user", "content": "What is the capital of France?"}]], temperature=0)
    print(f"SmolLM2 load {loaded:.1f} s, reply {reply!r}")
    assert actor.is_quantized and any(ch.isalpha() for ch in reply)


def test_auto_quantization_is_nf4_only_on_cuda(monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    for bf16 in (False, True):  # bf16 CPUs too: measured no faster with NF4 (see pick_quantization)
        monkeypatch.setattr(models, "cpu_supports_bf16", lambda bf16=bf16: bf16)
        assert models.pick_quantization(tiny(quantization="auto"), cpu) == "none"
    assert models.pick_quantization(tiny(quantization="auto"), gpu) == "nf4"
    assert models.pick_quantization(tiny(quantization="nf4"), cpu) == "nf4"  # asked for: always honoured
    assert models.pick_quantization(tiny(quantization="none"), gpu) == "none"


# -- stop rules, through the real decoding loop ----------------------------------------------------------------

@contextmanager
def forced_reply(actor, conv, text):
    """The actor's model made to write `text`, then end its turn, after `conv`'s prompt: at every decoding step
    (one input token) the logits become a one-hot on the reply's next token, found from the step's position id."""
    target = actor.tokenizer(text, add_special_tokens=False).input_ids + [actor.eos_token_ids[0]]
    start = actor.count_tokens(conv)  # the step fed position p predicts reply token p + 1 - start

    def hook(module, args, kwargs, output):
        if kwargs.get("input_ids") is None or kwargs["input_ids"].shape[1] != 1:
            return output  # a prefill: its logits are not read
        step = (kwargs["position_ids"][:, -1] + 1 - start).clamp(max=len(target) - 1)
        output.logits.fill_(-1e4)
        output.logits[torch.arange(len(step)), -1, torch.tensor(target)[step.cpu()]] = 0.0
        return output

    handle = actor.model.register_forward_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


VERIFIER_REPLY = "The log reads:\nAction: take x\nObservation: you take x\nIt went wrong.\nJudgment: Bad"


def test_stop_none_keeps_a_reply_that_quotes_actions(nf4_actor):
    conv = chat("judge this")
    with forced_reply(nf4_actor, conv, VERIFIER_REPLY):
        whole = nf4_actor.generate([conv], temperature=0, max_new_tokens=64, stop="none")
        agent = nf4_actor.generate([conv], temperature=0, max_new_tokens=64)  # stop="action": the agent's rule
        sampled = nf4_actor.generate([conv], num_samples=2, temperature=1.0, max_new_tokens=64, seeds=[3],
                                     stop="none")  # the forked-cache path
        [via_jobs] = run_jobs([one_request(Request(conv, temperature=0, max_new_tokens=64, stop="none"))], nf4_actor)
    assert whole == [[VERIFIER_REPLY]] and sampled == [[VERIFIER_REPLY] * 2] and via_jobs == [VERIFIER_REPLY]
    assert agent == [["The log reads:\nAction: take x"]]


def test_the_two_line_layout_ends_after_its_action(nf4_actor):
    conv = chat("act")
    with forced_reply(nf4_actor, conv, "Thought:\nI go.\nAction:\ncraft 1 stick\nObservation: fake\nAction: more"):
        [[reply]] = nf4_actor.generate([conv], temperature=0, max_new_tokens=64)
    assert reply == "Thought:\nI go.\nAction:\ncraft 1 stick"


def test_an_unknown_stop_rule_is_refused(nf4_actor):
    with pytest.raises(ValueError, match="stop rule"):
        nf4_actor.generate([chat("a")], max_new_tokens=4, stop="judgment")


def one_request(request):
    replies = yield request
    return replies


# -- choosing a verdict ------------------------------------------------------------------------------------------

VERDICTS = ("Good", "Bad", "Uncertain")


@pytest.fixture(scope="module")
def fp32_actor(one_thread):
    return load_actor(tiny(quantization="none", compute_dtype="fp32"))


def plain_choice_score(actor, conv, prefix, choice):
    """The reference: one unpadded forward per choice, scoring the tokens that prompt + prefix does not hold."""
    prompt = actor.prompt_text(conv)
    base = actor.tokenizer(prompt + prefix, add_special_tokens=False).input_ids
    full = actor.tokenizer(prompt + prefix + " " + choice, add_special_tokens=False).input_ids
    shared = next((i for i, (a, b) in enumerate(zip(base, full)) if a != b), min(len(base), len(full)))
    with torch.no_grad():
        logp = torch.log_softmax(actor.model(input_ids=torch.tensor([full])).logits[0].float(), dim=-1)
    return sum(logp[t - 1, full[t]].item() for t in range(shared, len(full)))


@pytest.mark.parametrize("prefix", ["The step looks wrong.\nJudgment:", "hmm", "ends in a space "])
def test_choose_is_the_argmax_of_plain_scores(fp32_actor, prefix):
    conv = chat("judge this", steps=1)
    want = [plain_choice_score(fp32_actor, conv, prefix, c) for c in VERDICTS]
    assert fp32_actor.choice_scores(conv, prefix, VERDICTS) == pytest.approx(want, abs=1e-4)
    [chosen] = fp32_actor.choose([conv], [prefix], VERDICTS)
    assert chosen in VERDICTS and chosen == VERDICTS[want.index(max(want))]


def test_choose_batches_conversations_and_restores_training_mode(fp32_actor):
    convs, prefixes = [chat("a"), chat("b", steps=2)], ["x\nJudgment:", "y\nJudgment:"]
    fp32_actor.model.train()
    try:
        chosen = fp32_actor.choose(convs, prefixes, VERDICTS)
        assert fp32_actor.model.training
    finally:
        fp32_actor.model.eval()
    assert chosen == [fp32_actor.choose([c], [p], VERDICTS)[0] for c, p in zip(convs, prefixes)]
    assert chosen == fp32_actor.choose(convs, prefixes, VERDICTS)  # deterministic


def test_choose_ties_go_to_the_first_choice(fp32_actor, monkeypatch):
    monkeypatch.setattr(fp32_actor, "choice_scores", lambda *args: [-2.0, -1.0, -1.0])
    assert fp32_actor.choose([chat("a")], ["p"], VERDICTS) == ["Bad"]


def test_a_choices_request_gets_the_chosen_verdict_through_run_jobs(fp32_actor):
    conv, prefix = chat("judge this"), "I am not sure.\nJudgment:"
    [got] = run_jobs([one_request(Request(conv, choices=VERDICTS, reply_prefix=prefix))], fp32_actor)
    assert got == fp32_actor.choose([conv], [prefix], VERDICTS) and got[0] in VERDICTS


# -- the verifier, through the real actor ------------------------------------------------------------------------

def critique_through(actor, reply: str, force_verdict: bool):
    """Critique pair (good 3, bad 2) of test_revision's hand tree, whose one judged step is "x", answered by the real
    actor made to write `reply`."""
    import random

    from test_revision import hand_tree, path

    from agentr_lib.batching import run_jobs
    from agentr_lib.revision import _verifier_conversation, critique_job
    tree = hand_tree()
    good, bad = path(tree, 3), path(tree, 2)
    conv = _verifier_conversation(tree, bad, 0, None)
    job = critique_job(tree, good, bad, 1.0, random.Random(0), max_new_tokens=64, seed=1, force_verdict=force_verdict)
    with forced_reply(actor, conv, reply):
        [critique] = run_jobs([job], actor)
    return critique, conv


def test_the_verifier_reads_a_reply_that_quotes_the_log_whole(nf4_actor):
    critique, _ = critique_through(nf4_actor, VERIFIER_REPLY, force_verdict=False)
    assert critique.replies == [VERIFIER_REPLY], "not cut at the quoted Action line"
    assert (critique.verdicts, critique.sources, critique.t_prime) == (["bad"], ["parsed"], 1)
    good, _ = critique_through(nf4_actor, VERIFIER_REPLY.replace("Bad", "Good"), force_verdict=False)
    assert good.verdicts == ["good"] and good.t_prime == 1  # the whole bad path: nothing flagged


def test_a_reply_without_a_verdict_gets_the_actors_most_likely_one(nf4_actor):
    reply = "Action: take x\nObservation: you take x\nHard to say"
    critique, conv = critique_through(nf4_actor, reply, force_verdict=True)
    scores = nf4_actor.choice_scores(conv, reply + "\nJudgment:", VERDICTS)
    assert critique.replies == [reply] and critique.sources == ["chosen"]
    assert critique.verdicts == [VERDICTS[scores.index(max(scores))].lower()]
    unforced, _ = critique_through(nf4_actor, reply, force_verdict=False)
    assert unforced.verdicts == ["unparsable"] and unforced.sources == ["parsed"]
