"""The pages of WebShop's text mode: their visible texts and their clickables.

The original renders HTML templates and turns them into text with BeautifulSoup: every visible text node,
stripped, joined by " [SEP] " (observation_mode="text", what AgentGym serves). The clickables are the lowercased
texts of elements with class `btn`, the lowercased ASIN links on a results page, and the option values (radio
inputs) on an item page. We write the same text lists directly, with no HTML in between.

Page by page (texts in order):
- search:   WebShop | Instruction: | <instruction> | Search
- results:  Instruction: | <instruction> | Back to Search | Page N (Total results: T) | [< Prev |] Next > |
            then per product: <ASIN> | <title> | <price>          ("Next >" shows even past the last page)
- item:     Instruction: | <instruction> | Back to Search | < Prev | per option group: <name> | <values...> |
            <title> | Price: <price> | Rating: N.A. | Description | Features | Reviews | Buy Now
- description / features / reviews: Instruction: | <instruction> | Back to Search | < Prev | the text
            (one entry per bullet point; the original loads no reviews, so the Reviews page ends at "< Prev")
- done:     the original's done page, hidden debug block included (BeautifulSoup keeps `display:none` text), with
            the fields the original leaves unset showing as "None" or nothing, and the score.
"""
from __future__ import annotations

import json

PRODUCTS_PER_PAGE = 10
SEP = " [SEP] "
SUB_PAGES = ("description", "features", "reviews")

BACK, PREV, NEXT, BUY = "Back to Search", "< Prev", "Next >", "Buy Now"

# Clickable kinds: a button, a product link (on results pages), or an option value (on item pages).
BUTTON, PRODUCT = "button", "product"


def join(texts: list[str]) -> str:
    """The text-mode observation: stripped, non-empty visible texts joined by " [SEP] "."""
    return SEP.join(t for t in (x.strip() for x in texts) if t)


def _header(instruction: str) -> list[str]:
    return ["Instruction:", instruction]


def search_page(instruction: str) -> tuple[list[str], dict]:
    # the Search button is a clickable in the original, but click[search] is refused by its step()
    return ["WebShop", *_header(instruction), "Search"], {"search": BUTTON}


def results_page(instruction: str, products: list[dict], page: int, total: int) -> tuple[list[str], dict]:
    texts = [*_header(instruction), BACK, f"Page {page} (Total results: {total})"]
    clickables = {BACK.lower(): BUTTON}
    if page > 1:
        texts.append(PREV)
        clickables[PREV.lower()] = BUTTON
    texts.append(NEXT)
    clickables[NEXT.lower()] = BUTTON
    for p in products:
        texts += [p["asin"], p["Title"], p["Price"]]
        clickables[p["asin"].lower()] = PRODUCT
    return texts, clickables


def item_page(instruction: str, product: dict) -> tuple[list[str], dict]:
    texts = [*_header(instruction), BACK, PREV]
    clickables = {BACK.lower(): BUTTON, PREV.lower(): BUTTON}
    buttons = {}
    for name, values in product["options"].items():
        texts.append(name)
        texts.extend(values)
        for v in values:
            buttons[v] = name  # a value shared by two groups selects the later group, as in the original's dict
    texts += [product["Title"], f"Price: {product['Price']}", f"Rating: {product['Rating']}",
              "Description", "Features", "Reviews", BUY]
    clickables.update({"description": BUTTON, "features": BUTTON, "reviews": BUTTON, BUY.lower(): BUTTON})
    clickables.update({value: ("option", name) for value, name in buttons.items()})
    return texts, clickables


def sub_page(instruction: str, product: dict, which: str) -> tuple[list[str], dict]:
    texts = [*_header(instruction), BACK, PREV]
    if which == "description":
        texts.append(product["Description"])
    elif which == "features":
        texts.extend(product["BulletPoints"])
    else:  # reviews: title, score and body of each, when a catalogue has any
        for r in product["Reviews"]:
            texts += [f'"{r.get("title", "")}"', str(r.get("score", "")), r.get("body", "")]
    return texts, {BACK.lower(): BUTTON, PREV.lower(): BUTTON}


def _tojson(options: dict) -> str:
    """Flask's `tojson` filter: sorted keys, ASCII, and <, >, &, ' escaped for HTML."""
    text = json.dumps(options, sort_keys=True)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("'", "\\u0027")):
        text = text.replace(char, escaped)
    return text


def done_page(asin: str, options: dict, reward: float) -> tuple[list[str], dict]:
    # "instuction text" is the original template's spelling; the score is Python's str() of the float
    texts = ["Thank you for shopping with us!", "Your code:", "None", "(Paste it in your MTurk interface.)",
             "Purchased", "asin", asin, "options", _tojson(options), "attrs", "None", "category", "None",
             "query", "None", "product category", "None", "Target", "asin", "options", "attrs", "price upper",
             "instuction text", "category", "product category", "query", "Goal", "None", "Reward",
             "Your score (min 0.0, max 1.0)", str(reward), "Reward Details", "None"]
    return texts, {}
