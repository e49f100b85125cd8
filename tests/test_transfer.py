"""Transfer ensembles end to end with `sharpbalance-train`: pre-training on a source task, Local and Global DE, SSE and
StarSSE fine-tuned from it, the bad inputs of a fine-tuning run, a real kill -9 and resume, and StarSSE's rays on
torchrun ranks; and `sharpbalance-measure --mode soup`, the ensemble beside its weight-averaged soups.

The source task is MNIST as torchvision lays it out on disk (`MNIST/raw/` idx files), a small fixture written here; the
target task is the built-in `digits` (16x16). The kit's `cnn` pools globally, so its pre-trained body fits both sizes.
"""
import hashlib, json, os, pickle, signal, struct, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest, torch
from helpers import TRAIN, MEASURE, run, env1, free_port, clean_error

SMALL = ["--model", "cnn", "--width", "4", "--device", "cpu", "--quiet"]
FT = ["--data", "digits", *SMALL, "--lr", "0.05", "--batch_size", "128", "--head", "new"]


def _idx(path, a):
    a = np.asarray(a, np.uint8)
    Path(path).write_bytes(b"\0\0\x08" + bytes([a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes())


def _mnist_fixture(root):
    "torchvision's MNIST/raw/ layout: 200 training and 60 test images, a bar whose height is the class, on noise."
    rng, raw = np.random.default_rng(0), root/"MNIST"/"raw"
    raw.mkdir(parents=True)
    for split, n in (("train", 200), ("t10k", 60)):
        y = np.arange(n) % 10
        x = rng.integers(0, 60, (n, 28, 28))
        for i, c in enumerate(y): x[i, 4 + 2*c: 8 + 2*c, 6:22] = 255
        _idx(raw/f"{split}-images-idx3-ubyte", x); _idx(raw/f"{split}-labels-idx1-ubyte", y)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    "Three independently pre-trained checkpoints: a `de` run of three seeds on the source task."
    root = tmp_path_factory.mktemp("source")
    _mnist_fixture(root/"data")
    out = root/"pre"
    r = run(TRAIN, "--method", "de", "--data", "mnist", "--data_path", str(root/"data"), *SMALL, "--seed", "1 2 3",
            "--epochs", "2", "--lr", "0.05", "--batch_size", "64", "--lrsche", "cosine", "--save_path", str(out), env=env1())
    assert r.returncode == 0, r.stderr
    return out


def ckpt(folder, name="track0.pt"):
    return torch.load(Path(folder)/name, weights_only=True)


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).iterdir())}


def _train(argv, capsys):
    "`sharpbalance-train argv` in this process (no interpreter start); returns what it printed."
    from sharpbalance.cli import train
    capsys.readouterr(); train(argv)
    return capsys.readouterr().out


def test_local_and_global_de_start_from_the_checkpoints(source, tmp_path, capsys):
    """With a vanishing learning rate the fine-tuned bodies stay the pre-trained ones: Local DE all from checkpoint 0,
    Global DE member k from k. Local DE runs the real command, Global DE the same function in this process."""
    frozen = ["--epochs", "1", "--lr", "1e-12", "--momentum", "0", "--weight_decay", "0", "--seed", "13 17 27"]
    for method, src_of in (("local_de", lambda k: 0), ("global_de", lambda k: k)):
        out, argv = tmp_path/method, ["--method", method, "--pretrained_path", str(source), *FT, *frozen, "--save_path", str(tmp_path/method)]
        if method == "local_de":
            r = run(TRAIN, *argv, env=env1())
            assert r.returncode == 0, r.stderr
            printed = r.stdout
        else: printed = _train(argv, capsys)
        assert f"{method}: 3 members" in printed
        assert json.loads((out/"config.json").read_text())["config"]["pretrained_path"] == [str(source)]
        heads = []
        for k in range(3):
            mine, pre = ckpt(out, f"track{k}.pt"), ckpt(source, f"track{src_of(k)}.pt")
            assert mine["state"]["new_head"] == 1
            head = list(pre["model"])[-2:]                                   # the final Linear's weight and bias
            for n, v in pre["model"].items():
                if n.endswith(("running_mean", "running_var", "num_batches_tracked")) or n in head: continue
                torch.testing.assert_close(mine["model"][n], v, rtol=0, atol=1e-9, msg=n)
            heads.append(mine["model"][head[0]])
        assert not torch.equal(heads[0], heads[1])


