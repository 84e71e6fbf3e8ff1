"""Training data: samples with per-message loss flags → HF datasets → token ids and labels; general-data mixing.

A *sample* is a plain dict
    {"messages": [{"role", "content", "loss"}, ...], "kind": "good" | "revision" | "direct_revision" | "optimal"
     | "general" | "demo" | "demo_window", "env": str | None, "task_id": ...,
     **provenance (leaf ids, t_prime, revision_length, ...)}
with the message layout of `trajectory.py`. On disk it is an HF dataset (`save_to_disk`), one row per sample.
The loss mask is decided in exactly one place: `tokenize_conversation`.
"""
from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from pathlib import Path

from datasets import Dataset, load_from_disk

from .config import ConfigError, general_record_problem
from .files import CorruptArtefact, read_json, write_dir
from .trajectory import Step, conversation, covering_windows

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # the label value that torch's cross-entropy (and every HF causal LM) skips
KINDS = ("good", "revision", "direct_revision", "optimal", "general", "demo", "demo_window")
TOKEN_COLUMNS = ("input_ids", "attention_mask", "labels")


# --------------------------------------------------------------------------------------------------- datasets
def to_dataset(samples: list[dict]) -> Dataset:
    """Samples → `datasets.Dataset`. Keys missing from some samples (provenance differs by kind) become None.

    (`Dataset.from_list` would take the columns of the first row only and silently drop the others.)
    """
    if not samples:
        raise ValueError("to_dataset: no samples")
    for s in samples:
        _check_sample(s)
    columns = list(dict.fromkeys(k for s in samples for k in s))
    rows = [{k: s.get(k) for k in columns} for s in samples]
    return Dataset.from_list(rows)


def save_data(data: list[dict] | Dataset, path: str | Path) -> Dataset:
    """Write samples (or a dataset) with `save_to_disk`, atomically (files.write_dir)."""
    ds = data if isinstance(data, Dataset) else to_dataset(data)
    write_dir(path, lambda tmp: ds.save_to_disk(str(tmp)))
    return ds


def load_data(path: str | Path) -> Dataset:
    """A dataset written by `save_data`; CorruptArtefact (naming the folder and how to redo it) for a folder that is
    not a whole one (files missing, or `datasets` cannot read it)."""
    path = Path(path)
    missing = [f for f in ("dataset_info.json", "state.json") if not (path / f).is_file()]
    if missing:
        raise CorruptArtefact(path, f"a dataset folder without {' and '.join(missing)}")
    state = read_json(path / "state.json")
    data_files = [f.get("filename") for f in state.get("_data_files", [])] if isinstance(state, dict) else []
    absent = [str(f) for f in data_files if not f or not (path / f).is_file()]
    if not data_files or absent:
        raise CorruptArtefact(path, f"a dataset folder without its data files ({', '.join(absent) or 'none listed'})")
    try:
        ds = load_from_disk(str(path))
        len(ds), ds[:1]  # reads the arrow tables' metadata and first row: a cut file fails here, not mid-training
    except Exception as err:  # datasets/pyarrow have no common error type for an unreadable folder
        raise CorruptArtefact(path, f"datasets cannot read it: {type(err).__name__}: {str(err).splitlines()[0]}") \
            from None
    return ds


def save_preferences(pairs: list[dict], path: str | Path) -> Dataset:
    """ETO's good/bad pairs (prompt / chosen / rejected conversations, revision.preference_pair) as an HF dataset."""
    for pair in pairs:
        for part in ("prompt", "chosen", "rejected"):
            _check_messages(pair[part])
    ds = Dataset.from_list(pairs)
    write_dir(path, lambda tmp: ds.save_to_disk(str(tmp)))
    return ds


def load_preferences(path: str | Path) -> Dataset:
    return load_data(path)


