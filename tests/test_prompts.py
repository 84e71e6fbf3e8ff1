"""The `prompt` env kwarg: "compact" instructions (the default, unchanged) or AgentGym's two-line ReAct layout.

Fast, no model. SciWorld's instruction strings are module constants (no JVM); its env and demonstration need Java
and are skipped without it, as in test_sciworld.
"""
import hashlib
import re

import pytest
import yaml

from agentr_lib.config import ConfigError, deep_merge, load_config
from agentr_lib.data import demo_samples
from agentr_lib.envs import sciworld
from agentr_lib.envs.sciworld import SciWorldEnv, java_executable
from agentr_lib.envs.webshop import WebShopEnv
from agentr_lib.envs.webshop import env as webshop
from agentr_lib.trajectory import parse_action

textcraft = pytest.importorskip("agentr_lib.envs.textcraft")

MODULES = {"textcraft": textcraft, "sciworld": sciworld, "webshop": webshop}
# sha256 of the compact instructions as shipped: runs, caches and tests were made with these exact bytes
COMPACT_SHA256 = {
    "textcraft": "09764f47b93b6c7818794740f30bab07cab14fd538336cf602ba7bc9bddcae8f",
    "sciworld": "22a7ecbaed9084ba28187991a2a6c7b335c04863f8939638d6750d7cfd6a078c",
    "webshop": "ce073252abd873d0bc3ca88dbc47e8efcd2a35578071b48cd132f1569b0baab2",
}
LAYOUT_LINE = re.compile(r"^(?:Thought|Action):")
needs_java = pytest.mark.skipif(java_executable() is None,
                                reason="ScienceWorld needs a Java runtime (apt-get install openjdk-17-jre-headless)")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def folded(react: str) -> str:
    """A react text written back in the compact layout: "Thought:\\n<text>" -> "Thought: <text>"."""
    return re.sub(r"^(Thought|Action):\n", r"\1: ", react, flags=re.M)


def action_keywords(instruction: str) -> list[str]:
    """What the action list names: the head of each line that starts with a lower-case action ("- get N item",
    "open OBJ / close OBJ", "eat OBJ / flush OBJ")."""
    rules = instruction.split("\nExample")[0]  # an example's action line is no entry of the list
    return [line.split(":")[0] for line in rules.splitlines() if re.match(r"(- )?[a-z]", line)]


def example_actions(instruction: str) -> list[str]:
    """The actions of the instruction's example, each reply parsed as the actor parses one."""
    example = instruction.split("\nExample")[1]
    replies = re.split(r"\n(?=Thought:)", example)[1:]
    return [parse_action(reply.split("\n(observation")[0]) for reply in replies]


@pytest.fixture(scope="module")
def envs():
    """name -> {"compact": env, "react": env} for the envs that run here."""
    made = {"textcraft": {p: textcraft.TextCraftEnv(prompt=p) for p in ("compact", "react")}}
    world = WebShopEnv().world
    made["webshop"] = {p: WebShopEnv.from_world(world, prompt=p) for p in ("compact", "react")}
    yield made


@pytest.fixture(scope="module")
def sciworld_env():
    if java_executable() is None:
        pytest.skip("no Java runtime")
    env = SciWorldEnv(prompt="react")
    yield env
    env.close()


# ---- the instruction texts ----
@pytest.mark.parametrize("name", MODULES)
def test_compact_instruction_is_unchanged_and_the_default(name, envs):
    module = MODULES[name]
    assert sha(module.INSTRUCTION) == COMPACT_SHA256[name]
    assert module.INSTRUCTIONS["compact"] is module.INSTRUCTION
    if name in envs:
        assert envs[name]["compact"].instruction == module.INSTRUCTION
        default = textcraft.TextCraftEnv() if name == "textcraft" else WebShopEnv.from_world(envs[name]["react"].world)
        assert default.prompt == "compact" and default.instruction == module.INSTRUCTION


@pytest.mark.parametrize("name", MODULES)
def test_react_instruction_asks_for_and_shows_the_two_line_layout(name):
    compact, react = MODULES[name].INSTRUCTION, MODULES[name].REACT_INSTRUCTION
    assert "each on the line after its keyword" in react
    assert re.search(r"^Thought:\n<your reasoning>\nAction:\n<(one|the) action>$", react, flags=re.M)
    # no line left in the one-line layout: every keyword is alone on its line, with text on the next line
    keyword_lines = [i for i, line in enumerate(react.splitlines()) if LAYOUT_LINE.match(line)]
    assert keyword_lines and all(react.splitlines()[i] in ("Thought:", "Action:") for i in keyword_lines)
    assert all(react.splitlines()[i + 1].strip() for i in keyword_lines)
    assert example_actions(react) == example_actions(compact) != []


