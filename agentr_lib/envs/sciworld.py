"""ScienceWorld: elementary-science tasks in a simulated house (the AgentGym task Agent-R evaluated on).

Built on the PyPI `scienceworld` package (1.2.3), a Scala simulator that runs in its own JVM, driven over py4j.
What we take from AgentGym / Agent-R:
- task ids index AgentGym's flat `games` list: every task in the package's order except 5-1, 5-2, 9-1, 9-2, 9-3,
  10-1, 10-2, each with all its variations -> 4,639 games;
- reset = load the (task, variation) and take a "look around"; the first observation is the task description,
  a newline, and the room description;
- reward = the *cumulative* score, which AgentGym's client returns at every step and Agent-R uses as the node
  reward, rescaled from 0..100 to 0..1; a negative score (focusing on a wrong object) ends the episode with
  reward -1.0 (MCTS treats it as a failed terminal worth 0);
- the episode ends when the task is won, failed, or the move count exceeds 100 (the package's default limit,
  which AgentGym keeps). Moves are the simulator's: "wait" costs 10 and "wait1" 2, free actions cost none;
- a free-text action is mapped onto the valid actions as Agent-R's `findValidActionNew` does (see `map_action`).

Deviations, each for speed or determinism:
- The package's `env.step()` recomputes look, inventory and every valid action-object combination after each
  action (80-110 ms). We call the simulator directly (`server.step` + score/completed/moves, ~1-8 ms) and build
  the valid-action set only when the mapping needs it (~50-100 ms; not for free commands like "look around").
  Mappings are cached per state (task + actions so far), so a replay of a path already walked runs at raw speed.
  `test_sciworld` checks the fast path and the package's step agree on a gold path.
- Reset re-`load`s the task instead of calling the package's `reset()`: load takes ~50 ms, reset 0.4-0.5 s, and
  both give the same episode (AgentGym's server also resets with `load` alone). So there is no need to keep a
  loaded task around between resets of the same task.
- Action mapping: lower-cased and whitespace-collapsed before matching (the simulator's parser is
  case-insensitive anyway); ties in word overlap go to the shortest, then alphabetically first valid action
  (the original sorts by length only and then follows set order, which changes with PYTHONHASHSEED); the chosen
  action is not stripped of punctuation (the original strips [^A-Za-z0-9 ], which can break a valid action); the
  original's exclusion of the last 3 actions is not copied, because it never fires there (it compares actions with
  "(action, observation)" strings), so leaving it out keeps Agent-R's actual behaviour.
- Action mapping for a bare number (the answer to the simulator's "Ambiguous request: enter the number ..."
  prompt): passed through; the original maps it by word overlap, which can turn "2" into "look at flower pot 2".
- Demonstrations are the simulator's gold path with each gold action rewritten to the valid action with the same
  effect (see `demonstrate`): the raw gold wording often maps to a wrong object.
- JVM options (`JAVA_OPTIONS`): the heap is capped (-Xmx512m, serial GC; by default a JVM takes a quarter of RAM
  and grows to 2-3 GB), and identity hash codes are made constant (-XX:hashCode=2). The simulator keeps objects in
  hash sets without its own hashCode, so the order of objects in observations, valid actions and "which one do
  you mean" lists follows the JVM's identity hashes; HotSpot draws them from a per-thread random stream, so the
  same task loaded twice in one JVM could list objects in another order and a replay could diverge (measured: 5 of
  25 random 12-step episodes). With a constant hash the order is the insertion order: a pure function of the task.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import threading
import weakref
from dataclasses import dataclass
from functools import cache
from typing import Literal

from agentr_lib.envs.base import Demonstration, StepResult, TextEnv
from agentr_lib.envs.registry import EnvUnavailable, load_split_ids
from agentr_lib.trajectory import check_layout, react_instruction

# AgentGym leaves out the tasks whose episodes are too long for its step budget (grow plant/fruit, inclined
# planes, Mendelian genetics).
EXCLUDED_TASKS = frozenset({"5-1", "5-2", "9-1", "9-2", "9-3", "10-1", "10-2"})
NUM_GAMES = 4639
# The tasks of scienceworld 1.2.3 that AgentGym keeps, in the package's order: key -> (name, variations, train
# variations: the package's train split of a task is its first n variations). Read from the simulator once
# (test_bad_inputs checks them against it) so that params can be checked without starting a JVM (`split_sizes`).
CATALOGUE_VERSION = "1.2.3"
CATALOGUE = {
    "1-1": ("boil", 30, 14), "1-2": ("melt", 30, 14), "1-3": ("freeze", 30, 14),
    "1-4": ("change-the-state-of-matter-of", 30, 14), "2-1": ("use-thermometer", 540, 270),
    "2-2": ("measure-melting-point-known-substance", 436, 218),
    "2-3": ("measure-melting-point-unknown-substance", 300, 150), "3-1": ("power-component", 20, 10),
    "3-2": ("power-component-renewable-vs-nonrenewable-energy", 20, 10), "3-3": ("test-conductivity", 900, 450),
    "3-4": ("test-conductivity-of-unknown-substances", 600, 300), "4-1": ("find-living-thing", 300, 150),
    "4-2": ("find-non-living-thing", 300, 150), "4-3": ("find-plant", 300, 150), "4-4": ("find-animal", 300, 150),
    "6-1": ("chemistry-mix", 32, 16), "6-2": ("chemistry-mix-paint-secondary-color", 36, 18),
    "6-3": ("chemistry-mix-paint-tertiary-color", 36, 18), "7-1": ("lifespan-longest-lived", 125, 62),
    "7-2": ("lifespan-shortest-lived", 125, 62), "7-3": ("lifespan-longest-lived-then-shortest-lived", 125, 62),
    "8-1": ("identify-life-stages-1", 14, 6), "8-2": ("identify-life-stages-2", 10, 4),
}
STEP_LIMIT = 100  # moves, as ScienceWorldEnv(envStepLimit=100), AgentGym's setting
JAVA_OPTIONS = ("-Xmx512m", "-XX:+UseSerialGC", "-XX:+UnlockExperimentalVMOptions", "-XX:hashCode=2")
NO_MATCH = "No known action matches that input."
VALID_SETS_KEPT = 32

# Actions that pass through unmapped: these take no object and are always valid (they are in the valid set, so the
# original keeps them too); skipping the mapping also skips the valid-action query, the one expensive call. A bare
# number (the answer to the simulator's "Ambiguous request: enter the number ..." prompt) passes through as well.
FREE_COMMANDS = frozenset({"look around", "inventory", "task", "wait", "wait1"})
# Rooms, as in Agent-R's mapping: "open door to <room>" is always offered, focusing on a room is never offered.
ROOMS = ("hallway", "greenhouse", "kitchen", "bathroom", "outside", "workshop", "art studio", "foundry",
         "bedroom", "living room")
_FOCUS_WORDS = re.compile(r"\b(?:focus|on|in|to)\b")


class JavaNotFoundError(EnvUnavailable):  # a RuntimeError
    """ScienceWorld's simulator is a Java program; no Java runtime was found."""


