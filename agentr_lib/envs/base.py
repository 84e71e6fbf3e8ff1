"""The one interface every environment implements (DESIGN.md, "Environments").

Conventions shared by all envs:
- Rewards live in [0, 1]. A *negative* reward marks a failure that ends the episode (SciWorld's -100 score);
  MCTS treats it as a terminal node worth 0 (PAPER.md step 1).
- A malformed or invalid action never raises: the env answers with its own "invalid action" observation,
  reward 0, and the episode goes on.
- Restoring a state: `reset(task_id)` + replaying the actions always works; an env whose state is cheap to copy
  overrides `snapshot`/`restore`, and MCTS uses that instead of replay.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from agentr_lib.trajectory import format_reply


@dataclass
class StepResult:
    observation: str
    reward: float
    done: bool
    info: dict = field(default_factory=dict)

    def __iter__(self):  # allows `obs, reward, done, info = env.step(a)`
        return iter((self.observation, self.reward, self.done, self.info))


@dataclass
class Demonstration:
    """A scripted expert episode: what the demonstrator thought and did, step by step."""
    task_id: int
    thoughts: list[str]
    actions: list[str]


class TextEnv(ABC):
    name: str = "base"
    instruction: str = ""  # the user prompt explaining the task and the `Thought: ...\nAction: ...` grammar

    @abstractmethod
    def task_ids(self, split: str) -> list[int]:
        """Task ids of a split: "train" (the MCTS pool) or "test" (held out)."""

    @abstractmethod
    def reset(self, task_id: int) -> str:
        """Start task `task_id`; return the first observation (task description included)."""

    @abstractmethod
    def step(self, action: str) -> StepResult:
        """Apply one action (any string); never raises on bad input."""

    def snapshot(self) -> Any | None:
        """A cheap copy of the current state, or None when the env can only replay."""
        return None

    def restore(self, state: Any) -> None:
        """Return to `state`. Must copy it, never alias it: MCTS restores one snapshot once per candidate."""
        raise NotImplementedError(f"{self.name} has no state copy; use replay()")

    def replay(self, task_id: int, actions: list[str]) -> str:
        """Reset and re-apply `actions`; return the last observation."""
        observation = self.reset(task_id)
        for action in actions:
            observation = self.step(action).observation
        return observation

    prompt = "compact"  # the reply layout the instruction asks for (trajectory.REPLY_LAYOUTS)

    def format_reply(self, thought: str, action: str) -> str:
        """A reply in the layout the instruction asks for (how demonstrations are written)."""
        return format_reply(thought, action, self.prompt)

    def demonstrate(self, task_id: int) -> Demonstration:
        """A scripted expert episode for `task_id` (used by warm-start and tests)."""
        raise NotImplementedError(f"{self.name} has no demonstrator")

    def close(self) -> None:  # noqa: B027  (optional hook: most envs hold nothing to release)
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
