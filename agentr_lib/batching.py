"""Run many generation-bound jobs together so that one batched generate call serves all of them.

A *job* is a Python generator: whenever it needs the model it yields a `Request` and receives the list of
sampled replies; when it returns, its return value is the job's result. An MCTS tree, an evaluation episode
and a critique walk are all jobs. `run_jobs` keeps up to `in_flight` jobs alive, gathers every pending request,
and answers them with as few `policy.generate` calls as possible (one per distinct sampling setting and stop rule).

A *policy* is anything with `generate(conversations, num_samples, temperature, max_new_tokens, seeds, stop)
-> list[list[str]]` (the actor, or a scripted policy in tests). A request with `choices` asks for the most likely
of a few fixed continuations instead of a sample; only policies that get such requests need `choose` (`ChoosingPolicy`).

Seeds belong to requests, not to processes: a request's `seed` names the random stream its replies are drawn from
(derived from what the request belongs to: run seed, env, task, node; `derive_seed`), so a reply depends on its seed
alone, not on which other requests share its batch, the batch size, or whether the run was resumed.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from tqdm.auto import tqdm


def derive_seed(*parts) -> int:
    """A stable 64-bit seed from any printable parts (Python's hash() is salted per process, so not that)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


STOP_RULES = ("action", "none")  # where a reply ends: decoding.stop_rule


@dataclass
class Request:
    """What a job asks of the policy: `num_samples` replies to `conversation`, or, with `choices`, the one choice
    the policy finds most likely after `reply_prefix` (the job then receives `[chosen]`; the sampling fields are
    not read).

    `stop`: "action", an agent reply, ended after its first complete action and cut there; "none", the whole reply
    until end of turn or the token cap, only stripped (the verifier's, which quotes the log's "Action:" lines).
    """
    conversation: list[dict]  # chat messages ({role, content[, loss]})
    num_samples: int = 1
    temperature: float = 1.0
    max_new_tokens: int | None = None  # None: the policy's default
    seed: int | None = None  # the stream its replies are drawn from (None: the policy's own RNG)
    stop: str = "action"  # one of STOP_RULES
    choices: tuple[str, ...] | None = None  # continuations to choose from (`ChoosingPolicy.choose`), not sample
    reply_prefix: str = ""  # with `choices`: the assistant reply written so far, which each choice continues

    def __post_init__(self):
        check_stop(self.stop)
        if self.choices is not None:
            self.choices = tuple(self.choices)  # hashable: `_answer` groups choice requests by their choices
            if not self.choices or not all(isinstance(c, str) and c for c in self.choices):
                raise ValueError(f"choices must be non-empty strings, got {self.choices!r}")
        elif self.reply_prefix:
            raise ValueError("reply_prefix is read only with choices: a sampled reply starts afresh")


def check_stop(stop: str) -> None:
    if stop not in STOP_RULES:
        raise ValueError(f"unknown stop rule {stop!r}: expected one of {STOP_RULES}")


class Policy(Protocol):
    """What `run_jobs` calls. A policy that gets requests with `choices` (the verifier, when it forces a verdict)
    must also have `choose` (`ChoosingPolicy`); the policies of other jobs need not."""

    def generate(self, conversations: list[list[dict]], num_samples: int = 1, temperature: float = 1.0,
                 max_new_tokens: int | None = None, seeds: list[int | None] | None = None,
                 stop: str = "action") -> list[list[str]]: ...


class ChoosingPolicy(Policy, Protocol):
    def choose(self, conversations: list[list[dict]], reply_prefixes: list[str],
               choices: tuple[str, ...]) -> list[str]:
        """Per conversation, the member of `choices` most likely to follow its reply prefix (deterministic)."""
        ...


Job = Generator[Request, list[str], Any]


def run_jobs(jobs: Iterable[Job], policy: Policy, in_flight: int = 8,
             on_result: Callable[[Any], None] | None = None, progress: str | None = None,
             total: int | None = None) -> list[Any]:
    """Advance `jobs` together; return their results in completion order (also passed to `on_result`)."""
    queue: Iterator[Job] = iter(jobs)
    active: list[tuple[Job, Request]] = []
    results: list[Any] = []
    bar = tqdm(total=total, desc=progress, disable=progress is None)

    def finish(value):
        results.append(value)
        bar.update(1)
        if on_result is not None:
            on_result(value)

    def start_more():
        while len(active) < in_flight:
            job = next(queue, None)
            if job is None:
                return
            try:
                active.append((job, next(job)))
            except StopIteration as stop:
                finish(stop.value)

    start_more()
    while active:
        replies = _answer([req for _, req in active], policy)
        still_active = []
        for (job, _), reply in zip(active, replies):
            try:
                still_active.append((job, job.send(reply)))
            except StopIteration as stop:
                finish(stop.value)
        active[:] = still_active
        start_more()
    bar.close()
    return results


def _answer(requests: list[Request], policy: Policy) -> list[list[str]]:
    """One generate call per distinct (num_samples, temperature, max_new_tokens, stop), one choose call per distinct
    choices; replies in request order."""
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(requests):
        key = ("choose", r.choices) if r.choices is not None else \
            ("generate", r.num_samples, r.temperature, r.max_new_tokens, r.stop)
        groups.setdefault(key, []).append(i)
    replies: list[list[str]] = [[] for _ in requests]
    for key, idx in groups.items():
        convs = [requests[i].conversation for i in idx]
        if key[0] == "choose":
            out = [[c] for c in _choose(policy, convs, [requests[i].reply_prefix for i in idx], key[1])]
        else:
            _, n, temperature, max_new, stop = key
            out = policy.generate(convs, num_samples=n, temperature=temperature, max_new_tokens=max_new,
                                  seeds=[requests[i].seed for i in idx], stop=stop)
        for i, r in zip(idx, out):
            replies[i] = r
    return replies


def _choose(policy: Policy, conversations: list[list[dict]], prefixes: list[str],
            choices: tuple[str, ...]) -> list[str]:
    """`policy.choose`, checked: one of `choices` per conversation."""
    choose = getattr(policy, "choose", None)
    if choose is None:  # optional in the protocol: name the gap rather than fail with an AttributeError deep in a job
        raise TypeError(f"{type(policy).__name__} got a request with choices but has no `choose` method")
    chosen = choose(conversations, prefixes, choices)
    if len(chosen) != len(conversations) or any(c not in choices for c in chosen):
        raise ValueError(f"{type(policy).__name__}.choose must return one of {choices} per conversation, "
                         f"got {chosen!r}")
    return list(chosen)


class EnvPool:
    """Environments for jobs in flight: a job borrows one env for its lifetime; envs are reused, never shared.

    SciWorld envs are JVMs (seconds to start), so a pool of `in_flight` envs serves any number of jobs:
        with EnvPool(lambda: make_env("textcraft")) as pool:
            run_jobs((pool.borrowing(episode_job, task) for task in tasks), policy, in_flight=8)
    """

    def __init__(self, make_env: Callable[[], Any]):
        self.make_env = make_env
        self.free: list[Any] = []
        self.envs: list[Any] = []

    def borrowing(self, job_fn: Callable[..., Job], *args, **kwargs) -> Job:
        env = self.free.pop() if self.free else self._new_env()
        try:
            return (yield from job_fn(env, *args, **kwargs))
        finally:
            self.free.append(env)

    def _new_env(self):
        env = self.make_env()
        self.envs.append(env)
        return env

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs.clear()
        self.free.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@contextmanager
def env_pools(names: Iterable[str], make_env: Callable[[str], Any]) -> Iterator[dict[str, EnvPool]]:
    """One EnvPool per env name (jobs of several envs in flight together); all closed at the end."""
    with ExitStack() as stack:
        yield {name: stack.enter_context(EnvPool(lambda n=name: make_env(n))) for name in names}
