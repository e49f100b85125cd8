"""`sharpbalance-train` with the single-basin methods (spawn, connected, distill): real processes end to end, a real
kill -9 and a bit-identical resume for each method, spawn and distill under torchrun, and bad input (exit 2, one
sentence, nothing written)."""
import json, os, signal, subprocess, time
from pathlib import Path
import pytest, torch
from helpers import TRAIN, run, env1, clean_error, torchrun

# tiny runs on the built-in digits (1,000 training images): width-8 CNN, batch 32, one thread per process
BASE = ["--data", "digits", "--model", "cnn", "--width", "8", "--lr", "0.05", "--batch_size", "32", "--lrsche", "cosine",
        "--device", "cpu", "--quiet"]
TEACHER = BASE + ["--method", "de", "--seed", "13 17 27", "--epochs", "3"]

def spawn_args(epochs=6): return BASE + ["--method", "spawn", "--seed", "13 17 27", "--epochs", str(epochs), "--spawn_epoch", "2"]
def connected_args(epochs=6): return BASE + ["--method", "connected", "--seed", "13 17 27", "--epochs", str(epochs), "--lam", "1"]
def distill_args(teacher, epochs=6): return BASE + ["--method", "distill", "--seed", "13 17", "--epochs", str(epochs), "--teacher", str(teacher), "--lam", "0.5"]

def weights(folder):
    "The members' weights, in the order summary.json names them."
    folder = Path(folder); ids = json.loads((folder/"summary.json").read_text())["members"]
    return [torch.load(folder/(f"track{k}.pt" if e is None else f"track{k}_epoch{e}.pt"), weights_only=True)["model"] for k, e in ids]

def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for n in x: assert torch.equal(x[n], y[n]), n

def trained(args, folder):
    r = run(TRAIN, *args, "--save_path", str(folder), env=env1())
    assert r.returncode == 0, r.stderr
    return folder

@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return trained(TEACHER, tmp_path_factory.mktemp("teacher")/"de")

@pytest.fixture(scope="module")
def full(teacher, tmp_path_factory):
    "One uninterrupted one-process run of each method (distill from the spawn run's spawn point): the references the other tests compare with."
    root = tmp_path_factory.mktemp("full")
    sp = trained(spawn_args(6), root/"spawn")
    args = {"spawn": spawn_args(6), "connected": connected_args(5),
            "distill": distill_args(teacher, 6) + ["--anchor", "spawn", "--anchor_run", str(sp)]}
    return {m: (a, sp if m == "spawn" else trained(a, root/m)) for m, a in args.items()}

def test_end_to_end(full):
    "Each method trains from the command line into a run folder that load_ensemble reads back."
    from sharpbalance.learner import load_ensemble
    import sharpbalance.methods.basin  # noqa: F401  (registers the methods in this process)
    sp, co, di = (full[m][1] for m in ("spawn", "connected", "distill"))
    summ = json.loads((sp/"summary.json").read_text())
    assert summ["method"] == "spawn" and summ["members"] == [[1, None], [2, None], [3, None]] and summ["spawn_epoch"] == 2
    assert (sp/"track0_epoch2.pt").exists() and len((sp/"track0.csv").read_text().splitlines()) == 3
    log = (co/"track0.csv").read_text().splitlines()
    assert "penalty" in log[0].split(",") and len(log) == 6
    assert json.loads((di/"summary.json").read_text())["anchor"] == "spawn"
    for folder, method, m in ((sp, "spawn", 3), (co, "connected", 3), (di, "distill", 2)):
        cfg, models = load_ensemble(folder)
        assert cfg.method == method and len(models) == m

