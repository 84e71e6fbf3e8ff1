"""Bad inputs are named before any work, corrupt artefacts are named (or redone), never a traceback wall.

Params: one line per problem, `<params file>: bad value for '<key>': <value> (<what is allowed>)`, from load_config
(so the CLI exits 2 before any stage, and a notebook's setup cell fails at once). Artefacts: a resume redoes a file
that does not read back; a reader names it and says how to redo it (files.CorruptArtefact, a ConfigError).
"""
import hashlib
import json
import time

import pytest
import yaml

from agentr_lib.config import ConfigError, MCTSCfg, deep_merge, load_config
from agentr_lib.envs.base import StepResult, TextEnv
from agentr_lib.files import CorruptArtefact, read_json, write_json

TINY = yaml.safe_load(open("params/tiny.yaml"))


def params_file(tmp_path, extra: dict, base: dict | None = None):
    """A params file (tiny.yaml + `extra`) in tmp_path/params, writing under tmp_path/results."""
    path = tmp_path / "params" / "p.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(deep_merge(TINY if base is None else base,
                                              {"results_dir": str(tmp_path / "results"), **extra})))
    return path


def refusal(tmp_path, extra: dict, base: dict | None = None) -> str:
    path = params_file(tmp_path, extra, base)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "Traceback" not in message
    return message


# --- params -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra, expected", [
    ({"envs": []}, "bad value for 'envs': [] (at least one of textcraft, sciworld, webshop, toy)"),
    ({"envs": ["webshop", "webshop"]}, "bad value for 'envs': ['webshop', 'webshop'] (each env at most once)"),
    ({"tasks": {"textcraft": {"test": 100000}}},
     "bad value for 'tasks.textcraft.test': 100000 (at most 31: textcraft's test split has 31 tasks with env_kwargs "
     "{'max_goal_depth': 1})"),
    ({"tasks": {"textcraft": {"train": 95}}}, "bad value for 'tasks.textcraft.train': 95 (at most 94:"),
    # demonstrations: the train split (94) minus the MCTS tasks (3)
    ({"tasks": {"textcraft": {"demos": 92}}},
     "bad value for 'tasks.textcraft.demos': 92 (at most 91 for textcraft: demonstrations come from its train split"),
    ({"tasks": {"textcraft": {"demos": None, "train": None}}}, "bad value for 'warmstart.demos_per_env': 5 (at most 0"),
    ({"tasks": {"webshop": {"test": 201}}}, "bad value for 'tasks.webshop.test': 201 (at most 200:"),
    ({"tasks": {"webshop": {"train": 3931}}}, "bad value for 'tasks.webshop.train': 3931 (at most 3930:"),
    ({"tasks": {"sciworld": {"test": 16}}}, "bad value for 'tasks.sciworld.test': 16 (at most 15: sciworld's test"),
    ({"tasks": {"sciworld": {"train": 177}}}, "bad value for 'tasks.sciworld.train': 177 (at most 176:"),
    ({"tasks": {"textcraft": {"env_kwargs": {"max_depth": 2}}}},
     "unknown key 'tasks.textcraft.env_kwargs.max_depth'; allowed here: max_goal_depth, min_goal_depth"),
    ({"tasks": {"webshop": {"env_kwargs": {"pages": 3}}}},
     "unknown key 'tasks.webshop.env_kwargs.pages'; allowed here: data_dir, num_products, seed, products_per_page"),
    ({"tasks": {"sciworld": {"env_kwargs": {"task_type": ["7-1"]}}}},
     "unknown key 'tasks.sciworld.env_kwargs.task_type'; allowed here: step_limit, java_options, mapping_cache_size, "
     "task_types"),
    ({"tasks": {"webshop": {"env_kwargs": {"products_per_page": "3"}}}},
     "bad value for 'tasks.webshop.env_kwargs.products_per_page': '3' (expected int)"),
    ({"tasks": {"webshop": {"env_kwargs": {"products_per_page": 0}}}},
     "bad value for 'tasks.webshop.env_kwargs': {'products_per_page': 0} (products_per_page must be >= 1)"),
    ({"tasks": {"webshop": {"env_kwargs": {"data_dir": "/no/such/folder"}}}}, "is not a folder"),
    ({"tasks": {"textcraft": {"env_kwargs": {"max_goal_depth": 0}}}},
     "bad value for 'tasks.textcraft.env_kwargs': {'max_goal_depth': 0} (max_goal_depth=0 < min_goal_depth=1"),
    ({"tasks": {"sciworld": {"env_kwargs": {"task_types": ["boil"]}}}},  # 1-1: no test task (Agent-R's ids)
     "bad value for 'tasks.sciworld.env_kwargs': {'task_types': ['boil']} (sciworld's test split has no task with "
     "env_kwargs {'task_types': ['boil']})"),
    ({"tasks": {"sciworld": {"env_kwargs": {"task_types": ["7-1", "grow-plant", "99-9"]}}}},
     "bad value for 'tasks.sciworld.env_kwargs.task_types': ['grow-plant', '99-9'] (unknown task types; choose from "
     "1-1 (boil), 1-2 (melt)"),
    ({"tasks": {"sciworld": {"env_kwargs": {"task_types": []}}}},
     "bad value for 'tasks.sciworld.env_kwargs.task_types': [] (none given; choose from 1-1 (boil)"),
    ({"train": {"general_data": "no/such.jsonl"}},
     "bad value for 'train.general_data': 'no/such.jsonl' (no such file (relative paths are read from"),
])
def test_bad_params_are_refused_on_load_naming_the_key(tmp_path, extra, expected):
    assert expected in refusal(tmp_path, extra)


