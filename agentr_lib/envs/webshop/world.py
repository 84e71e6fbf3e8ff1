"""Everything an episode reads and never writes: products, prices, goals, search index, splits.

Built once per process and data source (generated catalogue, or an original data folder) and shared by every
`WebShopEnv`; nothing is written to disk, so read-only installs work.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from agentr_lib.envs.webshop.catalogue import SEED, generate_catalogue
from agentr_lib.envs.webshop.goals import build_goals, sample_prices, split_ids
from agentr_lib.envs.webshop.original import load_original_products
from agentr_lib.envs.webshop.search import SearchEngine


@dataclass(frozen=True)
class World:
    products: list[dict]
    by_asin: dict[str, dict]
    prices: dict[str, float]
    goals: list[dict]
    engine: SearchEngine
    splits: dict[str, list[int]]
    source: str  # "generated:<seed>" or the data folder


@lru_cache(maxsize=4)
def load_world(data_dir: str | None = None, num_products: int | None = 1000, seed: int = SEED) -> World:
    """The generated catalogue (default), or the original files in `data_dir` (first `num_products`)."""
    if data_dir is None:
        products, source = generate_catalogue(seed), f"generated:{seed}"
    else:
        products, source = load_original_products(data_dir, num_products), str(data_dir)
    prices = sample_prices(products)
    goals = build_goals(products, prices)
    return World(products=products, by_asin={p["asin"]: p for p in products}, prices=prices, goals=goals,
                 engine=SearchEngine(products), splits=split_ids(len(goals)), source=source)
