"""The report of a study: every variant beside the paper's rows, in report.md and a self-contained report.html, from
metrics files only (tests/fixtures/study: a run folder of every variant, 2 iterations + the baseline, 2 envs)."""
import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from agentr_lib import paper, report  # noqa: E402
from agentr_lib.config import Variant, from_dict  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "study"
VARIANTS = ["agent_r", "direct_revision", "optimal", "optimal_good", "eto", "agent_r-single"]
ENVS = ["textcraft", "sciworld"]


def a_study(root: Path, variants=VARIANTS):
    """The fixture copied to `root/study`, and the Config that reads it (results_dir = root)."""
    shutil.copytree(FIXTURE, root / "study")
    return from_dict({"results_dir": str(root), "run_name": "study", "envs": ENVS, "iterations": 2,
                      "study": {"variants": variants}})


def fixture_eval(variant: str, k: int) -> dict:
    folder = FIXTURE / ("iter_0" if k == 0 else f"{variant}/iter_{k}") / "eval"
    return json.loads((folder / "metrics.json").read_text())


def cell(m: dict) -> str:
    """How the report writes one measured env: score [CI]."""
    return f"{m['score']:.2f} [{m['ci'][0]:.1f}, {m['ci'][1]:.1f}]"


def md_row(md: str, *first_cells: str) -> list[str]:
    """The cells of the first Markdown table row that starts with `first_cells`."""
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[:len(first_cells)] == list(first_cells):
            return cells
    raise AssertionError(f"no row {first_cells}")


def rows_of(table, **match):
    for key, value in match.items():
        table = table[table[key] == value]
    return table.to_dict("records")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    cfg = a_study(tmp_path_factory.mktemp("full"))
    return cfg, report.render_report(cfg)


def test_table2_has_every_variant_at_its_last_iteration_beside_the_papers_row(rendered):
    cfg, written = rendered
    table = report.table2(report.load_study(cfg).evals, ENVS)
    md = Path(written["report"]).read_text()
    expected_paper = {"agent_r": ("paper: + Agent-R", paper.TABLE2["+ Agent-R"]),
                      "direct_revision": ("paper: + Direct-Revision", paper.TABLE2["+ Direct-Revision"]),
                      "eto": ("paper: + ETO", paper.TABLE2["+ ETO"]),
                      "agent_r-single": ("paper: Table 6, agent_r single-task", paper.TABLE6_SINGLE["agent_r"][3])}
    for variant in VARIANTS:
        (ours,) = rows_of(table, variant=variant, source="ours")
        m = fixture_eval(variant, 2)
        assert ours["iteration"] == 2 and ours["n"] == "5/5"
        assert [ours[e] for e in ENVS] == [cell(m["envs"][e]) for e in ENVS]
        assert ours["average"] == f"{m['average']:.2f}"
        (theirs,) = rows_of(table, variant=variant, source=expected_paper.get(variant, ("paper: not in Table 2",))[0])
        if variant in expected_paper:
            ref = expected_paper[variant][1]
            assert [theirs[e] for e in [*ENVS, "average"]] == [f"{ref[e]:.2f}" for e in [*ENVS, "average"]]
        else:  # optimal, optimal_good: the paper has no Table 2 row
            assert all(theirs[e] is None for e in [*ENVS, "average"])
        assert all(ours[e] in md for e in ENVS)
    base = rows_of(table, variant="baseline")
    assert [r["source"] for r in base] == ["ours", f"paper: {paper.BASE}"]
    assert base[0]["textcraft"] == cell(fixture_eval(None, 0)["envs"]["textcraft"])
    assert base[1]["textcraft"] == "26.00" and base[1]["average"] == "20.00"
    assert md_row(md, "optimal_good", "paper: not in Table 2")[2:] == ["—"] * 5


def test_table3_has_every_variant_and_iteration_beside_the_papers_recovery(rendered):
    cfg, written = rendered
    table = report.table3(report.load_study(cfg).evals, ENVS, cfg.iterations)
    for variant in VARIANTS:
        for k in (1, 2):
            (ours,) = rows_of(table, variant=variant, iteration=k, source="ours")
            m = fixture_eval(variant, k)["recovery"]["envs"]
            assert ours["textcraft"] == cell(m["textcraft"])
            assert ours["sciworld"] is None and ours["n"] == "3/0", "n = 0 (no baseline failure): a dash, not 0"
    (ar,) = rows_of(table, variant="agent_r", iteration=2, source="paper: agent_r iter 2")
    assert (ar["textcraft"], ar["sciworld"], ar["average"]) == ("35.14", "45.22", "42.62")
    (dr,) = rows_of(table, variant="direct_revision", iteration=1, source="paper: direct_revision iter 1")
    assert (dr["textcraft"], dr["sciworld"], dr["average"]) == ("11.35", "19.09", "23.57")
    (opt,) = rows_of(table, variant="optimal", source="paper: Llama-3.1-8B + Optimal (self-generated r=1)")
    assert (opt["textcraft"], opt["sciworld"], opt["average"]) == ("0.00", "1.15", "10.84")
    (eto,) = rows_of(table, variant="eto", source="paper: Llama-3.1-8B + ETO")
    assert (eto["sciworld"], eto["average"]) == ("3.47", "13.08")
    for variant in ("optimal_good", "agent_r-single"):  # the paper has no row to compare with: a row of dashes
        (none,) = [r for r in rows_of(table, variant=variant) if r["source"].startswith("paper: none")]
        assert none["textcraft"] is None
    md = Path(written["report"]).read_text()
    assert "## Error recovery (Table 3)" in md and "paper: Llama-3.1-8B + ETO" in md and "35.14" in md


