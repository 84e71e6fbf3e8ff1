"""WebShop's text environment (`web_agent_site/envs/web_agent_text_env.py` + its SimServer), in process.

State machine, page texts, clickables and reward follow the original as AgentGym serves it
(observation_mode="text", num_products=1000, one goal per id). Behaviour kept on purpose:
- actions: `search[keywords]` on any page, `click[value]` for a clickable of the current page; parsed with the
  original's regex `(.+)\\[(.+)\\]` (re.match, so text after the last "]" is ignored) and the argument lowercased;
  `click[search]` is refused;
- an invalid action (no match, unknown verb, a value not clickable here) changes nothing, gives reward 0 and
  returns the current page unchanged, exactly like the original env. AgentGym's "Invalid Action." prefix is added
  by its *client* when it cannot split a reply into thought and action; in this kit that parsing is the actor's job,
  so the env never adds it. `StepResult.info["valid"]` says whether the action did something;
- "< Prev" on an item page goes back to the results page and, like the original's search handler, forgets the
  chosen options; "Back to Search" clears the session; "Next >" is offered even past the last results page.

Deviations: the action is stripped of surrounding whitespace first (AgentGym's client strips it too); after
`click[buy now]` the episode is over: every further action returns the done page with reward 0 and done=True
(the original would go on serving searches and could pay a second purchase).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Literal

from thefuzz import fuzz

from agentr_lib.envs.base import Demonstration, StepResult, TextEnv
from agentr_lib.envs.webshop import pages
from agentr_lib.envs.webshop.catalogue import SEED
from agentr_lib.envs.webshop.reward import get_reward
from agentr_lib.envs.webshop.world import World, load_world
from agentr_lib.trajectory import check_layout, react_instruction

ACTION_PATTERN = re.compile(r"(.+)\[(.+)\]")

INSTRUCTION = """You are shopping in a web store for the product described in an instruction. Each observation is the text of the current page, its parts separated by [SEP]; the first page shows the instruction.
Actions:
- search[keywords]: search the store from any page; results come 10 per page, at most 50.
- click[value]: click something shown on the current page, written as the page shows it (upper or lower case alike): a button (back to search, next >, < prev, description, features, reviews, buy now), a product id from the results (e.g. click[B07X1PICMG]), or an option value on a product page (e.g. click[navy blue]).
On a product page, click each option the instruction asks for (color, size, flavor, ...) before you click buy now. Buying ends the task; your score says how well the product, its options and its price match the instruction. An action that is not possible on the page does nothing.
Reply with one thought and one action, each on one line:
Thought: <your reasoning>
Action: <the action>

