"""Stage helpers that are not covered by the end-to-end pipeline test."""
from agentr_lib.envs.webshop import WebShopEnv
from agentr_lib.stages import demo_samples


def test_a_long_demo_is_cut_into_trimmed_windows_that_train_every_action():
    env = WebShopEnv()
    task = env.task_ids("train")[0]
    demo = env.demonstrate(task)
    length = lambda messages: sum(len(m["content"]) for m in messages)  # noqa: E731  (characters stand in for tokens)
    whole = demo_samples(env, demo, fits=lambda m: True)
    assert len(whole) == 1 and whole[0]["kind"] == "demo"
    full = whole[0]["messages"]
    # the tightest budget that works: the preamble, the first action and its observation, and any one more action
    budget = max(length(full[:6] + [m]) for m in full[6:] if m["role"] == "assistant")
    assert budget < length(full)
    windows = demo_samples(env, demo, fits=lambda m: length(m) <= budget)
    assert len(windows) >= 2 and [w["kind"] for w in windows] == ["demo"] + ["demo_window"] * (len(windows) - 1)
    trained = set()
    for w in windows:
        m = w["messages"]
        assert length(m) <= budget and m[:6] == full[:6]  # preamble + first action + its observation stay
        assert m[-1]["role"] == "assistant" and m[-1]["loss"]  # each window ends with an action it trains
        assert all(x in full for x in m)  # cut from the episode, nothing rewritten
        trained |= {x["content"] for x in m[4:] if x["role"] == "assistant" and x["loss"]}
    actions = {x["content"] for x in full[4:] if x["role"] == "assistant"}
    assert trained == actions  # every action of the episode, the click on a result and the Buy included
    assert windows[-1]["messages"][-1]["content"].endswith(f"Action: {demo.actions[-1]}")
