"""Loaders on tiny fixtures written in each real on-disk format (CIFAR-10/100 pickles, Tiny-ImageNet folders,
CIFAR-10-C .npy), plus the built-in data and `iterate`.

The validation hold-out is floor(10% of N): the official 45,000 / 5,000 on CIFAR's 50,000 images, and
N - N//10 / N//10 on a fixture of N images (45 / 5 for 5 batch files of 10).
The fixture writers here are independent of `sharpbalance.data.write_fake`, so the readers are checked against a
second, separately written copy of each format."""
import pickle, random, warnings
import numpy as np
import pytest
import torch
from PIL import Image

from sharpbalance.core import SBError
from sharpbalance.data import DATASETS, CORRUPTIONS, Bundle, iterate, load, write_fake

C10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _pickle(obj, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f: pickle.dump(obj, f, protocol=2)


def _cifar10(root, n=10, seed=0):
    "CIFAR-10 batches as the real files hold them: bytes keys, data rows of 3072 uint8 (R, G, B planes)."
    rng = np.random.default_rng(seed); labels = {}
    for f in C10_FILES:
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        x[:, 0] = np.arange(n)  # the red value of the top-left pixel names the image inside its file
        _pickle({b"batch_label": f.encode(), b"labels": y.tolist(), b"data": x, b"filenames": [b"x.png"] * n},
                root / "cifar-10-batches-py" / f)
        labels[f] = y
    _pickle({b"label_names": [f"c{i}".encode() for i in range(10)], b"num_cases_per_batch": n, b"num_vis": 3072},
            root / "cifar-10-batches-py" / "batches.meta")
    return labels


def _cifar100(root, n_train=30, n_test=8, seed=1):
    rng = np.random.default_rng(seed)
    for f, n in (("train", n_train), ("test", n_test)):
        _pickle({"filenames": ["x.png"] * n, "batch_label": f, "fine_labels": rng.integers(0, 100, n).tolist(),
                 "coarse_labels": rng.integers(0, 20, n).tolist(), "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)},
                root / "cifar-100-python" / f)
    _pickle({"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": [f"k{i}" for i in range(20)]},
            root / "cifar-100-python" / "meta")


def _cifar_c(root, folder="CIFAR-10-C", k=3, corruptions=("gaussian_noise", "contrast", "jpeg_compression"), seed=2):
    rng = np.random.default_rng(seed)
    (root / folder).mkdir(parents=True, exist_ok=True)
    y = np.tile(np.arange(k) % 10, 5).astype(np.int64)
    np.save(root / folder / "labels.npy", y)
    for c in corruptions:
        x = rng.integers(0, 256, (5 * k, 32, 32, 3), dtype=np.uint8)
        x[:, 0, 0, 0] = np.arange(5 * k)  # names the row
        np.save(root / folder / f"{c}.npy", x)
    return y


def _tiny(root, wnids=("n02", "n01", "n03"), n_train=3, n_val=2, seed=3):
    rng = np.random.default_rng(seed); t = root / "tiny-imagenet-200"
    t.mkdir(parents=True)
    (t / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (t / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in wnids))
    for w in wnids:
        d = t / "train" / w / "images"; d.mkdir(parents=True)
        (t / "train" / w / f"{w}_boxes.txt").write_text("")
        for i in range(n_train):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(d / f"{w}_{i}.JPEG")
    (t / "val" / "images").mkdir(parents=True)
    ann, k = [], 0
    for w in reversed(wnids):
        for _ in range(n_val):
            Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(t / "val" / "images" / f"val_{k}.JPEG")  # grey
            ann.append(f"val_{k}.JPEG\t{w}\t1\t2\t60\t61"); k += 1
    (t / "val" / "val_annotations.txt").write_text("\n".join(ann) + "\n")
    return t


# ---------------------------------------------------------------- CIFAR-10 / CIFAR-10-C

def test_cifar10_shapes_split_and_labels(tmp_path):
    labels = _cifar10(tmp_path)
    b = load("cifar10", tmp_path)
    assert isinstance(b, Bundle) and b.name == "cifar10" and b.n_classes == 10 and tuple(b.input_shape) == (3, 32, 32)
    assert (len(b.train), len(b.val), len(b.test)) == (45, 5, 10)
    tr, va = b.meta["train_idx"], b.meta["val_idx"]
    assert tr.dtype == va.dtype == torch.int64
    assert set(tr.tolist()).isdisjoint(va.tolist()) and sorted(tr.tolist() + va.tolist()) == list(range(50))
    official = np.concatenate([labels[f] for f in C10_FILES[:5]])
    assert [int(b.train_eval[i][1]) for i in range(45)] == official[tr.numpy()].tolist()
    assert [int(b.val[i][1]) for i in range(5)] == official[va.numpy()].tolist()
    assert [int(b.test[i][1]) for i in range(10)] == labels["test_batch"].tolist()
    x, y = b.train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64 and y.dim() == 0
    assert b.meta["classes"][:2] == ["c0", "c1"]
    assert b.ood == {} and "absent" in b.meta["ood_note"]


def test_cifar10_test_transform_normalises_with_the_official_constants(tmp_path):
    _cifar10(tmp_path)
    b = load("cifar10", tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as f: raw = pickle.load(f, encoding="latin1")
    img = torch.from_numpy(raw[b"data"][4].reshape(3, 32, 32)).float() / 255
    mean, std = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2470, 0.2435, 0.2616])
    torch.testing.assert_close(b.test[4][0], (img - mean[:, None, None]) / std[:, None, None])
    # train_eval is the train set without augmentation: equal on every access; train is augmented
    assert torch.equal(b.train_eval[3][0], b.train_eval[3][0])
    assert any(not torch.equal(b.train[3][0], b.train_eval[3][0]) for _ in range(10))


def test_split_is_seeded_and_configurable(tmp_path):
    _cifar10(tmp_path)
    a, b, c = load("cifar10", tmp_path), load("cifar10", tmp_path), load("cifar10", tmp_path, split_seed=1)
    assert torch.equal(a.meta["val_idx"], b.meta["val_idx"]) and not torch.equal(a.meta["val_idx"], c.meta["val_idx"])
    assert load("cifar10", tmp_path, val_fraction=0.0).val is None
    d = tmp_path / "split"; d.mkdir()
    np.save(d / "train_idx.npy", np.arange(40, dtype=np.int64)[::-1].copy()); np.save(d / "valid_idx.npy", np.arange(40, 50))
    s = load("cifar10", tmp_path, split_dir=d)
    assert s.meta["val_idx"].tolist() == list(range(40, 50)) and len(s.train) == 40


def test_cifar10c_keys_sizes_and_rows(tmp_path):
    _cifar10(tmp_path); y = _cifar_c(tmp_path)
    with pytest.warns(UserWarning, match="lacks 12 of the 15"):
        b = load("cifar10", tmp_path)
    want = {f"{c}-{s}" for c in ("gaussian_noise", "contrast", "jpeg_compression") for s in range(1, 6)}
    assert set(b.ood) == want and b.meta["ood_severities"] == [1, 2, 3, 4, 5]
    assert set(b.meta["ood_corruptions"]) == {"gaussian_noise", "contrast", "jpeg_compression"}
    assert len(b.meta["ood_missing"]) == 12
    ds = b.ood["contrast-4"]
    assert len(ds) == 3
    x, lab = ds[2]
    assert x.shape == (3, 32, 32) and lab.dtype == torch.int64 and int(lab) == int(y[3 * 3 + 2])
    raw = np.load(tmp_path / "CIFAR-10-C" / "contrast.npy")
    torch.testing.assert_close(x[0, 0, 0], torch.tensor((raw[11, 0, 0, 0] / 255 - 0.4914) / 0.2470, dtype=torch.float32), atol=1e-5, rtol=0)
    batches = list(iterate(b.ood["gaussian_noise-5"], 2))
    assert [i.tolist() for i, _, _ in batches] == [[0, 1], [2]]


def test_cifar10c_all_15_corruptions_no_warning(tmp_path):
    _cifar10(tmp_path, n=2); _cifar_c(tmp_path, k=1, corruptions=CORRUPTIONS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = load("cifar10", tmp_path)
    assert len(b.ood) == 75 and b.meta["ood_missing"] == []


def test_cifar_c_shape_mismatch_is_an_error(tmp_path):
    _cifar10(tmp_path); _cifar_c(tmp_path, k=3, corruptions=("fog",))
    np.save(tmp_path / "CIFAR-10-C" / "fog.npy", np.zeros((10, 32, 32, 3), np.uint8))
    with pytest.raises(SBError, match="fog.npy has shape"):
        load("cifar10", tmp_path)


# ---------------------------------------------------------------- CIFAR-100

def test_cifar100(tmp_path):
    _cifar100(tmp_path); _cifar_c(tmp_path, folder="CIFAR-100-C", k=2, corruptions=("frost",))
    with pytest.warns(UserWarning):
        b = load("cifar100", tmp_path)
    assert (len(b.train), len(b.val), len(b.test), b.n_classes) == (27, 3, 8, 100)
    assert b.meta["classes"][99] == "f99" and sorted(b.ood) == [f"frost-{s}" for s in range(1, 6)]
    assert b.train[0][0].shape == (3, 32, 32)
    assert torch.allclose(torch.tensor(b.meta["mean"]), torch.tensor([0.5071, 0.4865, 0.4409]))
    # data_path may also be the dataset folder itself
    with pytest.warns(UserWarning):
        assert len(load("cifar100", tmp_path / "cifar-100-python").test) == 8


# ---------------------------------------------------------------- Tiny-ImageNet

def test_tiny_imagenet(tmp_path):
    t = _tiny(tmp_path)
    b = load("tiny_imagenet", tmp_path)
    assert (len(b.train), b.val, len(b.test), b.n_classes, tuple(b.input_shape)) == (9, None, 6, 3, (3, 64, 64))
    assert b.meta["wnids"] == ["n01", "n02", "n03"]  # sorted, as ImageFolder does
    assert sorted(int(b.train_eval[i][1]) for i in range(9)) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # val labels come from val_annotations.txt (written in the order n03, n03, n01, n01, n02, n02)
    assert [int(b.test[i][1]) for i in range(6)] == [2, 2, 0, 0, 1, 1]
    x, y = b.test[0]  # a greyscale JPEG comes out as 3 channels
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert b.train[0][0].shape == (3, 64, 64) and b.ood == {} and "val folder is the test set" in b.meta["note"]
    assert load("tiny_imgnet", t).name == "tiny_imagenet"  # the official name, and the folder itself as data_path


def test_tiny_imagenet_rearranged_val_and_tiny_c(tmp_path):
    t = _tiny(tmp_path)
    for line in (t / "val" / "val_annotations.txt").read_text().split("\n"):
        if line:
            f, w = line.split("\t")[:2]
            (t / "val" / w).mkdir(exist_ok=True); (t / "val" / "images" / f).rename(t / "val" / w / f)
    (t / "val" / "val_annotations.txt").unlink()
    for s in (1, 2):
        d = tmp_path / "Tiny-ImageNet-C" / "snow" / str(s) / "n02"; d.mkdir(parents=True)
        Image.new("RGB", (64, 64)).save(d / "a.JPEG")
    b = load("tiny_imagenet", tmp_path, val_fraction=0.34)
    assert (len(b.train), len(b.val), len(b.test)) == (6, 3, 6)
    assert sorted(int(b.test[i][1]) for i in range(6)) == [0, 0, 1, 1, 2, 2]
    assert sorted(b.ood) == ["snow-1", "snow-2"] and len(b.ood["snow-2"]) == 1 and int(b.ood["snow-2"][0][1]) == 1


# ---------------------------------------------------------------- errors

def test_missing_data_path_names_the_layout():
    with pytest.raises(SBError, match=r"needs --data_path: expected <data_path>/cifar-10-batches-py/data_batch_1"):
        load("cifar10")
    with pytest.raises(SBError, match=r"tiny-imagenet-200/ with wnids.txt"):
        load("tiny_imagenet", None)


def test_missing_folder_and_file_name_the_layout(tmp_path):
    with pytest.raises(SBError, match=r"cifar-10-batches-py does not exist: expected .*torchvision's CIFAR-10 format"):
        load("cifar10", tmp_path)
    _cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(SBError) as e:
        load("cifar10", tmp_path)
    msg = str(e.value)
    assert "data_batch_4 is missing" in msg and "<data_path>/cifar-10-batches-py/data_batch_1 ... data_batch_5" in msg
    assert "--data_path" in msg and msg.count("\n") == 0
    (tmp_path / "cifar-100-python").mkdir()
    with pytest.raises(SBError, match=r"cifar-100-python/train is missing: .*CIFAR-100 format"):
        load("cifar100", tmp_path)
    (tmp_path / "tiny-imagenet-200").mkdir()
    with pytest.raises(SBError, match=r"wnids.txt is missing: expected <data_path>/tiny-imagenet-200/"):
        load("tiny_imagenet", tmp_path)


def test_corrupt_pickle_and_bad_labels(tmp_path):
    _cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(SBError, match="test_batch is unreadable"):
        load("cifar10", tmp_path)
    _cifar10(tmp_path)
    _cifar_c(tmp_path, corruptions=("fog",)); (tmp_path / "CIFAR-10-C" / "labels.npy").unlink()
    with pytest.raises(SBError, match="labels.npy is missing"):
        load("cifar10", tmp_path)


def test_unknown_name_and_option():
    with pytest.raises(SBError) as e:
        load("imagenet")
    assert all(n in str(e.value) for n in DATASETS)
    with pytest.raises(SBError, match="no option 'rho'"):
        load("digits", rho=0.1)


# ---------------------------------------------------------------- built-in data

def test_builtin_shapes_determinism_and_rng():
    state = random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()
    d1, d2 = load("digits"), load("digits")
    m1, m2 = load("mnist1d"), load("mnist1d")
    assert random.getstate() == state[0] and (np.random.get_state()[1] == state[1]).all()
    assert torch.equal(torch.get_rng_state(), state[2])
    assert (len(d1.train), len(d1.test), tuple(d1.input_shape)) == (1000, 797, (1, 16, 16))
    assert (len(m1.train), len(m1.test), tuple(m1.input_shape)) == (4000, 1000, (1, 40))
    for a, b in ((d1, d2), (m1, m2)):
        assert a.train_eval is a.train and len(a.ood) == 12
        assert torch.equal(a.train.tensors[0], b.train.tensors[0]) and torch.equal(a.test.tensors[1], b.test.tensors[1])
        assert all(torch.equal(a.ood[k].tensors[0], b.ood[k].tensors[0]) for k in a.ood)
        x, y = a.test[0]
        assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert {k.rsplit("-", 1)[0] for k in d1.ood} == {"noise", "blur", "contrast", "shift"}
    assert {k.rsplit("-", 1)[0] for k in m1.ood} == {"iid_noise", "smooth_noise", "scale", "shift"}


# ---------------------------------------------------------------- iterate

def test_iterate_fast_path_and_loader_path_agree(tmp_path):
    d = load("digits")
    fast = list(iterate(d.train, 64, shuffle=True, generator=torch.Generator().manual_seed(5)))
    idx = torch.cat([i for i, _, _ in fast])
    assert idx.dtype == torch.int64 and sorted(idx.tolist()) == list(range(1000))
    for i, x, y in fast[:3]:
        assert torch.equal(x, d.train.tensors[0][i]) and torch.equal(y, d.train.tensors[1][i])

    class Wrapped(torch.utils.data.Dataset):
        def __len__(self): return len(d.train)
        def __getitem__(self, i): return d.train[i]

    slow = list(iterate(Wrapped(), 64, shuffle=True, generator=torch.Generator().manual_seed(5)))
    assert torch.equal(torch.cat([i for i, _, _ in slow]), idx)
    assert torch.equal(torch.cat([x for _, x, _ in slow]), torch.cat([x for _, x, _ in fast]))


def test_iterate_augmented_batches_are_reproducible(tmp_path):
    _cifar10(tmp_path)
    b = load("cifar10", tmp_path)
    run = lambda: [(i, x, y) for i, x, y in iterate(b.train, 8, shuffle=True, generator=torch.Generator().manual_seed(9))]
    r1, r2 = run(), run()
    assert [len(i) for i, _, _ in r1] == [8] * 5 + [5]
    for (i1, x1, y1), (i2, x2, y2) in zip(r1, r2):
        assert torch.equal(i1, i2) and torch.equal(x1, x2) and torch.equal(y1, y2)
    other = [x for _, x, _ in iterate(b.train, 8, shuffle=True, generator=torch.Generator().manual_seed(10))]
    assert not torch.equal(torch.cat(other), torch.cat([x for _, x, _ in r1]))
    # every sample's label matches its position: (idx, x, y) stay aligned
    for i, _, y in r1:
        assert y.tolist() == [int(b.train_eval[j][1]) for j in i.tolist()]


# ---------------------------------------------------------------- write_fake

@pytest.mark.parametrize("name", ["cifar10", "cifar100", "tiny_imagenet"])
def test_write_fake_loads(tmp_path, name):
    write_fake(name, tmp_path, n=4, n_corrupt=1, corruptions=("fog",), n_classes=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = load(name, tmp_path)
    assert len(b.train) + (len(b.val) if b.val is not None else 0) == {"cifar10": 20, "cifar100": 20, "tiny_imagenet": 8}[name]
    assert sorted(b.ood) == [f"fog-{s}" for s in range(1, 6)]
    x, y = b.ood["fog-1"][0]
    assert x.shape == tuple(b.input_shape) and y.dtype == torch.int64
