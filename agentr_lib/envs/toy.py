"""Toy: a test env in which a model that writes random text sometimes succeeds and sometimes fails.

On the real envs a tiny random model never earns a reward, so every search tree is worth 0, revision finds no
good/bad pair and training sees no sample: the pipeline tests would exercise nothing past MCTS. Here the outcome of
an action is a pure function of (task id, step number, action text), through a stable hash (sha256, never Python's
salted `hash()`), so any text is an action and trees over random text get leaves of reward 1 and 0:
- about 1/3 of actions succeed: reward 1, done;
- about 1/3 fail: reward 0, done (a plain failure, not a negative reward: the episode simply ends unrewarded);
- the rest, and every empty action, change nothing ("Nothing happens."), reward 0, and the episode goes on;
- after `max_steps` actions without an ending, the episode ends with reward 0.
Actions are compared case- and whitespace-insensitively (" Open  Box" is "open box"), cut to 512 characters.
Tasks: ids 0..59, train 0..39, test 40..59 (the env's own lists; the paper's split file has no toy entry).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from agentr_lib.envs.base import Demonstration, StepResult, TextEnv

NUM_TASKS = 60
NUM_TRAIN = 40  # ids below are train, the rest test
MAX_ACTION_CHARS = 512  # like TextCraft: a runaway reply is not hashed whole
DEMO_TRIES = 1000  # "action 0", "action 1", ...: one in three wins, so 1000 misses is a broken hash, not bad luck

SUCCESS, FAILURE, NOTHING = "success", "failure", "nothing"
OBSERVATIONS = {SUCCESS: "The box opens. Task solved.", FAILURE: "The box locks for good. Task failed.",
                NOTHING: "Nothing happens."}
OUT_OF_STEPS = "Nothing happens. You are out of tries."
OVER = "The episode is over."

INSTRUCTION = """Guess the magic phrase of a box: a phrase opens it, locks it or does nothing. You have {max_steps} \
tries. Reply in two lines:
Thought: <your reasoning>
Action: <a phrase>"""


def normalize(action: str) -> str:
    """The text that decides an action's outcome: cut, lower-cased, whitespace collapsed."""
    return " ".join(str(action)[:MAX_ACTION_CHARS].lower().split())


def outcome(task_id: int, step: int, action: str) -> str:
    """SUCCESS, FAILURE or NOTHING for the `step`-th action (1-based) of task `task_id`."""
    text = normalize(action)
    if not text:
        return NOTHING  # an empty or unparsable reply: no guess made
    digest = hashlib.sha256(f"{task_id}|{step}|{text}".encode()).digest()
    return (SUCCESS, FAILURE, NOTHING)[int.from_bytes(digest[:8], "big") % 3]


@dataclass(frozen=True)
class ToyState:
    task_id: int
    steps: int
    done: bool


class ToyEnv(TextEnv):
    name = "toy"
    instruction = INSTRUCTION.format(max_steps=3)  # the default's; an instance states its own max_steps
    num_tasks = NUM_TASKS

    def __init__(self, max_steps: int = 3):
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.max_steps = max_steps
        self.instruction = INSTRUCTION.format(max_steps=max_steps)  # per instance: it states the env's own limit
        self.task_id: int | None = None
        self.steps = 0
        self.done = False

    # ---- tasks ----
    def task_ids(self, split: str) -> list[int]:
        """"train": ids 0..39 (the MCTS and demonstration pool); "test": ids 40..59 (held out)."""
        if split == "train":
            return list(range(NUM_TRAIN))
        if split == "test":
            return list(range(NUM_TRAIN, NUM_TASKS))
        raise ValueError(f"unknown split {split!r}; toy has ['test', 'train']")

    # ---- episode ----
    def reset(self, task_id: int) -> str:
        if not 0 <= task_id < NUM_TASKS:
            raise ValueError(f"toy task ids are 0..{NUM_TASKS - 1}, got {task_id}")
        self.task_id, self.steps, self.done = task_id, 0, False
        return f"Box {task_id} is closed. Guess its magic phrase."

    def step(self, action: str) -> StepResult:
        if self.task_id is None:
            raise RuntimeError("call reset(task_id) before step()")  # a caller bug, not a bad action
        if self.done:
            return StepResult(OVER, 0.0, True, {"outcome": None})  # the reward is paid once, as in TextCraft
        self.steps += 1
        result = outcome(self.task_id, self.steps, action)
        self.done = result != NOTHING or self.steps >= self.max_steps
        observation = OUT_OF_STEPS if result == NOTHING and self.done else OBSERVATIONS[result]
        return StepResult(observation, float(result == SUCCESS), self.done, {"outcome": result})

    def snapshot(self) -> ToyState:
        return ToyState(self.task_id, self.steps, self.done)

    def restore(self, state: ToyState) -> None:
        self.task_id, self.steps, self.done = state.task_id, state.steps, state.done  # immutable: nothing aliased

    # ---- scripted expert ----
    def demonstrate(self, task_id: int) -> Demonstration:
        """One winning action: the first of "action 0", "action 1", ... that opens the box at step 1. The thought
        comes without the "Thought: " prefix; a reply is `format_reply(thought, action)`."""
        for i in range(DEMO_TRIES):
            action = f"action {i}"
            if outcome(task_id, 1, action) == SUCCESS:
                return Demonstration(task_id, [f"I guess the phrase {action!r}."], [action])
        raise RuntimeError(f"toy task {task_id}: no winning action among {DEMO_TRIES}")
