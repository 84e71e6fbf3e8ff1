"""WebShop: catalogue, goals/splits, pages, search, reward, state copy, demonstrator, original-data loader."""
import json
import random

import pytest

from agentr_lib.envs.webshop import WebShopEnv, parse_action
from agentr_lib.envs.webshop.catalogue import CATEGORIES, generate_catalogue
from agentr_lib.envs.webshop.reward import get_reward, normalize_color
from agentr_lib.envs.webshop.search import analyze


@pytest.fixture(scope="module")
def env():
    return WebShopEnv()


def _walk(env, task_id, n_steps, seed):
    """A seeded random shopper: mostly clicks, sometimes searches. Returns the actions it took."""
    rng = random.Random(seed)
    words = env.goal(task_id)["instruction_text"].split()
    env.reset(task_id)
    actions = []
    for _ in range(n_steps):
        clickables = [c for c in env.available_actions()["clickables"] if c not in ("search", "buy now")]
        if not clickables or rng.random() < 0.25:
            action = f"search[{' '.join(rng.sample(words, 3))}]"
        else:
            action = f"click[{rng.choice(clickables)}]"
        actions.append(action)
        env.step(action)
    return actions


# ---------------------------------------------------------------- catalogue, goals, splits

def test_catalogue_is_deterministic_and_covers_the_five_categories():
    first, second = generate_catalogue(), generate_catalogue()
    assert first == second
    assert len(first) >= 1000
    assert {p["category"] for p in first} == set(CATEGORIES)
    assert len({p["asin"] for p in first}) == len(first)
    for p in first[:50]:
        assert p["Title"] and p["Description"] and p["BulletPoints"] and p["Attributes"] and p["query"]
        assert p["product_category"].count(" › ") >= 2
        assert p["Price"].startswith("$") and 1 <= len(p["pricing"]) <= 2
        assert all(v == v.lower() for values in p["options"].values() for v in values)
    assert generate_catalogue(seed=1) != first


def test_goals_and_splits(env):
    assert env.num_tasks >= 6910
    test, train = env.task_ids("test"), env.task_ids("train")
    assert len(test) == 200 and len(train) == 3930
    assert not set(test) & set(train)
    assert max(test + train) < env.num_tasks
    goal = env.goal(test[0])
    assert goal["instruction_text"].endswith("0 dollars") and ", and price lower than " in goal["instruction_text"]
    assert goal["attributes"] and goal["price_upper"] > 0
    # AgentGym's scheme: every instruction yields one goal per cap, four caps 10 dollars apart
    same = [g for g in env.world.goals if g["instruction_text"].split(", and price")[0]
            == goal["instruction_text"].split(", and price")[0] and g["asin"] == goal["asin"]]
    assert sorted(g["price_upper"] for g in same)[1:] == [c + 10 for c in sorted(g["price_upper"] for g in same)[:-1]]
    with pytest.raises(ValueError):
        env.task_ids("dev")


# ---------------------------------------------------------------- pages and actions

def test_first_observation_and_instruction_prompt(env):
    obs = env.reset(26)
    instruction = env.goal()["instruction_text"]
    assert obs == f"WebShop [SEP] Instruction: [SEP] {instruction} [SEP] Search"
    assert env.available_actions() == {"has_search_bar": True, "clickables": ["search"]}
    prompt = env.instruction
    assert "search[" in prompt and "click[" in prompt and "\nThought: " in prompt and "\nAction: " in prompt
    assert len(prompt.split()) < 260  # ~350 tokens at most


def test_pagination_ten_per_page_at_most_fifty(env):
    env.reset(0)
    obs = env.step("search[black]").observation
    assert "Page 1 (Total results: 50) [SEP] Next >" in obs and "< Prev" not in obs
    seen = []
    for page in range(1, 6):
        clickables = env.available_actions()["clickables"]
        products = [c for c in clickables if c.startswith("b0")]
        assert len(products) == 10
        assert ("< prev" in clickables) == (page > 1)
        seen += products
        obs = env.step("click[next >]").observation
    assert len(set(seen)) == 50
    assert obs.endswith("Page 6 (Total results: 50) [SEP] < Prev [SEP] Next >")  # past the end, as the original
    env.step("click[< prev]")
    assert "[SEP] Page 4 (Total results: 50) [SEP] < Prev [SEP] Next > [SEP]" in env.step("click[< prev]").observation