def _bad_inputs(tmp, source):
    "(name, flags, expected words) of each bad input, with the files it needs."
    torch.save(torch.nn.Linear(3, 3), tmp/"whole.pt")                       # a whole module: needs code execution
    class Evil:
        def __reduce__(self): return (os.system, ("echo never",))
    (tmp/"evil.pkl").write_bytes(pickle.dumps(Evil()))
    b = (source/"track0.pt").read_bytes(); (tmp/"cut.pt").write_bytes(b[:len(b)//3])
    torch.save(torch.nn.Linear(3, 3).state_dict(), tmp/"linear.pt")
    base = ["--data", "digits", "--device", "cpu", "--quiet", "--epochs", "1", "--batch_size", "128"]
    cnn4, local = ["--model", "cnn", "--width", "4"], ["--method", "local_de", *base]
    return [
        ("missing", local + cnn4 + ["--pretrained_path", str(tmp/"nope.pt")], "does not exist"),
        ("corrupt", local + cnn4 + ["--pretrained_path", str(tmp/"cut.pt")], "corrupt or truncated"),
        ("whole module", local + cnn4 + ["--pretrained_path", str(tmp/"whole.pt")], "needs code execution"),
        ("os.system pickle", local + cnn4 + ["--pretrained_path", str(tmp/"evil.pkl")], "needs code execution"),
        ("other width (run folder)", local + ["--model", "cnn", "--width", "8", "--pretrained_path", str(source)], "another architecture"),
        ("other model (member file)", local + ["--model", "mlp", "--pretrained_path", str(source/"track1.pt")], "another architecture"),
        ("other model (state_dict)", local + cnn4 + ["--pretrained_path", str(tmp/"linear.pt")], "another architecture"),
        ("cycle < 1 epoch", ["--method", "sse", *base, *cnn4, "--seed", "13", "--num_models", "3", "--pretrained_path", str(source),
                             "--cycle_epochs", "0.5"], "at least one"),
        ("too few checkpoints", ["--method", "global_de", *base, *cnn4, "--pretrained_path", str(source), "--seed", "1 2 3 4"],
         "one pre-trained checkpoint per member"),
        ("no checkpoint", ["--method", "starsse", *base, *cnn4, "--seed", "13"], "pass --pretrained_path"),
    ]


def _exit_of(argv, capsys):
    "What `sharpbalance-train argv` does, in this process (no interpreter start per case): (exit status, stderr)."
    from sharpbalance.core import friendly_errors
    from sharpbalance.cli import train
    capsys.readouterr()
    try: friendly_errors(train)(argv); code = 0
    except SystemExit as e: code = e.code
    return code, capsys.readouterr().err


def test_bad_inputs_are_one_sentence_and_write_nothing(source, tmp_path, capsys):
    """Each bad input: exit 2, one line, no traceback, and a new --save_path is not even created: the settings show most
    problems, and the method's `check` (the data loaded, the run folder not yet made) finds a state_dict that does not
    fit the model. An existing run folder is never touched (checked for four of them). The cases run in this process;
    the real command runs once: the pickle that would call os.system, into the existing run."""
    keep = tmp_path/"existing"
    _train(["--method", "local_de", "--pretrained_path", str(source), *FT, "--epochs", "1", "--seed", "5 6", "--save_path", str(keep)], capsys)
    before = digest(keep)
    for name, flags, words in _bad_inputs(tmp_path, source):
        fresh = tmp_path/f"new_{name.replace(' ', '_').replace('(', '').replace(')', '')}"
        code, err = _exit_of(flags + ["--save_path", str(fresh)], capsys)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (name, err)
        assert not fresh.exists(), name
        if name in ("missing", "other model (state_dict)", "too few checkpoints"):  # and into an existing run: refused, untouched
            code, err = _exit_of(flags + ["--save_path", str(keep)], capsys)
            assert code == 2 and len(err.strip().splitlines()) == 1, (name, err)
            assert digest(keep) == before, name
    evil = next(f for n, f, _ in _bad_inputs(tmp_path, source) if n == "os.system pickle")
    r = run(TRAIN, *evil, "--save_path", str(keep), env=env1())
    clean_error(r, "needs code execution")
    assert "never" not in r.stdout and digest(keep) == before


def test_measure_soup_mode(source, tmp_path, monkeypatch, capsys):
    """`sharpbalance-measure --mode soup` on a saved run (a copy of the three pre-trained checkpoints): the ensemble
    (predictions averaged) beside the uniform and greedy soups (weights averaged, BatchNorm recomputed) and each member,
    as a table, a JSON and a CSV. The data have no validation set, so the greedy soup chooses on half the test set and
    every row is on the other half. A second call without --force, and members of two architectures, are one sentence
    and exit 2, with nothing written."""
    import shutil
    ft = tmp_path/"run"; shutil.copytree(source, ft)  # measure caches predictions in the run folder: keep the fixture clean
    save = tmp_path/"m"
    r = run(MEASURE, "--resume", str(ft), "--mode", "soup", "--device", "cpu", "--save", str(save), env=env1())
    assert r.returncode == 0, r.stderr
    assert all(w in r.stdout for w in ("ensemble", "uniform_soup", "greedy_soup", "half of the test set"))
    rec = json.loads((save/"soup.json").read_text())
    rows = rec["rows"]
    assert [x["model"] for x in rows] == ["ensemble", "uniform_soup", "greedy_soup", "member0", "member1", "member2"]
    assert rec["greedy_on"] == "test_half" and rec["n_eval"] == 30 and rec["soup_bn"] == "recomputed" and 1 <= rows[2]["n_models"] <= 3
    assert all(0 <= x["acc"] <= 1 and 0 <= x["ood_acc"] <= 1 and x["nll"] > 0 for x in rows)
    assert rows[0]["nll"] <= sum(x["nll"] for x in rows[3:]) / 3 + 1e-9                     # Jensen: any members
    assert (save/"soup.csv").read_text().splitlines()[0].startswith("model,combine,n_models,acc,nll,ood_acc")
    before = digest(save)
    clean_error(run(MEASURE, "--resume", str(ft), "--mode", "soup", "--save", str(save), env=env1()), "--force")
    assert digest(save) == before
    # A saved run's members all come from its one config, so two architectures are faked in-process behind the CLI.
    import sharpbalance.measure as sm
    from sharpbalance.core import run_cli
    cfg, models = sm.load_ensemble(ft)
    monkeypatch.setattr(sm, "load_ensemble", lambda *a, **k: (cfg, [models[0], torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 10))]))
    with pytest.raises(SystemExit) as e: run_cli(sm.measure_command, ["--resume", str(ft), "--mode", "soup", "--save", str(tmp_path/"mixed")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "differ in architecture" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path/"mixed").exists()


def _kill_when(cmd, out, ready, timeout=300):
    "Start `cmd`, kill -9 its process group once `ready(out)` holds; return whether it was killed before finishing."
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env1())
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            if ready(out): break
        except Exception: pass  # a poll must not fail the test
        time.sleep(0.02)
    finished = proc.poll() is not None
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    return not finished and not (out/"summary.json").exists()


