"""The schema every stage shares: steps, episodes and chat messages with loss flags.

A conversation always has the paper's layout (PAPER.md step 4):
    system "You are a helpful assistant." / user: env instruction / assistant "Ok." / user: first observation /
    then one (assistant response, user observation) pair per step.
Messages are plain dicts `{"role", "content", "loss"}`; `loss` says whether training puts loss on that turn.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

SYSTEM_PROMPT = "You are a helpful assistant."
# How a reply is laid out: "compact" (the kit's default) or "react" (AgentGym's: each keyword alone on its line, its
# text on the next). An env's instruction asks for one (env kwarg `prompt`); parse_action reads both.
REPLY_LAYOUTS = {"compact": "Thought: {thought}\nAction: {action}", "react": "Thought:\n{thought}\nAction:\n{action}"}


def format_reply(thought: str, action: str, layout: str = "compact") -> str:
    return REPLY_LAYOUTS[layout].format(thought=thought, action=action)


def react_instruction(compact: str, ask: str, react_ask: str) -> str:
    """An env's compact instruction in the react layout: the sentence `ask` (which asks for the compact layout)
    becomes `react_ask`, and every line starting "Thought: "/"Action: " (the template, the example) puts its text on
    the next line; so both carry the same actions, rules and example."""
    if ask not in compact:
        raise ValueError(f"the instruction has no sentence {ask!r} to rewrite")
    return re.sub(r"^(Thought|Action): ", r"\1:\n", compact.replace(ask, react_ask), flags=re.M)


def check_layout(layout: str) -> None:
    if layout not in REPLY_LAYOUTS:
        raise ValueError(f"prompt must be one of {', '.join(map(repr, REPLY_LAYOUTS))}; got {layout!r}")
ACK = "Ok."
PREAMBLE_MESSAGES = 4  # system, instruction, "Ok.", first observation


@dataclass
class Step:
    response: str  # the agent's full reply (thought + action)
    action: str  # the parsed action that went to the env
    observation: str
    reward: float = 0.0
    done: bool = False


@dataclass
class Episode:
    env: str
    task_id: int
    first_observation: str
    steps: list[Step] = field(default_factory=list)
    score: float = 0.0  # final score in [0, 1] (failure = 0)
    success: bool = False

    @property
    def actions(self) -> list[str]:
        return [s.action for s in self.steps]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["turns"] = len(self.steps)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Episode:
        d = {k: v for k, v in d.items() if k != "turns"}
        d["steps"] = [Step(**s) for s in d["steps"]]
        return cls(**d)


def message(role: str, content: str, loss: bool = False) -> dict:
    return {"role": role, "content": content, "loss": loss}


def preamble(instruction: str, first_observation: str) -> list[dict]:
    """The four opening messages; none of them is trained on."""
    return [
        message("system", SYSTEM_PROMPT),
        message("user", instruction),
        message("assistant", ACK),
        message("user", first_observation),
    ]


def step_messages(steps: list[Step], loss: bool) -> list[dict]:
    out = []
    for s in steps:
        out.append(message("assistant", s.response, loss))
        out.append(message("user", s.observation))
    return out


def conversation(instruction: str, first_observation: str, steps: list[Step], loss: bool = False) -> list[dict]:
    return preamble(instruction, first_observation) + step_messages(steps, loss)


def trim_context(messages: list[dict], fits) -> list[dict]:
    """Drop the oldest (assistant, observation) pair after the first action until `fits(messages)` holds.

    The preamble and the first action/observation pair always stay. The official code deletes fastchat's
    messages[4:6] (the first observation and the *next* action), which leaves two assistant turns without
    their observations in between; we drop whole (action, observation) pairs instead so the roles keep
    alternating (deviation, README). `fits` is a predicate, e.g. a token-count check.
    """
    messages = list(messages)
    keep = PREAMBLE_MESSAGES + 2
    while not fits(messages) and len(messages) > keep + 1:
        del messages[keep:keep + 2]
    return messages


def covering_windows(messages: list[dict], fits) -> list[list[dict]]:
    """Trimmed conversations (`trim_context`) that together hold every trained (loss-flagged) assistant turn of
    `messages` once or more, each ending at such a turn, in order. Walking back from the last one, each window ends
    at the latest trained turn no window holds yet, so a long episode is cut into few windows (a revision sample,
    whose untrained bad prefix comes first, usually into one that drops the prefix's oldest steps). A window that
    cannot be trimmed enough (the preamble and first pair alone are too long) is kept as it is."""
    index = {id(m): i for i, m in enumerate(messages)}
    windows, held = [], set()
    for end in reversed(range(PREAMBLE_MESSAGES, len(messages))):
        if messages[end]["role"] != "assistant" or not messages[end].get("loss") or end in held:
            continue
        window = trim_context(messages[:end + 1], fits)
        held.update(index[id(m)] for m in window)
        windows.append(window)
    return windows[::-1]


def parse_action(response: str) -> str:
    """The action in a reply: the text after the last "Action:", first non-empty line, stripped. So both layouts
    read the same: `Action: <action>` and AgentGym's `Action:\\n<action>` (the action on the next line).

    Lenient like the official code (text after the last "Action:"; "Action 1:" counts too); we keep only its first
    line so that a model that rambles on after its action still acts. A reply without "Action:" falls back to its
    last non-empty line (official behaviour), which the env then judges (usually as invalid).
    """
    text = response.replace("Action 1:", "Action:")
    if "Action:" in text:
        text = text.rsplit("Action:", 1)[1]
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        return lines[0] if lines else ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""
