"""BM25 product search, standing in for WebShop's pyserini/Lucene index.

Same documents as the original's index (`search_engine/convert_product_file_format.py`): lowercase(title +
description + first bullet point + "name: v1, v2, and name2: ..." option text), BM25 with pyserini's defaults
(k1=0.9, b=0.4), top 50, only documents that share a term with the query (Lucene returns no zero-score hits).

Deviations: `bm25s` (pure numpy) instead of Lucene, which needs Java and a prebuilt index. Lucene's English
analyzer (standard tokenizer, possessive filter, 33 stop words, Porter stemmer) is approximated by a regex
tokenizer, the possessive rule, the same stop words and a plural-only stemmer (no extra compiled dependency);
ties are broken by catalogue order as Lucene breaks them by doc id. Rankings are therefore close to, not
identical with, the original's. The special queries `<r>`, `<a>`, `<c>`, `<q>` (never used by agents) are not
implemented: they are searched as ordinary words.
"""
from __future__ import annotations

import re
from functools import lru_cache

import bm25s
import numpy as np

TOP_N = 50  # SEARCH_RETURN_N in the original
K1, B = 0.9, 0.4  # pyserini's BM25 defaults
# Lucene's English stop words (EnglishAnalyzer.ENGLISH_STOP_WORDS_SET)
STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these "
    "they this to was will with".split())
_TOKEN = re.compile(r"[a-z0-9]+(?:['.][a-z0-9]+)*")


def stem(word: str) -> str:
    """Plural -> singular, so that "shoes" finds "shoe" and "batteries" finds "battery"."""
    if len(word) < 4 or not word.endswith("s") or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes", "zes")):
        return word[:-2]
    return word[:-1]


def analyze(text: str) -> list[str]:
    tokens = []
    for token in _TOKEN.findall(text.lower()):
        if token.endswith("'s"):
            token = token[:-2]
        if token and token not in STOP_WORDS:
            tokens.append(stem(token))
    return tokens


def document_text(product: dict) -> str:
    option_text = ", and ".join(f"{name}: {', '.join(values)}" for name, values in product["options"].items())
    bullets = product["BulletPoints"]
    return " ".join([product["Title"], product["Description"], bullets[0] if bullets else "", option_text]).lower()


class SearchEngine:
    """Built once per catalogue (world.py memoises it); `search` is memoised per query string."""

    def __init__(self, products: list[dict]):
        self.asins = tuple(p["asin"] for p in products)
        self._bm25 = bm25s.BM25(k1=K1, b=B, method="lucene")
        self._bm25.index([analyze(document_text(p)) or [""] for p in products], show_progress=False)
        self.search = lru_cache(maxsize=8192)(self._search)

    def _search(self, keywords: str) -> tuple[str, ...]:
        """ASINs of the best (at most 50) products for `keywords`, best first."""
        tokens = [t for t in analyze(keywords) if t in self._bm25.vocab_dict]
        if not tokens:
            return ()
        scores = self._bm25.get_scores(tokens)
        order = np.argsort(-scores, kind="stable")[:TOP_N]
        return tuple(self.asins[i] for i in order if scores[i] > 0)