Example:
Thought: I need a gluten free cake mix under 20 dollars, so I will search for it first.
Action: search[gluten free cake mix]"""
# AgentGym's ReAct layout (its baselines' prompts): each keyword alone on its line, its text on the next. Derived
# from the compact text, so both carry the same actions, rules and example.
REACT_INSTRUCTION = react_instruction(INSTRUCTION, "Reply with one thought and one action, each on one line:",
                                      "Reply with one thought and one action, each on the line after its keyword:")
INSTRUCTIONS = {"compact": INSTRUCTION, "react": REACT_INSTRUCTION}


@dataclass
class Session:
    """The whole mutable state of an episode (the original's user_sessions entry + current page)."""
    goal_id: int
    page: str = "search"  # search | results | item | description | features | reviews | done
    keywords: str | None = None
    page_num: int | None = None
    asin: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    asins: set[str] = field(default_factory=set)  # products opened since the last search page (as the original)
    reward: float = 0.0

    def copy(self) -> Session:
        return replace(self, options=dict(self.options), asins=set(self.asins))



def parse_action(action: str) -> tuple[str, str | None]:
    match = ACTION_PATTERN.match(action.strip())
    if match is None:
        return action.strip(), None
    name, arg = match.groups()
    return name, arg.lower()


class WebShopEnv(TextEnv):
    name = "webshop"

    def __init__(self, data_dir: str | None = None, num_products: int | None = 1000, seed: int = SEED,
                 products_per_page: int = pages.PRODUCTS_PER_PAGE, prompt: Literal["compact", "react"] = "compact"):
        """Generated catalogue by default; `data_dir` = a folder with the original WebShop files (original.py).
        `products_per_page`: the original shows 10 (~550 tokens a results page); a small model's short context
        may want fewer. `prompt`: the reply layout the instruction asks for, "compact" (`Thought: ...` /
        `Action: ...`) or "react" (AgentGym's: each keyword on its own line, its text below)."""
        check_layout(prompt)  # before the catalogue is built
        self._attach(load_world(None if data_dir is None else str(data_dir), num_products, seed), products_per_page,
                     prompt)

    @classmethod
    def from_world(cls, world: World, products_per_page: int = pages.PRODUCTS_PER_PAGE,
                   prompt: Literal["compact", "react"] = "compact") -> WebShopEnv:
        env = cls.__new__(cls)
        env._attach(world, products_per_page, prompt)
        return env

    def _attach(self, world: World, products_per_page: int, prompt: str) -> None:
        if products_per_page < 1:
            raise ValueError(f"products_per_page must be >= 1, got {products_per_page}")
        check_layout(prompt)
        self.world: World = world
        self.products_per_page = products_per_page
        self.prompt = prompt
        self.state: Session | None = None

    @property
    def instruction(self) -> str:
        """The prompt, saying how many products a results page shows."""
        return INSTRUCTIONS[self.prompt].replace(f"{pages.PRODUCTS_PER_PAGE} per page", f"{self.products_per_page} per page")


    # ------------------------------------------------------------------ tasks
    @property
    def num_tasks(self) -> int:
        return len(self.world.goals)

    def task_ids(self, split: str) -> list[int]:
        if split not in self.world.splits:
            raise ValueError(f"unknown split {split!r}; choose 'train' or 'test'")
        return list(self.world.splits[split])

    def goal(self, task_id: int | None = None) -> dict:
        """The goal record (asin, instruction_text, attributes, goal_options, price_upper, ...)."""
        return self.world.goals[self.state.goal_id if task_id is None else task_id]

    # ------------------------------------------------------------------ episode
    def reset(self, task_id: int) -> str:
        if not 0 <= int(task_id) < len(self.world.goals):
            raise IndexError(f"webshop task id {task_id} out of range 0..{len(self.world.goals) - 1}")
        self.state = Session(goal_id=int(task_id))
        return self.observation

    def step(self, action: str) -> StepResult:
        s = self._require_state()
        if s.page == "done":
            return StepResult(self.observation, 0.0, True, {"valid": False, "page": "done"})
        name, arg = parse_action(action if isinstance(action, str) else "")
        clickables = self._page()[1]
        valid, info = True, {}
        if name == "search" and arg:
            self._show_results(arg, 1)
        elif name == "click" and arg in clickables and arg != "search":
            info = self._click(arg, clickables[arg])
        else:
            valid = False
        s = self.state  # "back to search" starts a fresh session object
        done = s.page == "done"
        return StepResult(self.observation, s.reward if done else 0.0, done, {"valid": valid, "page": s.page, **info})

    @property
    def observation(self) -> str:
        return pages.join(self._page()[0])

    def available_actions(self) -> dict:
        """The original's get_available_actions(): {"has_search_bar": bool, "clickables": [...]}."""
        return {"has_search_bar": self._require_state().page == "search", "clickables": list(self._page()[1])}

    # ------------------------------------------------------------------ state copy
    def snapshot(self) -> Session:
        return self._require_state().copy()

    def restore(self, state: Session) -> None:
        self.state = state.copy()

    # ------------------------------------------------------------------ internals
    def _require_state(self) -> Session:
        if self.state is None:
            raise RuntimeError("call reset(task_id) first")
        return self.state

    def _page(self) -> tuple[list[str], dict]:
        s, instruction = self.state, self.goal()["instruction_text"]
        if s.page == "search":
            return pages.search_page(instruction)
        if s.page == "results":
            hits = self.world.engine.search(s.keywords)
            start = (s.page_num - 1) * self.products_per_page
            shown = [self.world.by_asin[a] for a in hits[max(start, 0):start + self.products_per_page]]
            return pages.results_page(instruction, shown, s.page_num, len(hits))
        if s.page == "item":
            return pages.item_page(instruction, self.world.by_asin[s.asin])
        if s.page in pages.SUB_PAGES:
            return pages.sub_page(instruction, self.world.by_asin[s.asin], s.page)
        return pages.done_page(s.asin, s.options, s.reward)

    def _show_results(self, keywords: str, page_num: int) -> None:
        # the original's search handler: a fresh results page forgets the product and options
        s = self.state
        s.page, s.keywords, s.page_num, s.asin, s.options = "results", keywords, page_num, None, {}

    def _click(self, arg: str, kind) -> dict:
        s = self.state
        if arg == "buy now":
            return self._buy()
        if arg == "back to search":
            self.state = Session(goal_id=s.goal_id)
        elif arg == "next >" and s.page == "results":
            self._show_results(s.keywords, s.page_num + 1)
        elif arg == "< prev" and s.page == "results":
            self._show_results(s.keywords, s.page_num - 1)
        elif arg == "< prev" and s.page in pages.SUB_PAGES:
            s.page = "item"
        elif arg == "< prev" and s.page == "item":
            self._show_results(s.keywords, s.page_num)
        elif arg in pages.SUB_PAGES:
            s.page = arg
        elif kind == pages.PRODUCT:
            s.page, s.asin = "item", arg.upper()
            s.asins.add(s.asin)
        else:  # ("option", group name)
            s.page, s.options[kind[1]] = "item", arg
        return {}

    def _buy(self) -> dict:
        s = self.state
        product, goal = self.world.by_asin[s.asin], self.goal()
        reward, info = get_reward(product, goal, self.world.prices[s.asin], s.options)
        s.page, s.reward = "done", reward
        return {**info, "asin": s.asin, "options": dict(s.options), "goal_asin": goal["asin"]}

    # ------------------------------------------------------------------ demonstrator
    def demonstrate(self, task_id: int) -> Demonstration:
        """A scripted shopper that knows the goal: search with the instruction's words, page to the goal product
        (or search its title when the instruction's words miss it; else take the top result), open it, pick each
        wanted option, buy. It runs on a private env, so this env's episode is untouched."""
        return _Demonstrator(WebShopEnv.from_world(self.world, self.products_per_page, self.prompt), task_id).run()


_OPENING = re.compile(r"^(i am|i'm|i would like|i want|i need|find me|get me|can you find me|please|looking for|"
                      r"to buy|some|an?|the)\s+")


SEARCH_WORDS = 6  # a shopper's query: the instruction's first words (the goal is on page 1 for ~96% of goals)


def search_keywords(instruction_text: str, max_words: int = SEARCH_WORDS) -> str:
    """What a shopper would type: the instruction's first words, without its price clause and opening words.

    Short on purpose: a demonstration teaches the actor to copy this query into its one-line action, and a small
    model's reply is capped at a few dozen tokens (the whole instruction would be cut off before the `]`)."""
    text = instruction_text.split(", and price lower than")[0].lower().strip()
    while (shorter := _OPENING.sub("", text, count=1)) != text:
        text = shorter
    return " ".join(re.sub(r"[\[\]]", " ", text).split()[:max_words])


class _Demonstrator:
    def __init__(self, env: WebShopEnv, task_id: int):
        self.env, self.world, self.goal = env, env.world, env.world.goals[task_id]
        self.task_id = task_id
        self.thoughts: list[str] = []
        self.actions: list[str] = []

    def act(self, thought: str, action: str) -> StepResult:
        self.thoughts.append(thought)
        self.actions.append(action)
        return self.env.step(action)

    def run(self) -> Demonstration:
        self.env.reset(self.task_id)
        target = self.goal["asin"]
        keywords = search_keywords(self.goal["instruction_text"])
        self.act("I will search for the main words of the instruction first.", f"search[{keywords}]")
        hits = self.world.engine.search(keywords)
        if target not in hits:
            title = re.sub(r"[\[\]]", " ", self.goal["name"]).lower().strip()
            self.act("None of these results is what I need. I will search for the full product name.",
                     f"search[{title}]")
            hits = self.world.engine.search(title)
        if not hits:
            return Demonstration(self.task_id, self.thoughts, self.actions)
        pick = target if target in hits else hits[0]
        for _ in range(hits.index(pick) // self.env.products_per_page):
            self.act("The product I want is not on this page, so I go to the next page.", "click[next >]")
        self.act("This result matches the instruction, so I open it.",
                 f"click[{pick}]")  # as the page shows it: a small model copies better than it converts
        for value in self._option_clicks(self.world.by_asin[pick]):
            self.act(f"The instruction asks for {value}, so I select it.", f"click[{value}]")
        self.act("The product, its options and its price match the instruction, so I buy it.", "click[buy now]")
        return Demonstration(self.task_id, self.thoughts, self.actions)

    def _option_clicks(self, product: dict) -> list[str]:
        """For each wanted option, the product's value that matches it (exactly, else the closest fuzzy match)."""
        values = [v for vs in product["options"].values() for v in vs]
        clicks = []
        for wanted in self.goal["goal_options"]:
            wanted = wanted.lower()
            if wanted in values:
                clicks.append(wanted)
                continue
            scored = sorted(((fuzz.token_set_ratio(v, wanted), i) for i, v in enumerate(values)), reverse=True)
            if scored and scored[0][0] > 85:
                clicks.append(values[scored[0][1]])
        return clicks