def test_every_problem_is_named_at_once_and_only_envs_in_use_are_checked(tmp_path):
    message = refusal(tmp_path, {"tasks": {"textcraft": {"test": 32}, "webshop": {"test": 201}}})
    assert len(message.splitlines()) == 2 and "tasks.textcraft.test" in message and "tasks.webshop.test" in message
    # sciworld is not run: its bad settings are not this run's business
    load_config(params_file(tmp_path, {"envs": ["textcraft"], "tasks": {"sciworld": {
        "test": 100000, "env_kwargs": {"task_types": ["nope"]}}}}))


def test_counts_that_fit_pass_and_the_check_is_cheap(tmp_path):
    load_config(params_file(tmp_path, {"tasks": {"textcraft": {"train": 3, "test": 31, "demos": 91},
                                                 "sciworld": {"test": 15, "train": 168, "demos": 8}}}))
    start = time.perf_counter()
    cfg = load_config("params/tiny.yaml")  # all three envs; no JVM, no model, no search index
    assert time.perf_counter() - start < 2.0 and cfg.envs == ["textcraft", "webshop", "sciworld"]


# general data: the first records are read, for the shape data.load_general_data reads
def sharegpt(n=3):
    return [{"id": str(i), "conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": "a"}]}
            for i in range(n)]


@pytest.mark.parametrize("text, expected", [
    ("this is not json\n", "neither a JSON list nor JSONL (line 1:"),
    ('[{"conversations": []}, {"conv', "not a JSON list ("),
    ("[]", "holds no records"),
    ('[{"text": "hello"}]', "record 0 has neither 'conversations' nor 'messages' (keys: text); expected ShareGPT"),
    ('["hello"]', "record 0 is a str, not a record"),
    ('{"messages": "hi"}\n', "record 0: 'messages' is not a list of turns"),
])
def test_a_malformed_general_data_file_is_refused_on_load(tmp_path, text, expected):
    data = tmp_path / "general.json"
    data.write_text(text)
    message = refusal(tmp_path, {"train": {"general_data": str(data)}})
    assert f"bad value for 'train.general_data': '{data}' (" in message and expected in message


def test_a_well_formed_general_data_file_passes_and_its_full_read_names_later_problems(tmp_path):
    from agentr_lib.data import load_general_data
    good = tmp_path / "g.json"
    good.write_text(json.dumps(sharegpt()))
    jsonl = tmp_path / "g.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in sharegpt()))
    for path in (good, jsonl):
        load_config(params_file(tmp_path, {"train": {"general_data": str(path)}}))
        assert len(load_general_data(path)) == 3
    # past the first records (beyond the probe), the train stage's full read names the problem
    late = tmp_path / "late.jsonl"
    late.write_text("\n".join(json.dumps(r) for r in sharegpt(30)) + '\n{"text": "x"}\n{"broken\n')
    load_config(params_file(tmp_path, {"train": {"general_data": str(late)}}))
    with pytest.raises(ConfigError, match=r"train.general_data: .*late.jsonl: neither a JSON list nor JSONL \(line 32"):
        load_general_data(late)
    late.write_text("\n".join(json.dumps(r) for r in sharegpt(30)) + '\n{"text": "x"}\n')
    with pytest.raises(ConfigError, match="record 30 has neither 'conversations' nor 'messages'"):
        load_general_data(late)
    useless = tmp_path / "useless.json"
    useless.write_text(json.dumps([{"conversations": [{"from": "gpt", "value": "only a reply"}]}]))
    with pytest.raises(ConfigError, match="none of its 1 conversations is usable"):
        load_general_data(useless)


