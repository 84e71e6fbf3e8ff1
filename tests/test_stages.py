"""Stage helpers that are not covered by the end-to-end pipeline test."""
from agentr_lib.envs.webshop import WebShopEnv
from agentr_lib.stages import demo_samples


def test_a_long_demo_also_trains_its_end_from_a_trimmed_context():
    env = WebShopEnv()
    task = env.task_ids("train")[0]
    demo = env.demonstrate(task)
    length = lambda messages: sum(len(m["content"]) for m in messages)  # noqa: E731  (characters stand in for tokens)
    whole = demo_samples(env, demo, fits=lambda m: True)
    assert len(whole) == 1 and whole[0]["kind"] == "demo"
    budget = length(whole[0]["messages"]) * 2 // 3
    full, end = demo_samples(env, demo, fits=lambda m: length(m) <= budget)
    assert full["messages"] == whole[0]["messages"]
    assert end["kind"] == "demo_end" and length(end["messages"]) <= budget
    last_action = f"Action: {demo.actions[-1]}"
    assert end["messages"][-2]["role"] == "assistant" and end["messages"][-2]["content"].endswith(last_action)
    assert end["messages"][:6] == full["messages"][:6]  # preamble + first action + its observation stay
    assert all(m["loss"] for m in end["messages"][4:] if m["role"] == "assistant")  # all but the preamble's "Ok."