def java_executable() -> str | None:
    """The java that py4j would start: $JAVA_HOME/bin/java when JAVA_HOME is set, else `java` on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        path = os.path.join(java_home, "bin", "java")
        return path if os.access(path, os.X_OK) else None
    return shutil.which("java")


def require_java() -> str:
    java = java_executable()
    if java is None:
        where = f"JAVA_HOME={os.environ['JAVA_HOME']} has no bin/java" if os.environ.get("JAVA_HOME") \
            else "java not found on PATH"
        raise JavaNotFoundError(
            f"ScienceWorld needs a Java runtime ({where}): run `make setup` or "
            "`apt-get install openjdk-17-jre-headless`")
    return java


def java_tool_options(user_options: str, ours=JAVA_OPTIONS) -> str:
    """The user's JAVA_TOOL_OPTIONS followed by ours, leaving out each of ours whose setting the user already
    decides (heap size, garbage collector: two collectors make the JVM refuse to start, hash-code mode)."""
    user_options = user_options.strip()
    decided = {
        "heap": "-Xmx" in user_options or "MaxHeapSize" in user_options,
        "gc": re.search(r"-XX:\+Use\w*GC\b", user_options) is not None,
        "hash": "hashCode=" in user_options,
    }

    def kind(option):
        return "heap" if option.startswith("-Xmx") else "gc" if option.endswith("GC") else \
            "hash" if "hashCode=" in option else None

    added = [o for o in ours if not decided.get(kind(o), False)]
    unlock = [o for o in added if o.startswith("-XX:+Unlock")]  # must precede the flags it unlocks, the user's too
    rest = [o for o in added if o not in unlock]
    return " ".join(" ".join([*unlock, user_options, *rest]).split())


_START_LOCK = threading.Lock()  # JAVA_TOOL_OPTIONS is process-wide; set it only while one JVM starts


@cache
def _simulator_class():
    from scienceworld import ScienceWorldEnv

    class Simulator(ScienceWorldEnv):
        def __del__(self):  # our finalizer closes it; the package's __del__ would close twice, or fail noisily
            pass            # on an instance whose JVM never started

    return Simulator


def start_simulator(java_options=JAVA_OPTIONS):
    """A fresh `scienceworld.ScienceWorldEnv` (one JVM, ~1.5-3 s to start) with our JVM options."""
    require_java()  # before py4j: its own failure is a FileNotFoundError deep in subprocess
    ScienceWorldEnv = _simulator_class()

    with _START_LOCK:
        before = os.environ.get("JAVA_TOOL_OPTIONS")
        os.environ["JAVA_TOOL_OPTIONS"] = java_tool_options(before or "", java_options)
        try:
            return ScienceWorldEnv("", envStepLimit=STEP_LIMIT)
        except Exception as error:  # py4j's own report is a bare ValueError from reading the JVM's port
            raise RuntimeError(f"ScienceWorld's JVM did not start (JAVA_TOOL_OPTIONS="
                               f"{os.environ['JAVA_TOOL_OPTIONS']!r}): {error!r}") from error
        finally:
            if before is None:
                del os.environ["JAVA_TOOL_OPTIONS"]
            else:
                os.environ["JAVA_TOOL_OPTIONS"] = before


def stop_simulator(simulator) -> None:
    """Shut the gateway down and make sure the JVM is gone (kill it if it lingers)."""
    process = simulator._gateway.java_process
    try:
        simulator.close()
    except Exception:  # a half-dead gateway must not stop us from ending the process
        pass
    try:
        process.wait(timeout=5)
    except Exception:
        process.kill()
        process.wait(timeout=5)


# ---- the task list (AgentGym's games) and the splits ----
@dataclass(frozen=True)
class Game:
    task_key: str  # "4-1"
    task_name: str  # "find-living-thing"
    variation: int


_CATALOGUE_LOCK = threading.Lock()
_catalogue: dict = {}  # filled once per process from the first simulator: the games and the package's splits


def _games(simulator) -> tuple[Game, ...]:
    with _CATALOGUE_LOCK:
        if "games" not in _catalogue:
            _catalogue["games"] = tuple(
                Game(key, name, v) for key, name in simulator.tasks.items() if key not in EXCLUDED_TASKS
                for v in range(simulator.get_max_variations(name)))
        return _catalogue["games"]


def _package_train_variations(simulator) -> dict[str, frozenset[int]]:
    """The package's own train variations of every task (its train/dev/test split is ~50/25/25 per task)."""
    with _CATALOGUE_LOCK:
        if "train" not in _catalogue:
            train = {}
            set_task_name = getattr(simulator.server, "taskStr_$eq")  # Scala's setter for the field `taskStr`
            for key, name in simulator.tasks.items():
                if key not in EXCLUDED_TASKS:
                    # The split depends only on the task name (the jar's `getSets`), so naming the task is enough;
                    # a load would cost ~0.1-0.5 s per task. The next reset loads a task properly.
                    set_task_name(name)
                    train[name] = frozenset(simulator.get_variations_train())
            _catalogue["train"] = train
        return _catalogue["train"]