def test_the_cli_refuses_bad_params_before_any_stage(tmp_path, capsys):
    from agentr_lib.pipeline import main
    path = params_file(tmp_path, {"envs": []})
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'envs'" in err and "at least one of" in err and "Traceback" not in err
    assert not (tmp_path / "results").exists()
    path = params_file(tmp_path, {"tasks": {"textcraft": {"env_kwargs": {"max_depth": 2}}}})
    assert main([str(path), "--set", "tasks.webshop.test=100000"]) == 2
    err = capsys.readouterr().err
    assert "tasks.textcraft.env_kwargs.max_depth" in err and "tasks.webshop.test" in err and "Traceback" not in err
    assert not (tmp_path / "results").exists()


@pytest.mark.skipif(__import__("shutil").which("java") is None, reason="no Java runtime")
def test_sciworld_catalogue_matches_the_simulator():
    """The table behind the JVM-free sciworld checks is what the simulator says (task names, variations, the
    package's train split), and its counts are SciWorldEnv.task_ids' for any task_types."""
    from agentr_lib.envs import make_env
    from agentr_lib.envs.sciworld import CATALOGUE, EXCLUDED_TASKS, _package_train_variations, split_sizes
    env = make_env("sciworld")
    try:
        sim = env._sim
        train = _package_train_variations(sim)
        actual = {key: (name, sim.get_max_variations(name), len(train[name]))
                  for key, name in sim.tasks.items() if key not in EXCLUDED_TASKS}
        assert actual == CATALOGUE
        assert all(train[name] == frozenset(range(n)) for name, _, n in CATALOGUE.values())  # the first n
        ids = {split: env.task_ids(split) for split in ("train", "test")}
        for types in (None, ["7-1", "7-2", "7-3"], ["lifespan-longest-lived"], ["4-1", "boil", "8-2"]):
            names = None if types is None else {CATALOGUE.get(t, (t,))[0] for t in types}
            want = {split: sum(names is None or env.games[i].task_name in names for i in found)
                    for split, found in ids.items()}
            assert split_sizes(types) == want, types
    finally:
        env.close()


# --- corrupt artefacts ----------------------------------------------------------------------------------------------
class ChoiceEnv(TextEnv):
    """Say "a" then "b" to win (a stand-in of test_mcts's)."""
    name = "choice"
    instruction = "Say a, then b."

    def task_ids(self, split):
        return list(range(4))

    def reset(self, task_id):
        self.history = []
        return f"task {task_id}: say a then b"

    def step(self, action):
        self.history.append(action)
        if self.history == ["a", "b"]:
            return StepResult("solved", 1.0, True)
        return StepResult("at " + "/".join(self.history), 0.0, False)


class HashPolicy:
    """Replies that depend only on the conversation, like a seeded sampler."""

    def generate(self, conversations, num_samples=1, temperature=1.0, max_new_tokens=None, seeds=None, stop="action"):
        out = []
        for conv in conversations:
            digits = hashlib.sha256(json.dumps(conv).encode()).digest()
            out.append([f"Thought: {d % 3}\nAction: {'abc'[d % 3]}" for d in digits[:num_samples]])
        return out


def test_json_that_does_not_parse_is_named_with_how_to_redo_it(tmp_path):
    stage = tmp_path / "iter_2" / "trees"
    write_json(stage / "DONE.json", {})
    bad = stage / "textcraft" / "3.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"env": "textcraft", "nod')
    with pytest.raises(CorruptArtefact) as err:
        read_json(bad)
    assert str(err.value).startswith(f"{bad} is unreadable (not valid JSON: ")
    assert str(err.value).endswith(f"delete it and {stage / 'DONE.json'}, then re-run 01_collect")
    assert isinstance(err.value, ConfigError)


