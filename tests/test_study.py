"End-to-end tests of `sharpbalance-study` and `sharpbalance-demo` through the installed console scripts."
import csv
from functools import partial
from pathlib import Path
import pytest
import helpers
from helpers import STUDY, DEMO, env1, clean_error

TINY = ["--methods", "de sam", "--rho", "0.1 0.2", "--replicates", "2", "--epochs", "1", "--seed", "13 17",
        "--sharp_batches", "1", "--quiet"]

run = partial(helpers.run, env=env1())  # one OpenMP thread: see env1

def mtimes(folder): return {p: p.stat().st_mtime_ns for p in sorted(Path(folder).rglob("*.pt"))}

def test_study_grid_is_resumable(tmp_path):
    out = tmp_path/"study"
    first = run(STUDY, *TINY, "--out", str(out))
    assert first.returncode == 0, first.stderr
    rows = list(csv.DictReader(open(out/"results.csv")))
    assert len(rows) == 6  # (DE, SAM 0.1, SAM 0.2) x 2 replicates, one row each
    for r in ("0", "1"):  # paired: every method of a replicate trained the same member seeds
        assert len({row["seeds"] for row in rows if row["replicate"] == r}) == 1
    assert {row["seeds"] for row in rows} == {"13 17", "1013 1017"}
    for f in ("summary.md", "tradeoff.png"): assert (out/f).stat().st_size > 0
    assert "SAM ρ=0.2 − DE" in (out/"summary.md").read_text()
    csv_before, ck_before = (out/"results.csv").read_bytes(), mtimes(out)
    assert len(ck_before) >= 12
    again = run(STUDY, *TINY, "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert "trained 0 runs, evaluated 0, reused 6" in again.stdout
    assert (out/"results.csv").read_bytes() == csv_before and mtimes(out) == ck_before

@pytest.mark.parametrize("args,msg", [
    (["--methods", "de swag"], "unknown method"),
    (["--flat_ratio", "1.5"], "flat_ratio must be in (0, 1]"),
    (["--epochs", "5", "--initial_epochs", "4"], "initial_epochs must be in [-1, epochs - 2]"),
])
def test_study_bad_input_is_one_sentence(args, msg, tmp_path):
    clean_error(run(STUDY, *args, "--out", str(tmp_path/"s"), "--quiet"), msg)
    assert not (tmp_path/"s"/"runs").exists()

def test_demo_writes_report_and_figures(tmp_path):
    out = tmp_path/"demo"
    r = run(DEMO, "--epochs", "2", "--seed", "13 17", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    for name in ("DE", "SAM ρ=0.1", "SAM ρ=0.2", "SB ρ=0.2 T=0"): assert f"| {name} |" in r.stdout
    for f in ("tradeoff.png", "accuracy.png", "landscape.png"):
        assert (out/f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out/f).stat().st_size > 1000, f
    report = (out/"report.md").read_text()
    assert "## SharpBalance vs SAM at the same ρ" in report and "no ensemble-level number has a seed spread" in report
    assert "trained 4 runs, reused 0" in r.stdout  # (re-running reuses them: see test_study_grid_is_resumable and 40_study)

def test_demo_refuses_a_foreign_folder(tmp_path):
    (tmp_path/"mine.txt").write_text("keep me")
    clean_error(run(DEMO, "--epochs", "2", "--out", str(tmp_path)), "not a previous demo", traceback=False)
    assert (tmp_path/"mine.txt").read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