def known_task_types() -> dict[str, str]:
    """AgentGym's 23 task types, key -> name ("7-1" -> "lifespan-longest-lived"): what `task_types` may name."""
    return {key: name for key, (name, _, _) in CATALOGUE.items()}


def unknown_task_types(types) -> list:
    """The entries of `types` that name no task type (neither key nor name)."""
    known = known_task_types()
    return [t for t in types if t not in known and t not in known.values()]


def split_sizes(types=None) -> dict[str, int] | None:
    """{"train": n, "test": n} as `SciWorldEnv(task_types=types).task_ids` would count them, from CATALOGUE (no
    JVM); None when the installed scienceworld is not the version CATALOGUE was read from."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        if version("scienceworld") != CATALOGUE_VERSION:
            return None
    except PackageNotFoundError:
        return None
    kept = None if types is None else {known_task_types().get(t, t) for t in types}
    games = [(name, v, v < train) for name, variations, train in CATALOGUE.values() for v in range(variations)]
    held_out = set(test_ids())
    chosen = [i for i, (name, _, _) in enumerate(games) if kept is None or name in kept]
    return {"train": sum(games[i][2] and i not in held_out for i in chosen),
            "test": sum(i in held_out for i in chosen)}


def test_ids() -> list[int]:
    """Agent-R's 200 SciWorld test ids (mcts_utils/sciworld/sciworld_test.json), sorted."""
    return load_split_ids("sciworld")["test"]