def test_fewer_products_per_page_pages_the_same_results(env):
    small = WebShopEnv.from_world(env.world, products_per_page=3)
    assert "3 per page" in small.instruction and "10 per page" in env.instruction
    for e in (env, small):
        e.reset(0)
        e.step("search[black]")
    first_ten = [c for c in env.available_actions()["clickables"] if c.startswith("b0")]
    paged = []
    for _ in range(4):
        paged += [c for c in small.available_actions()["clickables"] if c.startswith("b0")]
        small.step("click[next >]")
    assert paged[:10] == first_ten and len(paged) == 12
    for task in small.task_ids("train")[:10]:  # the demonstrator pages by 3 too, and still buys the goal
        small.reset(task)
        assert [small.step(a) for a in small.demonstrate(task).actions][-1].reward == 1.0
    with pytest.raises(ValueError):
        WebShopEnv(products_per_page=0)


def test_item_page_options_and_sub_pages(env):
    task = env.task_ids("test")[3]
    env.reset(task)
    goal = env.goal()
    env.step(f"search[{goal['name']}]")
    obs = env.step(f"click[{goal['asin'].lower()}]").observation
    product = env.world.by_asin[goal["asin"]]
    assert obs.endswith(f"{product['Title']} [SEP] Price: {product['Price']} [SEP] Rating: N.A. [SEP] Description "
                        "[SEP] Features [SEP] Reviews [SEP] Buy Now")
    assert " [SEP] Back to Search [SEP] < Prev [SEP] " in obs
    name, values = next(iter(product["options"].items()))
    assert f" [SEP] {name} [SEP] {' [SEP] '.join(values)} [SEP] " in obs
    env.step(f"click[{values[-1]}]")
    assert env.state.options == {name: values[-1]}
    assert env.step("click[features]").observation.endswith(" [SEP] < Prev [SEP] " + " [SEP] ".join(
        b.strip() for b in product["BulletPoints"]))
    assert env.step("click[< prev]").info["page"] == "item" and env.state.options == {name: values[-1]}
    assert env.step("click[description]").observation.endswith(product["Description"])
    assert env.step("click[reviews]").info["valid"] is False  # not a clickable on a sub-page
    env.step("click[< prev]")
    assert env.step("click[< prev]").info["page"] == "results" and env.state.options == {}
    back = env.step("click[back to search]")
    assert back.info["page"] == "search" and back.observation == env.reset(task)


def test_invalid_actions_change_nothing(env):
    env.reset(5)
    env.step("search[gluten free]")
    for action in ("click[nonexistent]", "", "search", "garbage", "click[]", "Search[shoes]", "click[search]",
                   "buy now", "click[buy now]", "search[]", None, "[x]"):
        before, obs = env.snapshot(), env.observation
        result = env.step(action)
        assert (result.observation, result.reward, result.done) == (obs, 0.0, False), action
        assert result.info["valid"] is False and env.snapshot() == before


def test_action_parsing_is_the_original_regex():
    assert parse_action("click[Buy Now]") == ("click", "buy now")
    assert parse_action("  search[Red Shoes] \n") == ("search", "red shoes")
    assert parse_action("click[a] then click[b]") == ("click[a] then click", "b")  # greedy, as re.match(.+)
    assert parse_action("search") == ("search", None)


def test_search_analyzer_and_ranking(env):
    assert analyze("Women's Shoes, 6.76 fl oz and the batteries") == ["women", "shoe", "6.76", "fl", "oz", "battery"]
    goal = env.goal(env.task_ids("test")[0])
    hits = env.world.engine.search(goal["name"].lower())
    assert goal["asin"] in hits[:3]
    assert env.world.engine.search("zzzqqq") == ()


# ---------------------------------------------------------------- reward

def _product(name, query, path, attributes, options):
    return {"asin": "B000000001", "name": name, "Title": name, "Description": "A cake mix for every day.",
            "BulletPoints": ["Easy to bake."], "Attributes": attributes, "query": query,
            "product_category": path, "options": options}