@pytest.mark.parametrize("name", MODULES)
def test_react_instruction_carries_everything_the_compact_one_does(name):
    compact, react = MODULES[name].INSTRUCTION, MODULES[name].REACT_INSTRUCTION
    keywords = action_keywords(compact)
    assert len(keywords) >= {"textcraft": 3, "webshop": 2, "sciworld": 15}[name]
    assert action_keywords(react) == keywords
    # back in the one-line layout, only the sentence that asks for the layout differs
    lines, back = compact.splitlines(), folded(react).splitlines()
    assert len(back) == len(lines)
    changed = [(a, b) for a, b in zip(lines, back) if a != b]
    assert len(changed) == 1 and changed[0][0].startswith("Reply with")
    # each one-line "Thought: ..." / "Action: ..." became two lines, and nothing else was added
    assert len(react.splitlines()) == len(lines) + sum(bool(LAYOUT_LINE.match(line)) for line in lines)


def test_webshop_react_instruction_still_says_the_page_size(envs):
    small = WebShopEnv.from_world(envs["webshop"]["react"].world, products_per_page=3, prompt="react")
    assert "3 per page" in small.instruction and small.instruction.startswith(webshop.REACT_INSTRUCTION[:200])
    assert envs["webshop"]["react"].instruction == webshop.REACT_INSTRUCTION


def test_textcraft_react_example_is_playable(envs):
    env = envs["textcraft"]["react"]
    task_id = next(i for i in range(env.num_tasks) if env.goal(i) == "crafting table")
    env.reset(task_id)
    assert [env.step(a).reward for a in example_actions(env.instruction)][-1] == 1.0


# ---- replies and demonstrations ----
def assert_demo_layout(env, task_id, layout):
    demo = env.demonstrate(task_id)
    (sample,) = demo_samples(env, demo, fits=lambda messages: True)
    replies = [m["content"] for m in sample["messages"][4:] if m["role"] == "assistant"]
    assert replies == [layout.format(thought=t, action=a) for t, a in zip(demo.thoughts, demo.actions)]
    assert [parse_action(r) for r in replies] == demo.actions


@pytest.mark.parametrize("name", ["textcraft", "webshop"])
def test_demonstrations_are_written_in_the_envs_layout(name, envs):
    for prompt, layout in (("compact", "Thought: {thought}\nAction: {action}"),
                           ("react", "Thought:\n{thought}\nAction:\n{action}")):
        env = envs[name][prompt]
        assert env.format_reply("t", "a") == layout.format(thought="t", action="a")
        assert_demo_layout(env, env.task_ids("train")[0], layout)


@needs_java
def test_sciworld_demonstration_is_written_in_the_envs_layout(sciworld_env):
    assert sciworld_env.instruction == sciworld.REACT_INSTRUCTION
    assert_demo_layout(sciworld_env, 3236, "Thought:\n{thought}\nAction:\n{action}")  # a 5-action gold path


# ---- bad values ----
@pytest.mark.parametrize("make", [lambda p: textcraft.TextCraftEnv(prompt=p), lambda p: SciWorldEnv(prompt=p),
                                  lambda p: WebShopEnv(prompt=p)], ids=list(MODULES))
@pytest.mark.parametrize("prompt", ["ReAct", "", None])
def test_a_bad_prompt_names_the_allowed_values(make, prompt):
    with pytest.raises(ValueError, match="prompt must be one of 'compact', 'react'"):
        make(prompt)  # SciWorld refuses before its JVM starts, so this runs without Java too


def test_params_take_the_prompt_and_refuse_a_bad_one(tmp_path):
    def params(value):
        path = tmp_path / f"{value}.yaml"
        path.write_text(yaml.safe_dump(deep_merge(yaml.safe_load(open("params/tiny.yaml")), {
            "results_dir": str(tmp_path / "results"), "envs": ["textcraft", "webshop"],
            "tasks": {name: {"env_kwargs": {"prompt": value}} for name in ("textcraft", "webshop")}})))
        return path

    cfg = load_config(params("react"))
    assert all(cfg.tasks_for(name).env_kwargs["prompt"] == "react" for name in cfg.envs)
    with pytest.raises(ConfigError) as err:
        load_config(params("two-line"))
    assert "tasks.textcraft.env_kwargs.prompt" in str(err.value) and "'compact', 'react'" in str(err.value)
