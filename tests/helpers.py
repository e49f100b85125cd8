"Plain helpers shared by the test modules (fixtures live in conftest.py); pytest puts tests/ on sys.path."
import os, socket, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's console scripts
TRAIN, MEASURE, STUDY, DEMO = (str(BIN/f"sharpbalance-{n}") for n in ("train", "measure", "study", "demo"))

def run(exe, *args, timeout=600, **kw):
    "Run `exe args` to completion, capturing stdout and stderr as text."
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, **kw)

def env1(**kw):
    "This environment with OMP_NUM_THREADS=1 (tiny models: one thread is faster than two fighting over shared cores)."
    return {**os.environ, "OMP_NUM_THREADS": "1", **kw}

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def torchrun(nproc:int, args:list, timeout=600):
    "`sharpbalance-train args` under torchrun with `nproc` gloo ranks on this machine, one thread each."
    return run(sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--no-python", TRAIN, *args,
               timeout=timeout, env=env1())

def clean_error(r, msg=None, code=2, lines=1, traceback=True) -> str:
    """Assert that the finished process `r` failed with a short error and return its stderr: exit status `code`
    (None: any nonzero), `msg` in stderr (if given), no "Traceback" (unless `traceback=False`), and 1 to `lines`
    lines of stderr (`lines=None`: any number)."""
    if code is None: assert r.returncode != 0, (r.returncode, r.stdout, r.stderr)
    else: assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    err = r.stderr
    if msg is not None: assert msg in err, err
    if traceback: assert "Traceback" not in err, err
    if lines is not None: assert 1 <= len(err.strip().splitlines()) <= lines, err
    return err
