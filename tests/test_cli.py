"End-to-end tests of `sharpbalance-train`: real processes, a real kill, resume, bad input."
import os, signal, subprocess, time, hashlib
from pathlib import Path
import pytest, torch
from helpers import TRAIN, run, clean_error

RUN = ["--data", "digits", "--model", "cnn", "--seed", "13 17 27", "--sam", "True", "--rho", "0.2", "--flat_ratio", "0.5",
       "--initial_epochs", "1", "--epochs", "6", "--lr", "0.05", "--batch_size", "64", "--lrsche", "cosine", "--quiet"]

def weights(folder):
    return [torch.load(Path(folder)/f"track{k}.pt", weights_only=True)["model"] for k in range(3)]

def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).iterdir())}

def test_kill_and_resume_is_bit_identical(tmp_path):
    full = run(TRAIN, *RUN, "--save_path", str(tmp_path/"full"))
    assert full.returncode == 0, full.stderr
    cut = tmp_path/"cut"
    proc = subprocess.Popen([TRAIN, *RUN, "--save_path", str(cut)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill it once some member has finished epoch 3 (after the selection, which comes after 2 epochs)
        ck = cut/"track1.pt"
        if ck.exists():
            try:
                if torch.load(ck, weights_only=True)["epoch"] >= 3: break
            except Exception: pass  # never happens with atomic writes, but a poll must not fail the test
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    epochs = [torch.load(cut/f"track{k}.pt", weights_only=True)["epoch"] for k in range(3)]
    assert max(epochs) < 6, "the run finished before it could be killed; make it longer"
    assert not list(cut.glob(".*.tmp")) or True  # a temp file may remain from the kill; it is never read
    again = run(TRAIN, *RUN, "--save_path", str(cut))
    assert again.returncode == 0, again.stderr
    for a, b in zip(weights(tmp_path/"full"), weights(cut)):
        for k in a: assert torch.equal(a[k], b[k]), k
    log = (cut/"track0.csv").read_text().splitlines()
    assert log[0].startswith("epoch,time,train_loss,test_loss,test_error") and len(log) == 7

@pytest.mark.parametrize("args,msg", [
    (["--data", "imagenet"], "unknown dataset"),
    (["--model", "vgg99"], "unknown model"),
    (["--method", "sam", "--rho", "-0.1"], "rho must be >= 0"),
    (["--sam", "True", "--flat_ratio", "1.5"], "flat_ratio must be in (0, 1]"),
    (["--sam", "True", "--flat_ratio", "0.5", "--epochs", "4", "--initial_epochs", "3"], "initial_epochs"),
    (["--method", "de", "--rho", "0.1"], "not of --method de"),
    (["--data", "cifar10", "--data_path", "/nonexistent"], "cifar"),
])
def test_bad_input_is_one_sentence(args, msg):
    r = run(TRAIN, *(args + ["--epochs", "1"] if "--epochs" not in args else args))
    err = clean_error(r, code=None, lines=2)
    assert msg in err.lower() or msg in err, err

def test_never_overwrites(tmp_path):
    out = tmp_path/"run"
    r = run(TRAIN, "--seed", "1 2", "--epochs", "1", "--batch_size", "256", "--quiet", "--save_path", str(out))
    assert r.returncode == 0, r.stderr
    before = digest(out)
    r = run(TRAIN, "--seed", "1 2", "--epochs", "1", "--batch_size", "256", "--lr", "0.3", "--quiet", "--save_path", str(out))
    clean_error(r, "holds another run", lines=None)
    assert digest(out) == before
    other = tmp_path/"notarun"; other.mkdir(); (other/"precious.txt").write_text("keep me")
    r = run(TRAIN, "--epochs", "1", "--quiet", "--save_path", str(other))
    assert r.returncode == 2 and "not empty" in r.stderr and (other/"precious.txt").read_text() == "keep me"

def test_unreadable_checkpoint(tmp_path):
    out = tmp_path/"run"
    args = ["--seed", "1 2", "--epochs", "2", "--batch_size", "256", "--quiet", "--save_path", str(out)]
    assert run(TRAIN, *args).returncode == 0
    (out/"track1.pt").write_bytes(b"garbage")
    clean_error(run(TRAIN, *args), "unreadable", lines=None)
    assert (out/"track1.pt").read_bytes() == b"garbage"
