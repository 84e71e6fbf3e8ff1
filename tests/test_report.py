"""Report tables: ours beside the paper's, and nothing invented where nothing was measured."""
from agentr_lib import paper
from agentr_lib.report import as_markdown, revision_table, score_table


def _env(score, n):
    return {"score": score, "ci": [score - 5, score + 5], "n": n, "turns": 3.0, "loop_rate": 0.5}


EVALS = {1: {"envs": {"textcraft": _env(25.0, 4)},
             "recovery": {"envs": {"textcraft": _env(50.0, 2), "sciworld": _env(0.0, 0)}}}}


def test_scores_sit_beside_the_papers():
    table = score_table(EVALS)
    row = table.iloc[0]
    assert (row["ours"], row["95% CI"], row["n"]) == (25.0, "[20.0, 30.0]", 4)
    assert row["paper (Llama-3.1-8B)"] == paper.table6("agent_r")[1]["textcraft"]


def test_unmeasured_rows_show_a_dash_not_a_zero():
    table = score_table(EVALS, key="recovery").set_index("env")
    assert table.loc["textcraft", "ours"] == 50.0
    assert table.loc["sciworld", "n"] == 0 and table.loc["sciworld", ["ours", "95% CI", "turns"]].isna().all()
    sciworld_line = next(line for line in as_markdown(table.reset_index()).splitlines() if "sciworld" in line)
    assert "—" in sciworld_line and "nan" not in sciworld_line and " 0 " in sciworld_line  # n stays 0


def test_revision_table_sits_beside_table1_and_rounds_lengths():
    revisions = {1: {"envs": {"webshop": {"trees": 5, "pairs": 6, "revision_samples": 6, "good_samples": 7,
                                          "mean_revision_length": 8 / 3},
                              "sciworld": {"trees": 2, "pairs": 0, "revision_samples": 0, "good_samples": 2,
                                           "mean_revision_length": None}}}}
    table = revision_table(revisions).set_index("env")
    assert table.loc["webshop", "mean revision length"] == 2.67
    assert table.loc["webshop", "paper revision / good"] == "{} / {}".format(*paper.TABLE1["webshop"][1])
    assert "—" in next(line for line in as_markdown(table.reset_index()).splitlines() if "sciworld" in line)
