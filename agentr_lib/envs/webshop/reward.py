"""WebShop's purchase reward (`web_agent_site/engine/goal.py::get_reward`), re-implemented.

    reward = r_type * (matched attributes + matched options + [price <= cap]) / (n attributes + n options + 1)

- attribute matched: `thefuzz` token_set_ratio > 85 with one of the product's attributes, or a substring of the
  lowercased title, bullet points or description;
- option matched: token_set_ratio > 85 with one of the chosen option values, both sides first reduced to the first
  colour word they contain (`normalize_color`, so "navy blue" and "light blue" both read "blue", as in WebShop);
- r_type = 1, or 0.5 unless (same query, or >= 2 shared category levels, or title_score > 0.2); then 0.1 if
  title_score < 0.1 and 0 if title_score == 0. title_score = share of the goal name's nouns found among the bought
  product's nouns (0.2 when the goal name has none).

Deviation: the original finds nouns with spaCy's part-of-speech tagger (NOUN/PROPN; en_core_web_sm, AgentGym
en_core_web_lg), whose models are not on PyPI. We keep every content word instead: lowercased alphabetic tokens of
two or more letters that are not English function words (a fixed list below). On shop titles that is close to
what the tagger keeps (title case makes spaCy tag most words PROPN), and it is deterministic.
"""
from __future__ import annotations

import re
from functools import lru_cache

from thefuzz import fuzz

MATCH_THRESHOLD = 85

# WebShop's colour words (engine/normalize.py), in its order: the first one contained in a value wins
COLOR_SET = (
    "alabaster apricot aqua ash asphalt azure banana beige black blue blush bordeaux bronze brown burgundy camel "
    "camo caramel champagne charcoal cheetah chestnut chocolate christmas coffee cognac copper coral cranberry "
    "cream crystal dark denim eggplant elephant espresso fuchsia gold granite grape graphite grass gray green grey "
    "heather indigo ivory ivy khaki lavender lemon leopard light lilac lime magenta maroon mauve merlot midnight "
    "mint mocha multicolor mushroom mustard natural navy nude olive orange peach pewter pink plum purple rainbow "
    "red rose royal rust sand sapphire seashell silver skull slate steel stone stonewash sunflower tan taupe teal "
    "tiger turquoise violet walnut wheat white wine yellow").split()

FUNCTION_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
him his how i if in into is it its itself just me more most my no nor not now of off on once only or other our
ours out over own same she should so some such than that the their theirs them then there these they this those
through to too under until up very was we were what when where which while who whom why will with would you your
yours per plus via vs
""".split())
_WORD = re.compile(r"[a-z]+")


def normalize_color(value: str) -> str:
    for color in COLOR_SET:
        if color in value:
            return color
    return value


@lru_cache(maxsize=65536)
def title_nouns(name: str) -> tuple[str, ...]:
    """The words of a product name that stand in for spaCy's nouns (see the module docstring). A tuple, not a
    set: the original divides by the length of the goal's noun *list*, repeats included."""
    return tuple(w for w in _WORD.findall(name.lower()) if len(w) > 1 and w not in FUNCTION_WORDS)


def type_reward(purchased: dict, goal: dict) -> dict:
    query_match = purchased["query"] == goal["query"]
    bought_levels = {x.strip() for x in purchased["product_category"].split("›")}
    goal_levels = {x.strip() for x in goal["product_category"].split("›")}
    category_match = len(bought_levels & goal_levels) >= 2
    bought_nouns, goal_nouns = title_nouns(purchased["name"]), title_nouns(goal["name"])
    if goal_nouns:
        title_score = len(set(bought_nouns) & set(goal_nouns)) / len(goal_nouns)
    else:
        title_score = 0.2
    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return dict(r_type=r_type, query_match=query_match, category_match=category_match, title_score=title_score)


def attribute_reward(purchased: dict, goal_attributes: list[str]) -> tuple[float, int]:
    text_fields = (purchased["Title"].lower(), " ".join(purchased["BulletPoints"]).lower(),
                   purchased["Description"].lower())
    matches = 0
    for g_attr in goal_attributes:
        if any(fuzz.token_set_ratio(p_attr, g_attr) > MATCH_THRESHOLD for p_attr in purchased["Attributes"]):
            matches += 1
        elif any(g_attr in field for field in text_fields):
            matches += 1
    return matches / len(goal_attributes), matches


def option_reward(chosen_options: list[str], goal_options: list[str]) -> tuple[float | None, int]:
    chosen = [normalize_color(o) for o in chosen_options]
    wanted = [normalize_color(o) for o in goal_options]
    matches = sum(any(fuzz.token_set_ratio(c, g) > MATCH_THRESHOLD for c in chosen) for g in wanted)
    return (matches / len(wanted) if wanted else None), matches


def get_reward(purchased: dict, goal: dict, price: float, options: dict[str, str]) -> tuple[float, dict]:
    """(reward in [0, 1], the original's verbose info: r_type, r_att, r_option, r_price, weights, matches)."""
    goal_options = goal["goal_options"]
    if isinstance(goal_options, dict):  # the original's synthetic goals store {name: value}
        goal_options = list(goal_options.values())
    type_info = type_reward(purchased, goal)
    r_price = price <= goal["price_upper"] if goal["price_upper"] > 0 else None
    r_att, n_att = attribute_reward(purchased, goal["attributes"])
    r_option, n_opt = option_reward(list(options.values()), goal_options)
    denominator = len(goal["attributes"]) + len(goal_options) + 1
    reward = (n_att + n_opt + bool(r_price)) / denominator * type_info["r_type"]
    info = {"r_type": type_info["r_type"], "r_att": r_att, "w_att": len(goal["attributes"]) / denominator,
            "query_match": type_info["query_match"], "category_match": type_info["category_match"],
            "title_score": type_info["title_score"]}
    if r_option is not None:
        info["r_option"], info["w_option"] = r_option, len(goal_options) / denominator
    if r_price is not None:
        info["r_price"], info["w_price"] = r_price, 1 / denominator
    return reward, info