def test_single_vs_multi_per_iteration_beside_table6(rendered):
    cfg, written = rendered
    table = report.table6(report.load_study(cfg).evals, ENVS, cfg.iterations)
    assert set(table["method"]) == {"agent_r"}, "only a method the study runs as -single"
    for k in (1, 2):
        for setting, variant in (("multi", "agent_r"), ("single", "agent_r-single")):
            (ours,) = rows_of(table, iteration=k, setting=setting, source="ours")
            assert ours["textcraft"] == cell(fixture_eval(variant, k)["envs"]["textcraft"])
            (theirs,) = rows_of(table, iteration=k, setting=setting, source="paper")
            ref = (paper.TABLE6_SINGLE if setting == "single" else paper.TABLE6_MULTI)["agent_r"][k]
            assert theirs["sciworld"] == f"{ref['sciworld']:.2f}"
    assert rows_of(table, iteration=1, setting="single", source="paper")[0]["textcraft"] == "60.00"
    md = Path(written["report"]).read_text()
    assert "## Single- vs multi-task per iteration (Table 6, Figure 6)" in md and "single_vs_multi.png" in md


def test_table1_per_variant_iteration_and_env_beside_the_papers_with_verdict_sources(rendered):
    cfg, _ = rendered
    table = report.revision_table(report.load_study(cfg).revisions)
    assert set(table["variant"]) == set(VARIANTS)
    (ar,) = rows_of(table, variant="agent_r", iteration=2, env="sciworld")
    assert (ar["revision"], ar["good"], ar["paper revision / good"]) == (8, 4, "4200 / 1800")
    assert (ar["verdicts parsed / chosen"], ar["mean revision length"]) == ("12 / 5", 1.75)
    (opt,) = rows_of(table, variant="optimal", iteration=1, env="textcraft")
    assert opt["paper revision / good"] is None and opt["verdicts parsed / chosen"] is None, "no verifier ran"


def test_the_header_says_what_was_run_and_that_a_small_model_scores_far_below(rendered):
    _, written = rendered
    md = Path(written["report"]).read_text()
    head = md.split("## Main results")[0]
    assert "`smollm2-135m`" in head and "textcraft, sciworld" in head and "2 planned" in head
    assert all(f"`{v}`" in head for v in VARIANTS)
    assert "far below" in head and "Llama-3.1-8B" in head and "never rescaled" in head


def test_html_is_one_self_contained_file_with_the_same_numbers(rendered):
    cfg, written = rendered
    page = Path(written["html"]).read_text()
    assert page.count('<img src="data:image/png;base64,') == len(written["figures"])
    for external in ('src="http', "href=", "<link", "<script", "url("):
        assert external not in page
    evals = report.load_study(cfg).evals
    for table in (report.table2(evals, ENVS), report.table3(evals, ENVS, 2)):
        for value in table[ENVS].to_numpy().ravel():
            assert value is None or f">{value}<" in page
    assert "<table" in page and "<h2>Main results (Table 2 layout)</h2>" in page


def test_every_figure_is_a_real_png(rendered):
    from PIL import Image
    _, written = rendered
    names = {Path(f).stem for f in written["figures"]}
    assert names == {"scores", "single_vs_multi", "recovery", "loops", "trajectories", "revision_length",
                     "training_loss", "mask_audit"}
    for f in written["figures"]:
        data = Path(f).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
        with Image.open(f) as im:
            assert min(im.size) > 200