def test_reward_formula_by_hand():
    goal = {"name": "Bakely Chocolate Cake Mix, Low Carb", "query": "cake mix",
            "product_category": "Grocery › Baking › Cake Mixes", "attributes": ["gluten free", "low carb"],
            "goal_options": ["chocolate", "pack of 3"], "price_upper": 20.0}
    options = {"flavor name": ["vanilla", "chocolate"], "size": ["pack of 1", "pack of 3"]}
    same_shelf = _product("Acme Vanilla Cake Mix, Gluten Free", "cake mix", "Grocery › Baking › Cake Mixes",
                          ["gluten free"], options)
    # attributes: "gluten free" yes, "low carb" no (1/2); options: vanilla != chocolate, pack of 3 == (1/2);
    # price 25 > 20 (0); same query -> r_type 1: (1 + 1 + 0) / (2 + 2 + 1) = 0.4
    reward, info = get_reward(same_shelf, goal, 25.0, {"flavor name": "vanilla", "size": "pack of 3"})
    assert reward == pytest.approx(0.4)
    assert (info["r_type"], info["r_att"], info["r_option"], info["r_price"]) == (1.0, 0.5, 0.5, False)
    right_options = {"flavor name": "chocolate", "size": "pack of 3"}
    assert get_reward(same_shelf, goal, 19.5, right_options)[0] == pytest.approx(0.8)  # (1 + 2 + 1) / 5
    # other shelf, 1 of the goal name's 6 content words shared (title_score 1/6): r_type 0.5 -> 0.5 * 2/5
    tin = _product("Zed Cake Tin", "baking pan", "Kitchen › Bakeware › Pans", ["gluten free"], {})
    reward, info = get_reward(tin, goal, 10.0, {})
    assert info["r_type"] == 0.5 and info["title_score"] == pytest.approx(1 / 6)
    assert reward == pytest.approx(0.5 * 2 / 5)
    # nothing in common with the goal's name: r_type 0
    lamp = _product("Nova Desk Lamp", "desk lamp", "Home › Lighting › Lamps", ["gluten free"], {})
    assert get_reward(lamp, goal, 10.0, {})[0] == 0.0
    assert normalize_color("navy blue") == normalize_color("light blue") == "blue"


def test_wrong_purchase_scores_below_one(env):
    task = env.task_ids("test")[10]
    env.reset(task)
    goal = env.goal()
    hits = env.world.engine.search(goal["name"].lower())
    other = next(a for a in hits if a != goal["asin"])
    env.step(f"search[{goal['name']}]")
    result = env.step(f"click[{other.lower()}]")
    result = env.step("click[buy now]")
    expected, _ = get_reward(env.world.by_asin[other], goal, env.world.prices[other], {})
    assert result.done and result.reward == pytest.approx(expected) and result.reward < 1.0
    assert result.info["asin"] == other and {"r_type", "r_att", "r_price"} <= set(result.info)
    assert f"Your score (min 0.0, max 1.0) [SEP] {result.reward}" in result.observation
    after = env.step("search[anything]")  # the episode is over: nothing more happens, nothing more is paid
    assert (after.observation, after.reward, after.done) == (result.observation, 0.0, True)


# ---------------------------------------------------------------- demonstrator, determinism, state copy

def test_demonstrator_buys_the_goal_with_full_reward(env):
    for task in env.task_ids("test")[:20] + env.task_ids("train")[:10]:
        demo = env.demonstrate(task)
        assert len(demo.thoughts) == len(demo.actions) and demo.actions[-1] == "click[buy now]"
        env.reset(task)
        results = [env.step(a) for a in demo.actions]
        assert all(r.info["valid"] for r in results)
        assert results[-1].done and results[-1].reward == 1.0, (task, demo.actions)


def test_same_id_same_episode(env):
    other = WebShopEnv()
    actions = _walk(env, 77, 15, seed=3)
    first = [env.reset(77)] + [env.step(a).observation for a in actions]
    second = [other.reset(77)] + [other.step(a).observation for a in actions]
    assert first == second


