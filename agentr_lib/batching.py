"""Run many generation-bound jobs together so that one batched generate call serves all of them.

A *job* is a Python generator: whenever it needs the model it yields a `Request` and receives the list of
sampled replies; when it returns, its return value is the job's result. An MCTS tree, an evaluation episode
and a critique walk are all jobs. `run_jobs` keeps up to `in_flight` jobs alive, gathers every pending request,
and answers them with as few `policy.generate` calls as possible (one per distinct sampling setting).

A *policy* is anything with `generate(conversations, num_samples, temperature, max_new_tokens, seeds)
-> list[list[str]]` (the actor, or a scripted policy in tests).

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


@dataclass
class Request:
    conversation: list[dict]  # chat messages ({role, content[, loss]})
    num_samples: int = 1
    temperature: float = 1.0
    max_new_tokens: int | None = None  # None: the policy's default
    seed: int | None = None  # the stream its replies are drawn from (None: the policy's own RNG)


class Policy(Protocol):
    def generate(self, conversations: list[list[dict]], num_samples: int = 1, temperature: float = 1.0,
                 max_new_tokens: int | None = None, seeds: list[int | None] | None = None) -> list[list[str]]: ...


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
    """One generate call per distinct (num_samples, temperature, max_new_tokens); replies in request order."""
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(requests):
        groups.setdefault((r.num_samples, r.temperature, r.max_new_tokens), []).append(i)
    replies: list[list[str]] = [[] for _ in requests]
    for (n, temperature, max_new), idx in groups.items():
        out = policy.generate([requests[i].conversation for i in idx], num_samples=n, temperature=temperature,
                              max_new_tokens=max_new, seeds=[requests[i].seed for i in idx])
        for i, r in zip(idx, out):
            replies[i] = r
    return replies


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
