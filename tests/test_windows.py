"""Long samples cut into trimmed windows (data.fitted, data.demo_samples): every trained turn is trained."""
from agentr_lib.data import demo_samples, fitted
from agentr_lib.envs.webshop import WebShopEnv
from agentr_lib.trajectory import Step, conversation, message


def test_a_long_demo_is_cut_into_trimmed_windows_that_train_every_action():
    env = WebShopEnv()
    task = env.task_ids("train")[0]
    demo = env.demonstrate(task)
    length = lambda messages: sum(len(m["content"]) for m in messages)  # characters stand in for tokens
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


def revision_sample(bad_steps: int, good_steps: int) -> dict:
    """preamble, an untrained bad prefix, the revision turn, a trained good continuation (revision.splice's shape)."""
    bad = conversation("instruction", "first observation",
                       [Step(f"Thought: bad {i}.\nAction: b{i}", f"b{i}", f"obs b{i}") for i in range(bad_steps)])
    revision = [message("assistant", "Thought: I realize my approach was flawed.\nAction: wait", True),
                message("user", "ok.")]
    good = [m for i in range(good_steps) for m in (message("assistant", f"Thought: good {i}.\nAction: g{i}", True),
                                                    message("user", f"obs g{i}"))]
    return {"messages": bad + revision + good, "kind": "revision", "env": "textcraft", "task_id": 7}


def test_a_long_revision_sample_keeps_its_trained_turns():
    sample = revision_sample(bad_steps=6, good_steps=2)
    turns = lambda messages: len(messages)  # message count stands in for tokens
    assert fitted(sample, fits=lambda m: True) == [sample]
    [window] = fitted(sample, fits=lambda m: turns(m) <= 14)
    m = window["messages"]
    assert turns(m) <= 14 and m[:6] == sample["messages"][:6]  # preamble + first (bad) step stay
    # the revision turn and the whole good continuation (up to its last action), loss flags as they were
    assert m[-5:] == sample["messages"][-6:-1]
    assert [x for x in m if x["loss"]] == [x for x in sample["messages"] if x["loss"]]
    assert (window["kind"], window["window"], window["task_id"]) == ("revision", 0, 7)
    # a budget too small for the whole continuation: windows that together train every trained turn
    windows = fitted(sample, fits=lambda m: turns(m) <= 10)
    assert len(windows) == 2 and all(turns(w["messages"]) <= 10 for w in windows)
    trained = [x["content"] for w in windows for x in w["messages"] if x["loss"]]
    assert sorted(set(trained)) == sorted(x["content"] for x in sample["messages"] if x["loss"])
    assert all(w["kind"] == "revision" for w in windows)


def test_general_chat_samples_are_never_windowed():
    chat = {"messages": [message("user", "hi " * 50), message("assistant", "hello", True)], "kind": "general"}
    assert fitted(chat, fits=lambda m: False) == [chat]
