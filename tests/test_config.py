import pytest

from agentr_lib.config import ConfigError, from_dict, load_config


@pytest.mark.parametrize("params, expected", [
    ({"mcts": {"simulatons": 3}}, "unknown key 'mcts.simulatons'; allowed here: simulations"),
    ({"tasks": {"textcraft": {"trian": 3}}}, "unknown key 'tasks.textcraft.trian'; allowed here: train, test"),
    ({"tasks": {"minecraft": {}}}, "unknown key 'tasks.minecraft'; allowed here: textcraft, sciworld, webshop"),
    ({"model": {"quantization": "int8"}},
     "bad value for 'model.quantization': 'int8'; allowed: 'nf4', 'none' or 'auto'"),
    ({"envs": ["alfworld"]}, "bad value for 'envs.0': 'alfworld'; allowed:"),
    ({"envs": []}, "bad value for 'envs': [] (at least one of textcraft, sciworld, webshop, toy)"),
    ({"envs": ["webshop", "webshop"]}, "bad value for 'envs': ['webshop', 'webshop'] (each env at most once)"),
    ({"revision": {"alpha": [1.5]}}, "(each alpha must lie in [0, 1]"),  # no "Value error, " prefix
    ({"revision": {"alpha": [1.5]}}, "bad value for 'revision.alpha'"),
    ({"iterations": -1}, "bad value for 'iterations'"),
    ({"model": {"max_new_tokens": 4096}}, "bad values in 'model': max_new_tokens must be smaller than max_context"),
    ({"train": {"gradient_checkpointing": "sometimes"}}, "bad value for 'train.gradient_checkpointing'"),
])
def test_bad_params_give_one_line_naming_the_key(params, expected):
    with pytest.raises(ConfigError) as err:
        from_dict(params, "p.yaml")
    assert expected in str(err.value)
    assert "Traceback" not in str(err.value)


def test_defaults_are_the_papers():
    cfg = from_dict({})
    assert (cfg.mcts.simulations, cfg.mcts.candidates, cfg.mcts.max_depth, cfg.mcts.c_uct) == (8, 4, 20, 0.25)
    assert cfg.revision.beta == 0.2 and [cfg.alpha_at(k) for k in (1, 2, 3, 4)] == [0.5, 0.7, 1.0, 1.0]
    assert [cfg.epochs_at(k) for k in (1, 2, 3)] == [3, 1, 1] and cfg.train.eta == 0.2
    assert cfg.evaluate.max_rounds == 100 and cfg.evaluate.recovery_max_rounds == 50


@pytest.mark.parametrize("name", ["tiny", "paper", "colab"])
def test_shipped_params_files_load(name):
    cfg = load_config(f"params/{name}.yaml")
    assert cfg.run_name == name


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_hash_changes_with_results_relevant_settings():
    assert from_dict({}).hash() != from_dict({"mcts": {"simulations": 4}}).hash()


def test_overrides_reach_any_key_and_a_relative_results_dir_is_the_projects(tmp_path):
    (tmp_path / "params").mkdir()
    path = tmp_path / "params" / "p.yaml"
    path.write_text("run_name: p\nmcts: {simulations: 2, candidates: 3}\n")
    cfg = load_config(path, {"mcts": {"simulations": 4}, "train": {"weight_decay": 0.1}})
    assert (cfg.mcts.simulations, cfg.mcts.candidates, cfg.train.weight_decay) == (4, 3, 0.1)
    assert cfg.run_dir == tmp_path / "results" / "p"
    with pytest.raises(ConfigError, match="unknown key 'mcts.sims'"):
        load_config(path, {"mcts": {"sims": 4}})
    with pytest.raises(ConfigError, match="overrides: expected a mapping"):
        load_config(path, "mcts.simulations=4")