def _valid_actions(simulator) -> frozenset[str]:
    """Agent-R's candidate set: the simulator's valid action-object combinations, plus "open door to <room>",
    minus door actions other than opening, minus focusing on the agent, the air, a room, or an object whose words
    are not in the room description or the inventory (a wrong focus fails the task)."""
    # the JSON form is one py4j call; the list form costs a round trip per action (2,785 actions: 94 vs 169 ms)
    combos = json.loads(simulator.server.getValidActionObjectCombinationsJSON())["validActions"]
    candidates = {combo["action"] for combo in combos}
    candidates.update(f"open door to {room}" for room in ROOMS)
    candidates.difference_update(f"focus on {x}" for x in ("agent", "air", *ROOMS))
    visible = simulator.server.freeActionLook() + " " + simulator.server.freeActionInventory().lower()
    kept = set()
    for action in candidates:
        if "door" in action and "open" not in action:
            continue
        if action.startswith("focus on") and not all(w in visible for w in _FOCUS_WORDS.sub("", action).split()):
            continue
        kept.add(action)
    return frozenset(kept)


def _verb(action: str) -> str:
    """The template's leading words: "pick up", "look at", "focus on", ... or the single verb ("move", "open")."""
    words = action.split()
    return " ".join(words[:2]) if words and words[0] in ("look", "pick", "put", "focus", "go") else " ".join(words[:1])


def normalize_action(action: str) -> str:
    return " ".join(str(action).lower().split()).replace("green house", "greenhouse")


def choose_action(action: str, valid) -> str:
    """`action` itself when valid; else the valid action sharing the most words with it (ties: shortest, then
    alphabetical); else `action` unchanged, for the simulator to reject."""
    if action in valid:
        return action
    words = set(action.split())
    best, best_overlap = action, 0
    for candidate in sorted(valid, key=lambda a: (len(a), a)):
        overlap = len(words & set(candidate.split()))
        if overlap > best_overlap:
            best, best_overlap = candidate, overlap
    return best


INSTRUCTION = """You are an agent in ScienceWorld, a text simulation of a house with a kitchen, a workshop, a greenhouse and more rooms. Each turn you get an observation; reply with one action that brings you closer to finishing the task.
Reply with exactly two lines, a short thought and one action:
Thought: <your reasoning>
Action: <one action>

Actions (OBJ is an object you can see, LOC a room):
open OBJ / close OBJ: open or close a container or door
activate OBJ / deactivate OBJ: switch a device on or off
connect OBJ to OBJ / disconnect OBJ: wire electrical parts
use OBJ on OBJ: use a device or tool on something
look around: describe the room; look at OBJ; look in OBJ
read OBJ: read a book or note
pick up OBJ / put down OBJ: take or drop an item
move OBJ to OBJ: put an object into a container
pour OBJ into OBJ / dunk OBJ into OBJ: pour or dunk a liquid
mix OBJ: mix what a container holds
go to LOC: walk to a next room (open its door first)
eat OBJ / flush OBJ
focus on OBJ: mark the object the task is about (a wrong focus fails the task)
wait / wait1: let 10 / 1 time steps pass
task: repeat the task; inventory: list what you carry
Name objects as the observations do, with no extra words: your action is matched word by word to the closest valid action.
If the game asks which object you mean, answer with its number.

Example:
Thought: The thermometer is in the kitchen, whose door is closed, so I open it first.
Action: open door to kitchen"""
# AgentGym's ReAct layout (its baselines' prompts): each keyword alone on its line, its text on the next. Derived
# from the compact text, so both carry the same actions, rules and example.
REACT_INSTRUCTION = react_instruction(INSTRUCTION, "Reply with exactly two lines, a short thought and one action:",
                                      "Reply with a short thought and one action, each on the line after its keyword:")
INSTRUCTIONS = {"compact": INSTRUCTION, "react": REACT_INSTRUCTION}


