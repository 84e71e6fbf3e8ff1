"""The run layout and its bookkeeping (layout.py), and the module structure it makes possible (no import cycles)."""
import ast
from pathlib import Path

import pytest
import yaml

from agentr_lib.config import ConfigError, from_dict
from agentr_lib.files import read_json, write_json
from agentr_lib.layout import RunLayout, check_params, is_done, plan, stage

PACKAGE = Path(__file__).resolve().parent.parent / "agentr_lib"


def config(tmp_path, **extra):
    return from_dict({"results_dir": str(tmp_path), "run_name": "r", **extra})


def test_a_finished_stage_has_its_resolved_config_beside_done(tmp_path):
    cfg = config(tmp_path, mcts={"simulations": 3})
    folder = RunLayout(cfg.run_dir).trees(1)
    with stage(cfg, folder, made=2) as info:
        assert (folder / "params.json").exists() and not is_done(folder)  # pinned from the first moment
        info.update(trees=5)
    done = read_json(folder / "DONE.json")
    assert done["made"] == 2 and done["trees"] == 5 and done["seconds"] >= 0 and "torch" in done["versions"]
    resolved = yaml.safe_load((folder / "config.yaml").read_text())
    assert resolved == cfg.to_dict() and resolved["mcts"]["simulations"] == 3 and resolved["model"]["lora_r"] == 16


def test_a_stage_that_raises_is_not_done(tmp_path):
    cfg = config(tmp_path)
    folder = RunLayout(cfg.run_dir).eval(0)
    with pytest.raises(RuntimeError), stage(cfg, folder):
        raise RuntimeError("killed")
    assert not is_done(folder) and not (folder / "config.yaml").exists()


def test_other_params_are_refused_but_throughput_knobs_are_not(tmp_path):
    folder = RunLayout(config(tmp_path).run_dir).trees(1)
    with stage(config(tmp_path), folder):
        pass
    check_params(folder, config(tmp_path, mcts={"trees_in_flight": 1}, model={"generate_batch_size": 2}))
    with pytest.raises(ConfigError, match="differing sections: mcts"):
        check_params(folder, config(tmp_path, mcts={"simulations": 2}))


def test_plan_and_paths():
    cfg = from_dict({"results_dir": "/r", "run_name": "x", "iterations": 2, "warmstart": {"enabled": True}})
    steps = plan(cfg)
    assert [s.label for s in steps] == [
        "00_warmstart", "00_baseline (iteration 0)", "01_collect (iteration 1)",
        "02_revise (iteration 1, agent_r)", "03_train (iteration 1, agent_r)", "04_evaluate (iteration 1, agent_r)",
        "01_collect (iteration 2, agent_r)", "02_revise (iteration 2, agent_r)", "03_train (iteration 2, agent_r)",
        "04_evaluate (iteration 2, agent_r)", "05_report"]
    run = RunLayout("/r/x", "agent_r")
    assert steps[3].folder == run.data(1) == Path("/r/x/agent_r/iter_1/data")
    assert steps[3].record_dir == Path("/r/x/agent_r/iter_1")
    assert steps[2].folder == run.trees(1) == Path("/r/x/iter_1/trees") and steps[2].record_dir == Path("/r/x/iter_1")
    assert steps[-1].folder is None and steps[-1].record_dir == run.report
    assert run.adapter(0) == Path("/r/x/warmstart/adapter")
    assert run.adapter(2) == Path("/r/x/agent_r/iter_2/train/adapter")


def test_a_study_shares_its_start_and_runs_its_variants_iteration_by_iteration():
    cfg = from_dict({"results_dir": "/r", "run_name": "x", "iterations": 2,
                     "study": {"variants": ["agent_r", "eto", "agent_r-single"]}})
    steps = plan(cfg)
    assert [s.folder for s in steps].count(Path("/r/x/iter_1/trees")) == 1, "iteration 1's trees: made once"
    assert [s.folder for s in steps].count(Path("/r/x/iter_0/eval")) == 1, "the baseline: evaluated once"
    assert [(s.notebook, s.variant) for s in steps if s.iteration == 2] == [
        (nb, v) for v in ("agent_r", "eto", "agent_r-single")
        for nb in ("01_collect", "02_revise", "03_train", "04_evaluate")]
    assert steps.index(next(s for s in steps if s.iteration == 1 and s.variant == "agent_r-single")) < \
        steps.index(next(s for s in steps if s.iteration == 2)), "iteration 1 of every variant comes first"
    single = RunLayout("/r/x", "agent_r-single")
    assert single.trees(2) == Path("/r/x/agent_r-single/iter_2/trees") and single.trees(1) == RunLayout("/r/x").trees(1)
    assert single.adapter(1, "webshop") == Path("/r/x/agent_r-single/iter_1/train/webshop/adapter")
    assert single.adapter(0, "webshop") == single.adapter(0) == Path("/r/x/warmstart/adapter")
    assert single.eval(0) == RunLayout("/r/x", "eto").eval(0) == Path("/r/x/iter_0/eval")


@pytest.mark.parametrize("variants, message", [([], "at least one variant"), (["agent_r", "agent_r"], "at most once"),
                                               (["agent-r"], "'agent-r' is not a variant"),
                                               (["eto-multi"], "is not a variant")])
def test_bad_variants_are_named(variants, message):
    with pytest.raises(ConfigError, match=message):
        from_dict({"study": {"variants": variants}})


def test_study_variants_do_not_pin_shared_stages(tmp_path):
    folder = RunLayout(config(tmp_path).run_dir).eval(0)
    with stage(config(tmp_path), folder):
        pass
    check_params(folder, config(tmp_path, study={"variants": ["agent_r", "direct_revision"]}))  # a variant added later


def test_metrics_are_read_per_iteration(tmp_path):
    run = RunLayout(tmp_path, "agent_r")
    write_json(run.eval(0) / "metrics.json", {"iteration": 0})
    write_json(run.eval(2) / "metrics.json", {"iteration": 2})
    write_json(run.data(2) / "metrics.json", {"alpha": 0.5})
    (run.iteration_dir(1) / "data").mkdir(parents=True)  # an iteration without metrics yet
    assert run.iterations() == [0, 1, 2]
    assert run.metrics("eval") == {0: {"iteration": 0}, 2: {"iteration": 2}}
    assert run.metrics("data") == {2: {"alpha": 0.5}}
    assert RunLayout(tmp_path, "eto").metrics("eval") == {0: {"iteration": 0}}, "the baseline is every variant's"


def imports_of(path: Path) -> set[str]:
    """agentr_lib modules that `path` imports, at the top or inside a function (a lazy import is still a dependency)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module) if p)
            found |= {module} | {f"{module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m.startswith("agentr_lib")}


def test_no_import_cycles_among_the_library_modules():
    modules = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
               for p in PACKAGE.rglob("*.py")}
    graph = {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}

    def cycle_from(start, node, seen):
        for nxt in graph[node]:
            if nxt == start:
                return [node, nxt]
            if nxt not in seen:
                seen.add(nxt)
                if (rest := cycle_from(start, nxt, seen)) is not None:
                    return [node, *rest]
        return None

    # a package's __init__ importing its own submodules is not a cycle worth reporting
    for name in graph:
        graph[name] = {m for m in graph[name] if not (graph.get(m) and m == name.rsplit(".", 1)[0])}
    cycles = [c for name in graph if (c := cycle_from(name, name, set()))]
    assert not cycles, " -> ".join(cycles[0])