def test_a_truncated_tree_is_searched_again_and_named_by_its_readers(tmp_path, caplog):
    from agentr_lib.mcts import collect_trees, load_tree, load_trees
    settings = MCTSCfg(simulations=2, candidates=2, max_depth=3, trees_in_flight=2)
    out = tmp_path / "iter_1" / "trees"

    def collect():
        return collect_trees({"choice": [0, 1, 2]}, lambda name: ChoiceEnv(), HashPolicy(), settings, out, seed=3,
                             progress=False)["envs"]["choice"]

    assert collect()["trees"] == 3
    whole = (out / "choice" / "1.json").read_bytes()
    (out / "choice" / "1.json").write_bytes(whole[:len(whole) // 2])  # truncated
    (out / "choice" / "2.json").write_text('{"env": "choice"}')  # JSON, but not a tree
    with pytest.raises(CorruptArtefact, match=r"1.json is unreadable \(not valid JSON"):
        load_trees(out, ["choice"])
    with pytest.raises(CorruptArtefact, match=r"2.json is unreadable \(not a tree: KeyError"):
        load_tree(out / "choice" / "2.json")
    stats = collect()  # the resume redoes both, the same as before
    assert stats["trees"] == 2 and stats["skipped"] == 1
    assert (out / "choice" / "1.json").read_bytes() == whole and len(load_trees(out, ["choice"])) == 3
    assert "1.json is unreadable" in caplog.text and "redoing it" in caplog.text
    # in a finished stage, the reader (02_revise's load_trees) says to delete the file and the stage's DONE.json
    write_json(out / "DONE.json", {})
    (out / "choice" / "0.json").write_text("")
    with pytest.raises(CorruptArtefact) as err:
        load_trees(out, ["choice"])
    assert f"delete it and {out / 'DONE.json'}, then re-run 01_collect: only that task is searched again" \
        in str(err.value)


def test_a_truncated_episode_is_played_again_and_named_by_its_reader(tmp_path):
    from agentr_lib.evaluate import EpisodePlan, load_episodes, play_episodes
    out = tmp_path / "iter_0" / "eval"
    plans = [EpisodePlan("choice", t, out / "choice", max_rounds=3, seed=t) for t in range(3)]

    def play():
        play_episodes(plans, HashPolicy(), lambda name: ChoiceEnv(), 1.0, in_flight=2, label=None)

    play()
    first = {p.name: p.read_bytes() for p in (out / "choice").iterdir()}
    (out / "choice" / "2.json").write_bytes(first["2.json"][:10])
    with pytest.raises(CorruptArtefact, match="2.json is unreadable .*: delete it and re-run 00_baseline"):
        load_episodes(out / "choice")
    play()
    assert {p.name: p.read_bytes() for p in (out / "choice").iterdir()} == first
    write_json(out / "DONE.json", {})
    (out / "choice" / "0.json").write_text("[1, 2]")
    with pytest.raises(CorruptArtefact, match=r"0.json is unreadable \(not an episode: AttributeError.*then re-run "
                                              "00_baseline"):
        load_episodes(out / "choice")


@pytest.mark.parametrize("files, expected", [
    ({"adapter_config.json": "{}"}, "a LoRA adapter folder without adapter_model.safetensors"),
    ({}, "a LoRA adapter folder without adapter_config.json and adapter_model.safetensors"),
    ({"adapter_config.json": "{", "adapter_model.safetensors": "x"}, "adapter_config.json is unreadable (not valid"),
    ({"adapter_config.json": "{}", "adapter_model.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}"},
     "adapter_model.safetensors is unreadable (not a safetensors file"),
])
def test_an_adapter_folder_without_its_weights_is_named_before_the_model_loads(tmp_path, files, expected):
    from agentr_lib.actor import load_actor
    from agentr_lib.config import ModelCfg
    adapter = tmp_path / "iter_1" / "train" / "adapter"
    adapter.mkdir(parents=True)
    write_json(adapter.parent / "DONE.json", {})
    for name, content in files.items():
        (adapter / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(CorruptArtefact) as err:
        load_actor(ModelCfg(name="no-such-model-is-ever-loaded"), adapter=adapter)
    assert expected in str(err.value)
    assert str(err.value).endswith(f"delete it and {adapter.parent / 'DONE.json'}, then re-run 03_train")


def test_a_whole_adapter_folder_passes_the_check(tmp_path):
    import torch
    from safetensors.torch import save_file

    from agentr_lib.models import check_adapter
    write_json(tmp_path / "adapter_config.json", {"peft_type": "LORA"})
    save_file({"w": torch.zeros(2)}, str(tmp_path / "adapter_model.safetensors"))
    check_adapter(tmp_path)
    (tmp_path / "adapter_model.safetensors").write_bytes((tmp_path / "adapter_model.safetensors").read_bytes()[:-4])
    with pytest.raises(CorruptArtefact, match="not a safetensors file"):
        check_adapter(tmp_path)


def test_a_half_written_dataset_is_named(tmp_path):
    from agentr_lib.data import load_data, save_data
    samples = [{"messages": [{"role": "user", "content": "q", "loss": False},
                             {"role": "assistant", "content": "a", "loss": True}], "kind": "general"}] * 3
    data = tmp_path / "iter_1" / "data"
    save_data(samples, data / "dataset")
    write_json(data / "DONE.json", {})
    assert len(load_data(data / "dataset")) == 3
    arrow = next((data / "dataset").glob("*.arrow"))
    whole = arrow.read_bytes()
    arrow.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(CorruptArtefact, match=r"dataset is unreadable \(datasets cannot read it: .*re-run 02_revise"):
        load_data(data / "dataset")
    arrow.unlink()
    with pytest.raises(CorruptArtefact, match=r"without its data files \(data-00000-of-00001.arrow\)"):
        load_data(data / "dataset")
    (data / "dataset" / "state.json").unlink()
    with pytest.raises(CorruptArtefact, match=r"dataset is unreadable \(a dataset folder without state.json\): delete "
                                              r"it and .*DONE.json, then re-run 02_revise"):
        load_data(data / "dataset")