# --------------------------------------------------------------------------------------------------- windows
def fitted(sample: dict, fits: Callable[[list[dict]], bool], window_kind: str | None = None) -> list[dict]:
    """`sample` as it is if its messages `fit`, else the windows that together train each of its trained turns
    (`covering_windows`: old turns dropped as in the actor's context at inference). Training keeps a conversation's
    first max_length tokens, so without this a long sample would lose its last turns — for a revision sample, the
    revision turn and the good continuation, i.e. all it teaches. Windows after the first get `window_kind` if given;
    each says which it is (`window`). Samples that are not agent episodes (general chat data) are left alone."""
    if sample.get("kind") == "general" or fits(sample["messages"]):
        return [sample]
    return [{**sample, "messages": window, "window": i,
             "kind": window_kind if i and window_kind else sample["kind"]}
            for i, window in enumerate(covering_windows(sample["messages"], fits))]


def demo_samples(env, demo, fits: Callable[[list[dict]], bool]) -> list[dict]:
    """A scripted expert episode (`env.demonstrate(task)`) as training conversations, loss on every agent turn.

    Training keeps a conversation's first max_length tokens, so a long episode (a WebShop session, a SciWorld
    protocol) would never teach its later actions (the click on a result, the Buy). A conversation that does not
    `fit` is cut into windows (`fitted`); the first is kind "demo", the rest "demo_window".
    """
    first = env.reset(demo.task_id)
    steps = []
    for thought, action in zip(demo.thoughts, demo.actions):
        result = env.step(action)
        steps.append(Step(env.format_reply(thought, action), action, result.observation, result.reward,
                          result.done))  # in the layout the env's instruction asks for
    messages = conversation(env.instruction, first, steps, loss=True)
    sample = {"messages": messages, "kind": "demo", "env": env.name, "task_id": demo.task_id}
    return fitted(sample, fits, window_kind="demo_window")


def _check_sample(s: dict) -> None:
    if s.get("kind") not in KINDS:
        raise ValueError(f"sample kind {s.get('kind')!r} is not one of {KINDS}")
    _check_messages(s["messages"])


def _check_messages(messages: list[dict]) -> None:
    for m in messages:
        if set(m) != {"role", "content", "loss"}:
            raise ValueError(f"a message needs exactly the keys role, content, loss; got {sorted(m)}")


