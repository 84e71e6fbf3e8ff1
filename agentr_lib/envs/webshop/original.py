"""Loader for the original WebShop data files, for users who have them.

Point `WebShopEnv(data_dir=...)` at a folder holding (WebShop's `data/` layout, files from its setup script):
- `items_shuffle_1000.json` (or the full `items_shuffle.json`): a list of scraped products;
- `items_ins_v2_1000.json` (or `items_ins_v2.json`): {asin: {"attributes": [...], ...}};
- `items_human_ins.json`: {asin: [{"instruction", "instruction_attributes", "instruction_options", ...}]}.
The products are turned into the form the original's `load_products` gives them (the same form our generated
catalogue has), so goals, search, pages and reward run unchanged; with `num_products=1000`, as AgentGym runs it,
the goal list should be AgentGym's (ids and instructions), up to the range-priced items' price draws (goals.py).
"""
from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

from agentr_lib.envs.webshop.catalogue import price_tag

PRODUCT_FILES = ("items_shuffle_1000.json", "items_shuffle.json")
ATTRIBUTE_FILES = ("items_ins_v2_1000.json", "items_ins_v2.json")
HUMAN_FILE = "items_human_ins.json"


def _first_existing(data_dir: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (data_dir / name).is_file():
            return data_dir / name
    raise FileNotFoundError(f"none of {', '.join(names)} in {data_dir}")


def parse_pricing(pricing: str | None) -> list[float]:
    """"$12.99" -> [12.99]; "$24.41 to $29.95" -> [24.41, 29.95]; missing -> [100.0] (the original's default)."""
    if not pricing:
        return [100.0]
    values = [float(Decimal(re.sub(r"[^\d.]", "", part))) for part in pricing.split("$")[1:]]
    return values[:2] if values else [100.0]


def parse_options(customization_options: dict | None) -> dict[str, list[str]]:
    """{Name: [{"value": "Navy/Blue", ...}]} -> {"name": ["navy | blue"]}, as the original lowercases them."""
    options = {}
    for name, contents in (customization_options or {}).items():
        if contents is None:
            continue
        options[name.lower()] = [c["value"].strip().replace("/", " | ").lower() for c in contents]
    return options


def convert_product(raw: dict, attributes: dict, human: dict) -> dict:
    asin = raw["asin"]
    bullets = raw["small_description"]
    pricing = parse_pricing(raw.get("pricing"))
    product = {
        "asin": asin,
        "name": raw["name"],
        "Title": raw["name"],
        "Description": raw["full_description"],
        "BulletPoints": bullets if isinstance(bullets, list) else [bullets],
        "pricing": pricing,
        "Price": price_tag(pricing),
        "options": parse_options(raw.get("customization_options")),
        "Attributes": attributes[asin]["attributes"] if "attributes" in attributes.get(asin, {}) else ["DUMMY_ATTR"],
        "category": raw["category"],
        "query": raw["query"].lower().strip(),
        "product_category": raw["product_category"],
        "Reviews": [],  # the original's loader leaves reviews out too
        "Rating": "N.A.",
    }
    if asin in human:
        product["instructions"] = human[asin]
    return product


def load_original_products(data_dir: str | Path, num_products: int | None = 1000) -> list[dict]:
    """The original products (first `num_products` of the shuffled file; None = all), with their human
    instructions, skipping bad and duplicate ASINs as the original does."""
    data_dir = Path(data_dir)
    raw_products = json.loads(_first_existing(data_dir, PRODUCT_FILES).read_text())
    attributes = json.loads(_first_existing(data_dir, ATTRIBUTE_FILES).read_text())
    human = json.loads(_first_existing(data_dir, (HUMAN_FILE,)).read_text())
    if num_products is not None:
        raw_products = raw_products[:num_products]
    seen: set[str] = set()
    products = []
    for raw in raw_products:
        asin = raw["asin"]
        if asin == "nan" or len(asin) > 10 or asin in seen:
            continue
        seen.add(asin)
        products.append(convert_product(raw, attributes, human))
    return products