def _epoch(out, name): return torch.load(out/name, weights_only=True)["epoch"] if (out/name).exists() else -1


@pytest.mark.parametrize("method,ready", [
    ("sse", lambda out: _epoch(out, "track0.pt") >= 3),          # after the first snapshot (epoch 2), inside cycle 2 (epochs 3, 4)
    ("starsse", lambda out: _epoch(out, "track1.pt") >= 3),      # inside the rays (epochs 3, 4)
])
def test_kill_and_resume_is_bit_identical(source, tmp_path, method, ready):
    """SSE keeps M snapshots of one track, StarSSE theta_1 and M - 1 rays, from a plain state_dict (the official --ckpt
    spelling); a run killed with SIGKILL mid-cycle and started again ends bit-identical to an uninterrupted one; the
    members load back, also after the pre-trained file is gone."""
    from sharpbalance.learner import load_ensemble
    plain = tmp_path/"pre.pt"; torch.save(ckpt(source, "track2.pt")["model"], plain)
    cmd = [TRAIN, "--method", method, "--ckpt", str(plain), *FT, "--batch_size", "32", "--seed", "13", "--epochs", "2",
           "--cycle_epochs", "2", "--num_models", "3", "--cycle_lr", "0.1", "--warmup_epochs", "1"]
    full = run(*cmd, "--save_path", str(tmp_path/"full"), env=env1())
    assert full.returncode == 0, full.stderr
    cut = tmp_path/"cut"
    assert _kill_when(cmd + ["--save_path", str(cut)], cut, ready), "the run finished before it could be killed; make it longer"
    again = run(*cmd, "--save_path", str(cut), env=env1())
    assert again.returncode == 0, again.stderr
    names = sorted(p.name for p in (tmp_path/"full").glob("track*.pt"))
    assert names == sorted(p.name for p in cut.glob("track*.pt"))
    for n in names:
        a, b = ckpt(tmp_path/"full", n), ckpt(cut, n)
        assert a["epoch"] == b["epoch"], n
        for k in a["model"]: assert torch.equal(a["model"][k], b["model"][k]), (n, k)
        assert a["opt"]["state"].keys() == b["opt"]["state"].keys(), n
    for k in (0, 1, 2) if method == "starsse" else (0,):
        f = f"track{k}.csv"
        assert len((cut/f).read_text().splitlines()) == len((tmp_path/"full"/f).read_text().splitlines())
    files = {"sse": {"track0_epoch2.pt", "track0_epoch4.pt", "track0_epoch6.pt"}, "starsse": {"track0_epoch2.pt", "track1.pt", "track2.pt"}}[method]
    assert files <= {p.name for p in (tmp_path/"full").iterdir()}
    if method == "sse": assert json.loads((tmp_path/"full"/"summary.json").read_text())["snapshot_epochs"] == [2, 4, 6]
    plain.unlink()
    cfg, models = load_ensemble(tmp_path/"full")
    assert len(models) == 3 and cfg.method == method and cfg.cycle_epochs == 2 and cfg.pretrained_path == [str(plain)]


def test_starsse_rays_on_torchrun_ranks(source, tmp_path):
    "Two gloo ranks: rank 0 trains theta_1 and ray 2, rank 1 branches rays 1 and 3 from the broadcast snapshot; the members match one process."
    args = ["--method", "starsse", "--pretrained_path", str(source), *FT, "--seed", "13", "--epochs", "1", "--cycle_epochs", "1",
            "--num_models", "4", "--cycle_lr", "0.1"]
    one = run(TRAIN, *args, "--save_path", str(tmp_path/"one"), env=env1())
    assert one.returncode == 0, one.stderr
    r = run(sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2", "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--no-python", TRAIN, *args, "--save_path", str(tmp_path/"two"),
            timeout=600, env=env1())
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads((tmp_path/"two"/"summary.json").read_text())["world_size"] == 2
    for k in range(4):
        a, b = ckpt(tmp_path/"one", f"track{k}.pt"), ckpt(tmp_path/"two", f"track{k}.pt")
        assert a["epoch"] == b["epoch"] == (1 if k == 0 else 2)
        for n in a["model"]: torch.testing.assert_close(a["model"][n], b["model"][n], rtol=1e-4, atol=1e-5, msg=n)
