"""The three environments behind one interface (see base.py); build one with `make_env(name, **kwargs)`."""
from agentr_lib.envs.base import Demonstration, StepResult, TextEnv
from agentr_lib.envs.registry import ENV_NAMES, EnvUnavailable, load_split_ids, make_env, select_tasks

__all__ = [
    "Demonstration", "StepResult", "TextEnv",
    "ENV_NAMES", "EnvUnavailable", "load_split_ids", "make_env", "select_tasks",
]