def _kill_once(args, folder, poll):
    "Start a run, kill -9 it once `poll(folder)` is true, and check it had not finished."
    proc = subprocess.Popen([TRAIN, *args, "--save_path", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=env1())
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            try:
                if poll(folder): break
            except Exception: pass  # a poll must not fail the test (checkpoints are atomic, but a folder may be half made)
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    assert not (folder/"summary.json").exists(), "the run finished before it could be killed; make it longer"

def _epoch(folder, k): return torch.load(Path(folder)/f"track{k}.pt", weights_only=True)["epoch"]

@pytest.mark.parametrize("method", ["spawn", "connected", "distill"])
def test_kill_and_resume_is_bit_identical(method, full, tmp_path):
    "kill -9 in the middle of a run; the same command resumes it, and the members equal an uninterrupted run's, bit for bit."
    args, ref = full[method]
    cut = tmp_path/"cut"
    # spawn: after the branch point (a branch has a checkpoint); the others: after two epochs of track 0
    poll = (lambda f: (f/"track1.pt").exists() and _epoch(f, 1) >= 3) if method == "spawn" else (lambda f: _epoch(f, 0) >= 2)
    _kill_once(args, cut, poll)
    again = run(TRAIN, *args, "--save_path", str(cut), env=env1())
    assert again.returncode == 0, again.stderr
    assert_same(weights(ref), weights(cut))
    n = {"spawn": 7, "connected": 6, "distill": 7}[method]
    assert len((cut/"track1.csv").read_text().splitlines()) == n

def test_spawn_and_distill_under_torchrun(full, tmp_path):
    "Two ranks: the parent on rank 0, its snapshot broadcast to the branches; the students of distill spread out. Same members as one process."
    for name in ("spawn", "distill"):
        args, one = full[name]
        r = torchrun(2, args + ["--save_path", str(tmp_path/f"{name}_two")])
        assert r.returncode == 0, r.stdout + r.stderr
        assert json.loads((tmp_path/f"{name}_two"/"summary.json").read_text())["world_size"] == 2
        assert_same(weights(one), weights(tmp_path/f"{name}_two"))

def test_connected_refuses_torchrun(tmp_path):
    "A joint method cannot be spread over ranks: each rank says so in one sentence (torchrun then reports the failed group)."
    r = torchrun(2, connected_args(1) + ["--save_path", str(tmp_path/"c")])
    assert r.returncode != 0 and "error: connected trains its tracks jointly, in one process; run it without torchrun." in r.stderr, r.stderr
    assert "raise SBError" not in r.stderr and not (tmp_path/"c").exists()

def test_bad_input_exits_2(teacher, tmp_path):
    "The real command: members of different architectures get one sentence, exit status 2, and no run folder."
    out = tmp_path/"run"
    clean_error(run(TRAIN, *distill_args(teacher, 1), "--width", "16", "--save_path", str(out), env=env1()), "members of different architectures")
    assert not out.exists()

@pytest.fixture(scope="module")
def parser():
    from sharpbalance.cli import train_parser
    return train_parser()

def exit_of(parser, argv, capsys):
    "What `sharpbalance-train argv` does with bad input, in this process (the flags parser built once): (exit status, stderr)."
    from sharpbalance.core import friendly_errors
    from sharpbalance.cli import config_from_args
    from sharpbalance.methods.core import train_ensemble
    capsys.readouterr()
    try: friendly_errors(lambda: train_ensemble(config_from_args(parser.parse_args(argv), parser)))(); code = 0
    except SystemExit as e: code = e.code
    return code, capsys.readouterr().err

@pytest.mark.parametrize("extra,msg", [
    (["--width", "16"], "members of different architectures"),
    (["--seed", "1 2 3 4"], "has 3 members but 4 students"),
    (["--tau", "0"], "tau must be > 0"),
    (["--tau", "-1"], "tau must be > 0"),
    (["--lam", "-0.5"], "lam must be >= 0"),
    (["--beta", "1.5"], "beta must be in [0, 1]"),
    (["--anchor", "spawn"], "needs --anchor_run"),
])
def test_bad_distill_input_is_one_sentence(teacher, tmp_path, parser, capsys, extra, msg):
    out = tmp_path/"run"
    code, err = exit_of(parser, distill_args(teacher, 1) + extra + ["--save_path", str(out)], capsys)
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not out.exists()

@pytest.mark.parametrize("args,msg", [
    (connected_args(1) + ["--lam", "-1"], "lam must be >= 0"),
    (connected_args(1) + ["--seed", "13"], "at least 2 members"),
    (spawn_args(2) + ["--spawn_epoch", "2"], "spawn_epoch must be in [0, epochs)"),
    (BASE + ["--method", "distill", "--epochs", "1"], "needs --teacher"),
    (distill_args("/nonexistent/run", 1), "holds no sharpbalance run"),
])
def test_bad_input_is_one_sentence(tmp_path, parser, capsys, args, msg):
    out = tmp_path/"run"
    code, err = exit_of(parser, args + ["--save_path", str(out)], capsys)
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not out.exists()