# --------------------------------------------------------------------------------------------------- loss mask
def tokenize_conversation(messages: list[dict], tokenizer, max_length: int) -> dict | None:
    """Token ids and labels of one conversation; the one place where the loss mask is decided.

    The text is the tokenizer's own chat template applied to the whole conversation, tokenised once, so training
    sees exactly the tokens that generation will see. A token gets a label (its own id; the model shifts) iff it
    starts inside a *trained span*; every other token gets -100 (IGNORE_INDEX). A trained span is, for each
    assistant message with `loss` True:
        from the end of the assistant header (what `add_generation_prompt=True` appends, e.g.
        "<|im_start|>assistant\\n" or "<|start_header_id|>assistant<|end_header_id|>\\n\\n")
        to the end of the message's end-of-turn token ("<|im_end|>", "<|eot_id|>"), without the whitespace that
        the template writes after it.
    So the assistant header gets no loss (at generation time the prompt supplies it), the end-of-turn token does
    (the model must learn to stop), and the separator after it ("\\n" in ChatML) does not (the template writes
    it, not the model). System, user (instruction, observations, "ok."), the fixed "Ok." and every assistant turn
    with `loss` False (the bad prefix of a revision sample) are context only.

    Spans are found on the rendered text: the template applied to messages[:i] (with the generation prompt) and
    to messages[:i+1] must both be prefixes of the full rendering, which holds for chat templates that render
    each message independently of the later ones (ChatML, Llama-3, Mistral, Gemma); otherwise a ValueError.

    Truncation keeps the first `max_length` tokens (the right end is cut). Returns None when no labelled token
    is left (nothing to learn from); callers drop and count such samples.
    """
    text, spans = trained_char_spans(messages, tokenizer)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    in_span = bytearray(len(text) + 1)
    for a, b in spans:
        in_span[a:b] = b"\x01" * (b - a)
    labels = [tok if in_span[start] else IGNORE_INDEX for tok, (start, _) in zip(ids, offsets)]
    ids, labels = ids[:max_length], labels[:max_length]
    if all(lab == IGNORE_INDEX for lab in labels):
        return None
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def trained_char_spans(messages: list[dict], tokenizer) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the [start, end) character spans that carry loss (see tokenize_conversation)."""
    text = render(messages, tokenizer)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant" or not m["loss"]:
            continue
        before = render(messages[:i], tokenizer, add_generation_prompt=True)
        through = render(messages[: i + 1], tokenizer)
        if not (through.startswith(before) and text.startswith(through)):
            raise ValueError(
                "the chat template does not render message by message (a prefix of the conversation does not "
                f"render to a prefix of the whole, at message {i}); the loss mask cannot be located"
            )
        spans.append((len(before), len(through.rstrip())))
    return text, spans


def render(messages: list[dict], tokenizer, add_generation_prompt: bool = False) -> str:
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]  # templates never see `loss`
    return tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=add_generation_prompt)


def labelled_spans(input_ids: list[int], labels: list[int], tokenizer) -> list[str]:
    """Decoded runs of consecutive labelled tokens: what the model is trained to write (for tests and eyeballing)."""
    runs, current = [], []
    for tok, lab in zip(input_ids, labels):
        if lab != IGNORE_INDEX:
            current.append(tok)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [tokenizer.decode(r, skip_special_tokens=False) for r in runs]


def tokenize_dataset(data: list[dict] | Dataset, tokenizer, max_length: int) -> tuple[Dataset, dict]:
    """Tokenise every sample; drop those left without loss tokens. Returns the dataset and a small report.

    Columns: input_ids, attention_mask, labels, length (for length-grouped batching), loss_tokens, kind.
    """
    rows = data if isinstance(data, list) else data.to_list()
    out = {c: [] for c in (*TOKEN_COLUMNS, "length", "loss_tokens", "kind")}
    truncated = dropped = 0
    for s in rows:
        enc = tokenize_conversation(s["messages"], tokenizer, max_length)
        if enc is None:
            dropped += 1
            continue
        truncated += len(enc["input_ids"]) == max_length
        for c in TOKEN_COLUMNS:
            out[c].append(enc[c])
        out["length"].append(len(enc["input_ids"]))
        out["loss_tokens"].append(sum(lab != IGNORE_INDEX for lab in enc["labels"]))
        out["kind"].append(s.get("kind"))
    if dropped:
        log.warning("tokenize_dataset: dropped %d of %d samples with no loss token within max_length=%d",
                    dropped, len(rows), max_length)
    if not out["input_ids"]:
        raise ValueError(f"no sample has a loss token within max_length={max_length}")
    report = {
        "samples": len(rows), "kept": len(out["input_ids"]), "dropped_no_loss": dropped,
        "at_max_length": int(truncated), "tokens": sum(out["length"]), "loss_tokens": sum(out["loss_tokens"]),
        "by_kind": {k: out["kind"].count(k) for k in sorted(set(filter(None, out["kind"])))},
        "mask_by_kind": mask_audit(out["kind"], out["length"], out["loss_tokens"]),
    }
    return Dataset.from_dict(out), report


def mask_audit(kinds: list, lengths: list[int], loss_tokens: list[int]) -> dict:
    """Per sample kind: samples, tokens, tokens with loss and their share — what training actually learns from (a
    revision sample's bad prefix carries none, so its share sits below a good path's)."""
    audit: dict = {}
    for kind, length, lossy in zip(kinds, lengths, loss_tokens):
        a = audit.setdefault(kind or "unknown", {"samples": 0, "tokens": 0, "loss_tokens": 0})
        a["samples"] += 1
        a["tokens"] += length
        a["loss_tokens"] += lossy
    for a in audit.values():
        a["loss_share"] = a["loss_tokens"] / a["tokens"] if a["tokens"] else 0.0
    return dict(sorted(audit.items()))


# --------------------------------------------------------------------------------------------------- general data
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
          "bard": "assistant", "bing": "assistant", "model": "assistant", "system": "system"}


def load_general_data(path: str | Path, limit: int | None = None) -> list[dict]:
    """A local chat data file → samples of kind "general" with loss on every assistant turn.

    Reads JSON (a list) or JSONL; each record is ShareGPT-style `{"conversations": [{"from": "human"|"gpt"|
    "system", "value"}]}` or messages-style `{"messages": [{"role", "content"}]}`. Nothing is downloaded: the
    paper's set (ShareGPT_Vicuna_unfiltered) is a file the user points the params at. Conversations are cleaned
    like FastChat's preprocessing: leading non-user turns are dropped; a conversation whose roles do not alternate
    user/assistant, with an unknown role, or an empty assistant turn is skipped (counted in a log line).
    """
    records = _read_json_records(Path(path))
    samples, skipped = [], 0
    for n, rec in enumerate(records):
        if (problem := general_record_problem(rec, f"record {n}")) is not None:
            raise ConfigError(f"train.general_data: {path}: {problem}")
        messages = _conversation_messages(rec)
        if messages is None:
            skipped += 1
            continue
        samples.append({"messages": messages, "kind": "general", "env": None, "task_id": None,
                        "source": Path(path).name, "source_id": str(rec.get("id", n))})
        if limit is not None and len(samples) >= limit:
            break
    if skipped:
        log.info("load_general_data: skipped %d malformed conversations of %s", skipped, path)
    if records and not samples and limit != 0:
        raise ConfigError(f"train.general_data: {path}: none of its {len(records)} conversations is usable (each "
                          "needs user/assistant turns that alternate, starting with the user, and no empty reply)")
    return samples


def _read_json_records(path: Path) -> list:
    """A JSON list or JSONL file's records; a ConfigError naming the file (and line) when it is neither."""
    if not path.is_file():
        raise ConfigError(f"train.general_data: {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
        if text.lstrip().startswith("["):
            return json.loads(text)
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ConfigError(f"train.general_data: {path}: neither a JSON list nor JSONL (line {number}: "
                                      f"{err})") from None
        return records
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"train.general_data: {path}: not a JSON list or JSONL file ({err})") from None


