"""The paper's reference numbers (PAPER.md), printed beside ours. Scales: WebShop/SciWorld average reward ×100,
TextCraft success rate %, as in the paper."""

ENVS = ("webshop", "sciworld", "textcraft")

# Table 2 — main results, Llama-3.1-8B-Instruct backbone (Agent-R / Direct-Revision: iteration 3, multi-task).
TABLE2 = {
    "Llama-3.1-8B-Instruct": {"webshop": 19.65, "sciworld": 14.36, "textcraft": 26.00, "average": 20.00},
    "+ ETO": {"webshop": 52.80, "sciworld": 67.55, "textcraft": 75.00, "average": 65.12},
    "+ Direct-Revision": {"webshop": 54.44, "sciworld": 66.65, "textcraft": 66.00, "average": 62.36},
    "+ Agent-R": {"webshop": 63.91, "sciworld": 70.23, "textcraft": 78.00, "average": 70.71},
    "GPT-4o": {"webshop": 25.48, "sciworld": 46.91, "textcraft": 64.00, "average": 45.46},
}

# Table 6 — per iteration, multi-task training (iteration 0 = the untrained backbone, Table 2).
TABLE6_MULTI = {
    "agent_r": {0: TABLE2["Llama-3.1-8B-Instruct"],
                1: {"webshop": 45.84, "sciworld": 66.71, "textcraft": 64.00, "average": 58.85},
                2: {"webshop": 52.05, "sciworld": 68.28, "textcraft": 76.00, "average": 65.44},
                3: {"webshop": 63.91, "sciworld": 70.23, "textcraft": 78.00, "average": 70.71}},
    "direct_revision": {0: TABLE2["Llama-3.1-8B-Instruct"],
                        1: {"webshop": 42.66, "sciworld": 63.10, "textcraft": 48.00, "average": 51.25},
                        2: {"webshop": 46.93, "sciworld": 64.23, "textcraft": 64.00, "average": 58.39},
                        3: {"webshop": 54.44, "sciworld": 66.65, "textcraft": 66.00, "average": 62.36}},
}

# Table 3 — error recovery (continue vanilla failures from a random cut, max 50 rounds).
TABLE3 = {
    "agent_r": {1: {"webshop": 46.51, "sciworld": 40.82, "textcraft": 32.43, "average": 39.92},
                2: {"webshop": 47.51, "sciworld": 45.22, "textcraft": 35.14, "average": 42.62},
                3: {"webshop": 48.22, "sciworld": 48.79, "textcraft": 43.24, "average": 46.75}},
    "direct_revision": {1: {"webshop": 40.26, "sciworld": 19.09, "textcraft": 11.35, "average": 23.57},
                        2: {"webshop": 40.35, "sciworld": 27.45, "textcraft": 22.97, "average": 30.26},
                        3: {"webshop": 42.02, "sciworld": 35.27, "textcraft": 29.73, "average": 35.67}},
}

# Table 1 — trajectories collected per iteration: (revision, good).
TABLE1 = {
    "webshop": {"tasks": 300, 1: (5500, 600), 2: (8500, 1800), 3: (9000, 2000), "test": 200},
    "sciworld": {"tasks": 200, 1: (8000, 2500), 2: (4200, 1800), 3: (5400, 1200), "test": 200},
    "textcraft": {"tasks": 200, 1: (6000, 2000), 2: (7000, 3200), 3: (8000, 4000), "test": 100},
}

# Figure 5 — average revision length on TextCraft per iteration, read off the figure elsewhere (unverified).
FIGURE5_TEXTCRAFT = {1: 8.3, 2: 4.7, 3: 2.6}


def table6(variant: str) -> dict:
    """Per-iteration reference scores for a revision variant (Agent-R's for variants the paper lacks there)."""
    return TABLE6_MULTI.get(variant, TABLE6_MULTI["agent_r"])