def test_snapshot_restore_equals_replay(env):
    for seed in range(3):
        task = 200 + seed
        actions = _walk(env, task, 16, seed)
        for cut in (0, 4, 8, 12):
            env.replay(task, actions[:cut])
            state, obs = env.snapshot(), env.observation
            untouched = state.copy()
            _walk(env, 999, 5, seed)  # scramble the env with another episode
            env.restore(state)
            assert env.observation == obs
            restored = [env.step(a) for a in actions[cut:cut + 4]]
            assert state == untouched  # stepping after restore does not write into the snapshot
            env.restore(state)  # a snapshot can be restored again: restore copies it
            again = [env.step(a) for a in actions[cut:cut + 4]]
            env.replay(task, actions[:cut])
            replayed = [env.step(a) for a in actions[cut:cut + 4]]
            as_tuples = lambda results: [(r.observation, r.reward, r.done) for r in results]
            assert as_tuples(restored) == as_tuples(again) == as_tuples(replayed)


# ---------------------------------------------------------------- original data files

def _write_fixture(folder):
    def raw(asin, name, price, options, query, path):
        return {"asin": asin, "name": name, "full_description": f"{name}. Made with care.",
                "small_description": [f"{name} bullet one", "bullet two"], "pricing": price,
                "customization_options": options, "category": "beauty", "query": query,
                "product_category": path, "images": ["https://example.invalid/x.jpg"]}

    colors = {"Color": [{"value": "Navy/Blue", "image": None}, {"value": "Black", "image": None}]}
    products = [
        raw("B0FIXTURE1", "Issey Long Lasting Eau de Toilette Spray 6.76 fl oz", "$64.98", None,
            "perfume", "Beauty & Personal Care › Fragrance › Men's › Cologne"),
        raw("B0FIXTURE2", "Salon Argan Oil Shampoo for Dry Hair", "$9.5 to $14.0", colors,
            "shampoo", "Beauty & Personal Care › Hair Care › Shampoos"),
        raw("B0FIXTURE2", "duplicate asin, skipped", "$1.00", None, "x", "A › B"),
        raw("nan", "bad asin, skipped", "$1.00", None, "x", "A › B"),
        raw("B0FIXTURE3", "Quiet Wireless Mouse", "", None, "wireless mouse", "Electronics › Computers › Mice"),
    ]
    attributes = {"B0FIXTURE1": {"attributes": ["long lasting"]}, "B0FIXTURE2": {"attributes": ["dry hair"]}}
    human = {
        "B0FIXTURE1": [{"asin": "B0FIXTURE1", "instruction": "i need a long lasting 6.76 fl oz bottle of issey.",
                        "instruction_attributes": ["long lasting"], "instruction_options": []}],
        "B0FIXTURE2": [{"asin": "B0FIXTURE2", "instruction": "i want a shampoo for dry hair in navy blue",
                        "instruction_attributes": ["dry hair"], "instruction_options": ["navy | blue"]},
                       {"asin": "B0FIXTURE2", "instruction": "no attributes: skipped",
                        "instruction_attributes": [], "instruction_options": []}],
    }
    for name, data in (("items_shuffle_1000.json", products), ("items_ins_v2_1000.json", attributes),
                       ("items_human_ins.json", human)):
        (folder / name).write_text(json.dumps(data))


def test_original_format_loader(tmp_path):
    _write_fixture(tmp_path)
    env = WebShopEnv(data_dir=tmp_path)
    assert [p["asin"] for p in env.world.products] == ["B0FIXTURE1", "B0FIXTURE2", "B0FIXTURE3"]
    shampoo = env.world.by_asin["B0FIXTURE2"]
    assert shampoo["options"] == {"color": ["navy | blue", "black"]} and shampoo["Price"] == "$9.5 to $14.0"
    assert 9.5 <= env.world.prices["B0FIXTURE2"] <= 14.0
    assert env.world.by_asin["B0FIXTURE3"]["Price"] == "$100.0"  # missing price: the original's $100
    assert env.world.by_asin["B0FIXTURE3"]["Attributes"] == ["DUMMY_ATTR"]
    assert env.num_tasks == 8  # 2 instructions with attributes x 4 price caps
    texts = {g["instruction_text"] for g in env.world.goals}
    assert "i need a long lasting 6.76 fl oz bottle of issey, and price lower than 70.00 dollars" in texts
    assert env.task_ids("test") == [] or max(env.task_ids("test")) < 8
    for task in range(env.num_tasks):
        demo = env.demonstrate(task)
        env.reset(task)
        assert [env.step(a) for a in demo.actions][-1].reward == 1.0
