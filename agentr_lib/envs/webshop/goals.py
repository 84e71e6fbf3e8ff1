"""Goals (one per instruction and price cap, AgentGym style), product prices, and the task splits.

AgentGym changed WebShop's `get_human_goals`: instead of one goal per human instruction with a price cap drawn at
random from the next four multiples of $10 above the product's price, it makes one goal per cap (up to 4), so the
goal list is deterministic. The list is then shuffled with `random.seed(233)` and a goal id (AgentGym's
`webshop_<n>` / Agent-R's task id) is the index into it. We do the same over our catalogue's instructions:
1,728 instructions x 4 caps = 6,912 goals.

The ids are AgentGym-shaped, the goals are ours: Agent-R's 200 test ids and 3,930 train ids (the package's split
file) index our generated goal list, not the goals the paper was evaluated on, which need the original data
(`WebShopEnv(data_dir=...)` rebuilds that list from the original files, see original.py).
"""
from __future__ import annotations

import random

from agentr_lib.envs.registry import load_split_ids

PRICE_STEPS = [10.0 * i for i in range(1, 100)]  # the original's price caps: $10 ... $990
SHUFFLE_SEED = 233  # the original's (and AgentGym's) seed for the goal shuffle
NO_CAP = 1_000_000  # the original's cap when a product costs more than $980 (no price clause then)
PRICE_SEED = "webshop-prices"


def sample_prices(products: list[dict], seed: str = PRICE_SEED) -> dict[str, float]:
    """The price each product sells at. A single price is used as is; for a range the original draws
    `random.uniform(low, high)` from the unseeded global RNG at load time, so its goals' caps and rewards change
    from run to run. We draw from an RNG seeded by (seed, asin): the same price on every run and machine."""
    prices = {}
    for p in products:
        pricing = p["pricing"]
        if not pricing:
            prices[p["asin"]] = 100.0
        elif len(pricing) == 1:
            prices[p["asin"]] = pricing[0]
        else:
            prices[p["asin"]] = random.Random(f"{seed}:{p['asin']}").uniform(*pricing[:2])
    return prices


def price_caps(price: float) -> list[float]:
    """AgentGym's caps: the next four multiples of 10 above the price (fewer near $990; none above)."""
    return [p for p in PRICE_STEPS if p > price][:4]


def build_goals(products: list[dict], prices: dict[str, float]) -> list[dict]:
    """One goal per (instruction with >= 1 attribute, price cap), in product order, then shuffled with seed 233."""
    goals = []
    for product in products:
        for record in product.get("instructions", []):
            if not record["instruction_attributes"]:  # the original skips instructions without attributes
                continue
            caps = price_caps(prices[product["asin"]])
            # with fewer than two caps AgentGym emits the uncapped goal four times (its loop's else-branch)
            cap_texts = ([(c, f", and price lower than {c:.2f} dollars") for c in caps] if len(caps) >= 2
                         else [(NO_CAP, "")] * 4)
            for cap, text in cap_texts:
                goals.append({
                    "asin": product["asin"],
                    "category": product["category"],
                    "query": product["query"],
                    "name": product["name"],
                    "product_category": product["product_category"],
                    "instruction_text": record["instruction"].strip(".") + text,
                    "attributes": list(record["instruction_attributes"]),
                    "price_upper": cap,
                    "goal_options": list(record["instruction_options"]),
                })
    random.Random(SHUFFLE_SEED).shuffle(goals)  # same permutation as the original's random.seed(233); shuffle
    return goals


def split_ids(num_goals: int) -> dict[str, list[int]]:
    """test: Agent-R's 200 WebShop test ids; train: Agent-R's train pool (3,930 ids, disjoint from test). Ids
    beyond the goal list (possible only with other data) are dropped."""
    ids = load_split_ids("webshop")
    return {split: [i for i in ids[split] if i < num_goals] for split in ("test", "train")}
