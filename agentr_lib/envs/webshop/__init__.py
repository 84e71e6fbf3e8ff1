"""WebShop (Yao et al., 2022) in process: a generated catalogue (or the original data files), BM25 search,
the original's text pages and reward. See env.py for behaviour and deviations."""
from agentr_lib.envs.webshop.env import INSTRUCTION, Session, WebShopEnv, parse_action, search_keywords

__all__ = ["INSTRUCTION", "Session", "WebShopEnv", "parse_action", "search_keywords"]