def test_a_partial_study_renders_with_dashes(tmp_path):
    """One variant never evaluated, one not in the folder at all, an unreadable metrics file, a missing training."""
    cfg = a_study(tmp_path, VARIANTS + ["direct_revision-single"])
    run = tmp_path / "study"
    for k in (1, 2):
        (run / f"optimal_good/iter_{k}/eval/metrics.json").unlink()
    (run / "eto/iter_2/eval/metrics.json").write_text("{not json")
    shutil.rmtree(run / "agent_r/iter_2/train")
    written = report.render_report(cfg)
    md = Path(written["report"]).read_text()
    assert md_row(md, "optimal_good", "ours")[2:] == ["—"] * 5, "iteration, both envs, average, n: dashes"
    assert "- `optimal_good`: not evaluated yet" in md and "- `direct_revision-single`: not evaluated yet" in md
    assert "unreadable:" in md and "eto/iter_2/eval/metrics.json" in md
    table = report.table2(report.load_study(cfg).evals, ENVS)
    assert rows_of(table, variant="eto", source="ours")[0]["iteration"] == 1, "its last readable iteration"
    single = report.table6(report.load_study(cfg).evals, ENVS, cfg.iterations)
    assert set(single["method"]) == {"agent_r", "direct_revision"}
    assert all(r["textcraft"] is None for r in rows_of(single, method="direct_revision", setting="single",
                                                       source="ours"))
    stages = [s.label for s in report.load_study(cfg).training]
    assert "agent_r iter 1" in stages and "agent_r iter 2" not in stages, "a missing training is left out"
    assert Path(written["html"]).exists()


def test_an_empty_study_renders(tmp_path):
    cfg = from_dict({"results_dir": str(tmp_path), "run_name": "empty", "envs": ENVS, "study": {"variants": VARIANTS}})
    written = report.render_report(cfg)
    md = Path(written["report"]).read_text()
    assert written["figures"] == [] and "the baseline (iteration 0) is not evaluated yet" in md
    assert "nothing to draw yet" in md and Path(written["html"]).exists()


def test_long_scores_table_shows_the_baseline_once_and_variants_side_by_side(rendered):
    cfg, _ = rendered
    table = report.score_table(report.load_study(cfg).evals)
    assert len(rows_of(table, iteration=0)) == len(ENVS) + 1, "baseline: its envs and average, once"
    at = rows_of(table, iteration=1, env="textcraft")
    assert [r["variant"] for r in at] == VARIANTS
    assert at[0]["paper (Llama-3.1-8B)"] == "64.00" and at[2]["paper (Llama-3.1-8B)"] is None


def test_unmeasured_rows_show_a_dash_not_a_zero():
    m = {"score": 0.0, "ci": [0.0, 0.0], "n": 0, "turns": 0.0, "loop_rate": 0.0}
    evals = {"agent_r": {1: {"envs": {}, "recovery": {"envs": {"sciworld": m}, "average": None}}}}
    table = report.score_table(evals, key="recovery")
    (row,) = rows_of(table, env="sciworld")
    assert row["n"] == 0 and row["ours"] is None and row["95% CI"] is None
    line = next(x for x in report.as_markdown(table).splitlines() if "sciworld" in x)
    assert "—" in line and "nan" not in line and " 0 " in line  # n stays 0


def test_revision_table_rounds_lengths_and_dashes_what_is_missing():
    revisions = {"agent_r": {1: {"envs": {"webshop": {"trees": 5, "pairs": 6, "revision_samples": 6,
                                                      "good_samples": 7, "mean_revision_length": 8 / 3},
                                          "sciworld": {"trees": 2, "pairs": 0, "revision_samples": 0,
                                                       "good_samples": 2, "mean_revision_length": None}}}},
                 "eto": {}}
    table = report.revision_table(revisions)
    assert rows_of(table, env="webshop")[0]["mean revision length"] == 2.67
    assert rows_of(table, env="webshop")[0]["paper revision / good"] == "{} / {}".format(*paper.TABLE1["webshop"][1])
    assert "—" in next(x for x in report.as_markdown(table).splitlines() if "sciworld" in x)
    assert rows_of(table, variant="eto")[0]["iteration"] is None, "not revised yet: a row of dashes"


def test_the_papers_averages_are_the_mean_of_its_three_envs():
    """A typo in a copied number shows up as an average that no longer fits (the paper's are means of three)."""
    tables = [paper.TABLE2, paper.TABLE3_ROWS, *paper.TABLE3.values(), *paper.TABLE6_MULTI.values(),
              *paper.TABLE6_SINGLE.values()]
    for row in (r for t in tables for r in t.values()):
        assert abs(sum(row[e] for e in paper.ENVS) / 3 - row["average"]) < 0.01, row
    assert paper.TABLE6_MULTI["agent_r"][3] == paper.TABLE2["+ Agent-R"]
    assert paper.TABLE6_MULTI["direct_revision"][3] == paper.TABLE2["+ Direct-Revision"]
    assert {Variant(v).method for v in paper.TABLE2_ROW} <= set(paper.TABLE6_MULTI) | {"eto"}