class SciWorldEnv(TextEnv):
    """One ScienceWorld simulator (one JVM). Not thread-safe: give each thread its own env."""
    name = "sciworld"
    instruction = INSTRUCTION

    def __init__(self, step_limit: int = STEP_LIMIT, java_options=JAVA_OPTIONS, mapping_cache_size: int = 100_000,
                 task_types: list[str] | None = None, prompt: Literal["compact", "react"] = "compact"):
        """`task_types`: keep only these tasks ("7-1" or "lifespan-longest-lived") in both splits, e.g. the short
        lifespan tasks for a small model's study; None keeps all 23 of AgentGym's. Task ids stay AgentGym's.
        `prompt`: the reply layout the instruction asks for, "compact" (`Thought: ...` / `Action: ...`) or "react"
        (AgentGym's: each keyword on its own line, its text below)."""
        check_layout(prompt)  # before the JVM starts
        self.prompt, self.instruction = prompt, INSTRUCTIONS[prompt]
        self.step_limit = step_limit
        self._sim = start_simulator(java_options)
        # shuts the JVM down on close(), on garbage collection, and at interpreter exit, whichever comes first
        self._finalizer = weakref.finalize(self, stop_simulator, self._sim)
        self.games = _games(self._sim)
        self.task_types = None if task_types is None else self._known_types(task_types)
        self.task_id: int | None = None
        self.done = False
        # (state key, normalized action) -> mapped action. The simulator is deterministic, so a state is named by
        # its task and the actions taken; replaying a node's actions then needs no valid-action query.
        self._mapping: dict[tuple, str] = {}
        self._mapping_cache_size = mapping_cache_size
        self._valid_sets: dict = {}  # state key -> valid-action set, insertion-ordered for eviction
        self._state_key: tuple | int = ()


    # ---- tasks ----
    def game(self, task_id: int) -> Game:
        if not 0 <= task_id < len(self.games):  # AgentGym has no wrap-around: an out-of-range id is a bug
            raise ValueError(f"sciworld task ids are 0..{len(self.games) - 1}, got {task_id}")
        return self.games[task_id]

    def _known_types(self, task_types) -> frozenset[str]:
        known = {g.task_key: g.task_name for g in self.games}
        unknown = [t for t in task_types if t not in known and t not in known.values()]
        if unknown or not task_types:
            self.close()
            raise ValueError(f"unknown sciworld task_types {unknown or task_types}; choose from "
                             + ", ".join(f"{k} {n}" for k, n in known.items()))
        return frozenset(known.get(t, t) for t in task_types)  # as names

    def task_ids(self, split: str) -> list[int]:
        ids = self._split_ids(split)
        return ids if self.task_types is None else [i for i in ids if self.games[i].task_name in self.task_types]

    def _split_ids(self, split: str) -> list[int]:
        """"test": Agent-R's 200 test ids. "train": the ids whose variation is in the package's own train split
        of its task, minus the test ids (2,246 ids). Agent-R released no SciWorld train list (its MCTS walks a few
        variations of each task type and does not exclude test ids); AgentGym's 2,120 train ids are not
        available offline. Ids are in increasing order, i.e. grouped by task."""
        if split == "test":
            return test_ids()
        if split == "train":
            held_out = set(test_ids())
            train = _package_train_variations(self._sim)
            self.task_id = None  # the split query loaded other tasks
            return [i for i, g in enumerate(self.games) if g.variation in train[g.task_name] and i not in held_out]
        raise ValueError(f"unknown split {split!r}; sciworld has 'train' and 'test'")

    # ---- episode ----
    def reset(self, task_id: int) -> str:
        game = self.game(task_id)
        server = self._sim.server
        server.load(game.task_name, game.variation, "", False)  # ~50 ms; the package's reset() takes ~0.45 s
        self.task_id, self.done = task_id, False
        self._state_key = ("reset", task_id)
        room = server.step("look around")
        return server.getTaskDescription() + "\n" + room

    def step(self, action: str) -> StepResult:
        if self.task_id is None:
            raise RuntimeError("call reset(task_id) before step()")  # a caller bug, not a bad action
        return self._execute(self.map_action(action))

    def _execute(self, action: str) -> StepResult:
        """Run an already-mapped action on the simulator: the fast path (no look/inventory/valid-action query)."""
        server = self._sim.server
        observation = server.step(action)
        score = int(round(100 * server.getScore()))  # the package's rounding: an int in -100..100
        moves = server.getNumMoves()
        self._state_key = hash((self._state_key, action))
        failed = score < 0
        self.done = self.done or failed or bool(server.getCompleted()) or moves > self.step_limit
        reward = -1.0 if failed else score / 100
        return StepResult(observation, reward, self.done, {"action": action, "score": score, "moves": moves})

    def map_action(self, action: str) -> str:
        """Agent-R's free-text -> valid action mapping, for the current state (see `choose_action`)."""
        action = normalize_action(action)
        if action in FREE_COMMANDS or action.isdigit() or not action:
            return action
        mapped = self._mapping.get((self._state_key, action))
        if mapped is None:
            mapped = choose_action(action, self.valid_actions())
            self._remember(action, mapped)
        return mapped

    def valid_actions(self) -> frozenset[str]:
        """The mapping's candidate set in the current state (~50-100 ms to compute; the last few states' sets are
        kept, since MCTS maps several sampled actions from the same node one after the other)."""
        valid = self._valid_sets.get(self._state_key)
        if valid is None:
            valid = _valid_actions(self._sim)
            if len(self._valid_sets) >= VALID_SETS_KEPT:
                del self._valid_sets[next(iter(self._valid_sets))]  # the oldest
            self._valid_sets[self._state_key] = valid
        return valid

    def _remember(self, action: str, mapped: str) -> None:
        if len(self._mapping) >= self._mapping_cache_size:
            self._mapping.clear()  # crude, but a full cache is rare (one MCTS run touches far fewer states)
        self._mapping[(self._state_key, action)] = mapped

    # ---- scripted expert ----
    def gold_actions(self, task_id: int) -> list[str]:
        """The simulator's own gold action sequence for the task (a load with gold-path generation, ~1-4 s)."""
        game = self.game(task_id)
        self._sim.load(game.task_name, game.variation, "", generateGoldPath=True)
        self.task_id = None  # the loaded world is not a reset state: force a reset before stepping
        return list(self._sim.get_gold_action_sequence())

    def demonstrate(self, task_id: int) -> Demonstration:
        """The simulator's gold path, written the way our `step` executes it, with a short generic thought each.

        Gold actions often name objects unlike the valid-action list ("focus on wood in inventory" where the list
        has "focus on substance in inventory"), and word-overlap mapping may then pick a wrong object (here "focus on
        inventory": the task fails). So each gold action that is not a valid action is replaced by the valid action
        with the same effect (`_equivalent_valid`); the demonstration holds what `step` really ran, and replaying
        it gives the same episode. Stops when the episode ends. Most gold paths reach reward 1; the caller checks."""
        gold_path, actions, found = self.gold_actions(task_id), [], {}
        self.reset(task_id)
        for gold in gold_path:
            action = found[gold] = self._equivalent_valid(task_id, actions, gold, found.get(gold))
            self._remember(action, action)  # valid here, so `step` maps it to itself: replays skip the query
            result = self._execute(action)
            actions.append(action)
            if result.done:
                break
        thoughts = [f"The game asks which one I mean; I pick option {a}." if a.isdigit()
                    else f"Next I should {a}." for a in actions]
        return Demonstration(task_id, thoughts, actions)

    def _equivalent_valid(self, task_id: int, done_actions: list[str], gold: str, guess: str | None = None,
                          tries: int = 6) -> str:
        """A valid action that does what `gold` does in the current state (same observation and score), found by
        trying the valid actions of the same verb, `guess` (the last answer for this gold action) first, then most
        shared words first; each try costs a replay. Falls back to the mapping of `gold` (what `step` would do)."""
        action = re.sub(r"^examine ", "look at ", normalize_action(gold))  # the parser's alias; no template
        if action in FREE_COMMANDS or action.isdigit():
            return action
        valid = self.valid_actions()
        if action in valid:
            return action
        words = action.split()
        same_verb = sorted((v for v in valid if _verb(v) == _verb(action)),
                           key=lambda v: (v != guess, -len(set(words) & set(v.split())), len(v), v))
        if not same_verb:
            return choose_action(action, valid)
        target = self._outcome(action)
        for candidate in same_verb[:tries]:
            self._raw_replay(task_id, done_actions)
            if self._outcome(candidate) == target:
                self._raw_replay(task_id, done_actions)
                return candidate
        self._raw_replay(task_id, done_actions)
        return choose_action(action, valid)

    def _outcome(self, action: str) -> tuple[str, int]:
        result = self._execute(action)
        return result.observation, result.info["score"]

    def _raw_replay(self, task_id: int, actions: list[str]) -> None:
        """Reset and re-run already-mapped actions (no valid-action query): the cheapest way back to a state."""
        self.reset(task_id)
        for action in actions:
            self._execute(action)

    # ---- resources ----
    @property
    def java_pid(self) -> int:
        return self._sim._gateway.java_process.pid

    def close(self) -> None:
        self._finalizer()
