"`sharpbalance-train` under `torchrun`: gloo ranks on this machine give the single-process run's subsets and weights."
import os, signal, subprocess, time, json
from pathlib import Path
import pytest, torch
from helpers import TRAIN, run, env1, free_port, torchrun

RUN = ["--data", "digits", "--model", "mlp", "--seed", "13 17 27", "--sam", "True", "--rho", "0.2", "--flat_ratio", "0.5",
       "--initial_epochs", "1", "--epochs", "4", "--lr", "0.05", "--batch_size", "64", "--lrsche", "cosine", "--device", "cpu", "--quiet"]

def member(folder, k): return torch.load(Path(folder)/f"track{k}.pt", weights_only=True)

@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("single")/"run"
    r = run(TRAIN, *RUN, "--save_path", str(out), timeout=300, env=env1())
    assert r.returncode == 0, r.stderr
    return out

def test_torchrun_equals_one_process(single, tmp_path, nproc=3):
    out = tmp_path/"dist"
    r = torchrun(nproc, RUN + ["--save_path", str(out)])
    assert r.returncode == 0, r.stdout + r.stderr
    a, b = torch.load(single/"method.pt", weights_only=True), torch.load(out/"method.pt", weights_only=True)
    assert torch.equal(a["masks"], b["masks"])
    torch.testing.assert_close(a["scores"], b["scores"], rtol=1e-4, atol=1e-6)
    for k in range(3):
        sa, sb = member(single, k), member(out, k)
        assert sb["epoch"] == 4
        for n in sa["model"]: torch.testing.assert_close(sa["model"][n], sb["model"][n], rtol=1e-4, atol=1e-5, msg=n)
        assert len((out/f"track{k}.csv").read_text().splitlines()) == 5
    summ = json.loads((out/"summary.json").read_text())
    assert summ["world_size"] == nproc and len(summ["test_error"]) == 3

def test_two_members_per_rank_and_resume(single, tmp_path):
    "World size 2 with 4 members: rank r trains members r and r+2; a second call resumes and changes nothing."
    out = tmp_path/"four"
    args = [a if a != "13 17 27" else "13 17 27 31" for a in RUN] + ["--save_path", str(out)]
    r = torchrun(2, args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (out/"summary.json").exists() and torch.load(out/"method.pt", weights_only=True)["masks"].shape[0] == 4
    before = {k: member(out, k)["model"] for k in range(4)}
    r = torchrun(2, args)  # everything is done: resume finds epoch 4 everywhere
    assert r.returncode == 0, r.stdout + r.stderr
    for k in range(4):
        for n, t in member(out, k)["model"].items(): assert torch.equal(t, before[k][n])

def test_dead_rank_stops_the_others(tmp_path):
    "Two ranks started by hand (no torchrun to clean up): kill rank 1, rank 0 stops with a clear message, not a hang."
    out, port, timeout = tmp_path/"dead", free_port(), 20
    args = [a if a != "4" else "30" for a in RUN] + ["--initial_epochs", "25", "--seed", "13 17", "--save_path", str(out),
                                                     "--dist_timeout", str(timeout)]
    procs = [subprocess.Popen([TRAIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                              env=env1(RANK=str(k), WORLD_SIZE="2", LOCAL_RANK=str(k), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)))
             for k in range(2)]
    try:
        deadline = time.time() + 120
        while not (out/"track1.pt").exists() and time.time() < deadline: time.sleep(0.05)
        assert (out/"track1.pt").exists(), "rank 1 never wrote a checkpoint"
        os.killpg(procs[1].pid, signal.SIGKILL); procs[1].wait()
        _, err = procs[0].communicate(timeout=timeout + 60)  # a hang would raise TimeoutExpired here
        assert procs[0].returncode == 2, err
        assert "another rank died or stalled" in err and "re-run the same command" in err and "Traceback" not in err, err
    finally:
        for p in procs:
            if p.poll() is None: os.killpg(p.pid, signal.SIGKILL); p.wait()
