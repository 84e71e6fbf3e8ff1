import importlib.util
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted(Path("notebooks").glob("*.ipynb"))
STAGES = {"00_warmstart", "00_baseline", "01_collect", "02_revise", "03_train", "04_evaluate", "05_report"}


def test_every_stage_has_a_notebook():
    assert {p.stem for p in NOTEBOOKS} == STAGES


def test_committed_notebooks_are_what_the_generator_writes(tmp_path):
    spec = importlib.util.spec_from_file_location("build_notebooks", "notebooks/build_notebooks.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    written = generator.build(tmp_path)
    assert {p.name for p in written} == {p.name for p in NOTEBOOKS}
    for path in written:
        committed = json.loads((Path("notebooks") / path.name).read_text())
        assert committed == json.loads(path.read_text()), \
            f"{path.name} differs from its generator: run python notebooks/build_notebooks.py"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_thin_parameterised_and_clean(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and "params_file" in "".join(tagged[0]["source"])
    assert "overrides = {}" in "".join(tagged[0]["source"]), "papermill can override any params key"
    assert not any(c.get("outputs") for c in code), "stored outputs"
    assert nb["metadata"]["kernelspec"]["name"] == "agentr-kit"
    body = "".join("".join(c["source"]) for c in code)
    assert "stages." in body and "for " not in body, "notebooks call the library, they hold no loops"
    assert "load_config(params_file, overrides)" in body and "show.config(cfg" in body, "setup shows the config"
