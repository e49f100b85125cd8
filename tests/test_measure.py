"End-to-end tests of `sharpbalance-measure`: real processes on a real (tiny) `sharpbalance-train` run."
import csv, json
from functools import partial
import pytest
import helpers
from helpers import MEASURE, TRAIN, clean_error

run = partial(helpers.run, timeout=300)

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    p = tmp_path_factory.mktemp("measure")/"run"
    r = run(TRAIN, "--seed", "1 2", "--epochs", "1", "--batch_size", "256", "--quiet", "--save_path", str(p))
    assert r.returncode == 0, r.stderr
    return p

def test_writes_json_csv_table_and_never_overwrites(trained, tmp_path):
    args = ["--dataset", "digits", "--model", "cnn", "--resume", str(trained), "--mode", "disagreement", "--save", str(tmp_path)]
    r = run(MEASURE, *args)
    assert r.returncode == 0, r.stderr
    js, cs = tmp_path/"disagreement.json", tmp_path/"disagreement.csv"
    rec = json.loads(js.read_text())
    rows = list(csv.DictReader(open(cs)))
    assert [row["set"] for row in rows] == [row["set"] for row in rec["rows"]]
    assert rows[0]["set"] == "test" and rows[-1]["set"] == "ood" and len(rows) > 3
    assert rec["n_members"] == 2 and len(rec["disagreement_matrix"]["test"]) == 2
    assert all(0 <= float(row["ens_acc"]) <= 1 for row in rows)
    header = next(l for l in r.stdout.splitlines() if l.startswith("set "))
    assert "ens_acc" in header.split() and "der" in header.split() and "ood:" in r.stdout
    assert (trained/"preds_test.pt").is_file()  # predictions cached next to the checkpoints
    # a second run refuses to replace the result (even one that was edited), and says how
    js.write_text('{"mine": 1}')
    clean_error(run(MEASURE, *args), "--force")
    assert js.read_text() == '{"mine": 1}'
    r = run(MEASURE, *args, "--force")
    assert r.returncode == 0, r.stderr
    assert json.loads(js.read_text())["rows"] == rec["rows"]

@pytest.mark.parametrize("args,msg", [
    (["--mode", "ntk"], "use one of disagreement, variance_mse_c, APGD_worst"),
    (["--dataset", "cifar10", "--mode", "APGD_worst"], "trained on digits"),
])
def test_bad_input_is_one_sentence(trained, tmp_path, args, msg):
    clean_error(run(MEASURE, "--resume", str(trained), "--save", str(tmp_path), *args), msg)
    assert not list(tmp_path.iterdir())  # nothing written

def test_resume_without_checkpoints(tmp_path):
    clean_error(run(MEASURE, "--resume", str(tmp_path)), "no config.json")
    assert not list(tmp_path.iterdir())