def _conversation_messages(rec: dict) -> list[dict] | None:
    if "conversations" in rec:
        turns = [(_ROLES.get(str(t.get("from")).lower()), t.get("value")) for t in rec["conversations"]]
    else:
        turns = [(_ROLES.get(str(t.get("role")).lower()), t.get("content")) for t in rec.get("messages", [])]
    if any(role is None or not isinstance(content, str) for role, content in turns):
        return None
    system = [turns[0]] if turns and turns[0][0] == "system" else []
    rest = turns[len(system):]
    while rest and rest[0][0] != "user":
        rest = rest[1:]
    if not rest or any(role != ("user", "assistant")[i % 2] for i, (role, _) in enumerate(rest)):
        return None
    if not any(role == "assistant" for role, _ in rest):
        return None
    if any(role == "assistant" and not content.strip() for role, content in rest):
        return None
    return [{"role": r, "content": c, "loss": r == "assistant"} for r, c in system + rest]


def mix_general(agent_samples: list[dict], general_samples: list[dict], eta: float, seed: int = 0) -> list[dict]:
    """Mix agent data with general chat data, η = the agent share of the mixture by sample count (PAPER Eq. 6).

    Eq. 6 weighs the two losses η·L_agent + (1−η)·L_general with η = 0.2. Like AgentTuning (whose convention the
    paper adopts), we realise the weights by sampling rather than by scaling losses: with N agent samples we add
    round((1−η)/η·N) general samples, so agent data is a share η of the samples (4 general per agent sample at
    η = 0.2). The trainer averages loss over tokens, so the loss weights follow the token shares, which equal η
    only when both kinds have the same number of loss tokens per sample (noted as a deviation).
    General samples are drawn without replacement while there are enough; otherwise every one is used and the
    rest drawn with replacement (a warning says so). η = 1 or no general data → the agent samples unchanged.
    The result is shuffled with `seed`.
    """
    if not 0 < eta <= 1:
        raise ValueError(f"eta (agent share of the mixture) must be in (0, 1], got {eta}")
    if eta == 1 or not general_samples or not agent_samples:
        return list(agent_samples)
    rng = random.Random(seed)
    wanted = round((1 - eta) / eta * len(agent_samples))
    if wanted <= len(general_samples):
        general = rng.sample(general_samples, wanted)
    else:
        log.warning("mix_general: %d general samples wanted for eta=%s but only %d available; using all of them "
                    "and drawing %d more with replacement", wanted, eta, len(general_samples),
                    wanted - len(general_samples))
        general = list(general_samples) + rng.choices(general_samples, k=wanted - len(general_samples))
    mixed = list(agent_samples) + general
    rng.shuffle(mixed)
    return mixed
