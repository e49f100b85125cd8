"""Weight-space tools on every registered architecture: permutations keep the function, alignment undoes them, soups
and paths keep the BatchNorm rule, bad input gets one sentence. Exact properties only (constructed models, float64)."""
import copy
import numpy as np
import pytest
import torch
import torch.nn as nn
from sharpbalance import models as sbmodels
from sharpbalance.core import SBError
from sharpbalance.data import iterate
from sharpbalance.weightspace import (activation_matching, align, barrier_matrix, connectivity, distance, greedy_soup, interpolate,
                                      linear_path, loss_error, member_plane, pairwise_paths, perm_spec, permute, random_perms,
                                      recompute_bn, uniform_soup, weight_matching)

torch.set_num_threads(1)
SHAPES = {"cnn": (1, 16, 16), "cnn1d": (1, 40), "mlp": (1, 16, 16), "resnet18": (3, 32, 32), "resnet18_cifar": (3, 32, 32),
          "resnet18_tiny": (3, 32, 32), "wrn28": (3, 32, 32), "wrn40": (3, 32, 32)}
WIDTH = {"wrn28": 1, "wrn40": 1, "mlp": 16}


def make(name, seed=0, dtype=torch.float64, stats=True):
    "A freshly initialised model of the registry (small width), in eval mode, with random BatchNorm statistics if `stats`."
    torch.manual_seed(seed)
    m = sbmodels.create(name, 5, SHAPES[name], width=WIDTH.get(name, 4)).to(dtype).eval()
    if stats:
        for b in m.modules():
            if isinstance(b, nn.modules.batchnorm._BatchNorm): b.running_mean.normal_(0, .3); b.running_var.uniform_(.5, 2)
    return m


def same_state(a, b): return a.keys() == b.keys() and all(torch.equal(v, b[k]) for k, v in a.items())


def test_every_model_the_kit_builds_is_covered():
    "Every architecture of `models` (torchvision's ResNets, registered by `transfer` for fine-tuning, are not covered)."
    assert sorted(SHAPES) == sorted(n for n in sbmodels.MODELS if not n.startswith("tv_"))


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_permutation_keeps_the_function_and_alignment_undoes_it(name):
    ref = make(name)
    spec = perm_spec(ref)
    assert spec.sizes and all(n > 0 for n in spec.sizes.values())
    for seed in (1, 2):
        P = random_perms(spec, seed)
        other = permute(ref, P, spec)
        x = torch.randn(5, *SHAPES[name], dtype=torch.float64)
        with torch.no_grad(): assert (other(x) - ref(x)).abs().max().item() < 1e-10
        perms, info = weight_matching(spec, ref.state_dict(), other.state_dict(), seed=seed)
        assert all(torch.equal(perms[p], torch.argsort(P[p])) for p in P)
        assert info["converged"] and same_state(permute(other, perms, spec).state_dict(), ref.state_dict())
        assert same_state(align(ref, other).state_dict(), ref.state_dict())


@pytest.mark.parametrize("name", [n for n in sorted(SHAPES) if n != "cnn1d"])  # a narrow cnn1d has dead units at init
def test_activation_matching_undoes_a_permutation(name):
    ref = make(name, stats=False)
    spec = perm_spec(ref)
    P = random_perms(spec, 3)
    x = torch.randn(64, *SHAPES[name], dtype=torch.float64)
    Q = activation_matching(spec, ref, permute(ref, P, spec), [(x, None)])
    assert all(torch.equal(Q[p], torch.argsort(P[p])) for p in P)


@pytest.mark.parametrize("name", ["cnn", "mlp", "resnet18", "wrn28"])
@pytest.mark.parametrize("method", ["weights", "activations"])
def test_align_keeps_the_function_in_float32(name, method):
    a, b = make(name, 0, torch.float32), make(name, 1, torch.float32)
    x = torch.randn(16, *SHAPES[name])
    al = align(a, b, method=method, batches=[(x, None)])
    with torch.no_grad(): assert (al(x).softmax(1) - b(x).softmax(1)).abs().max().item() < 1e-5
    assert same_state(b.state_dict(), make(name, 1, torch.float32).state_dict())  # the other model is untouched


@pytest.mark.parametrize("name", ["cnn", "resnet18_tiny", "wrn40"])
def test_weight_matching_is_monotone_and_never_moves_away(name):
    a, b = make(name, 0), make(name, 1)
    al, info = align(a, b, seed=5, return_info=True)
    h = np.array(info["objective"])
    tol = 1e-9 * np.abs(h).max()
    assert info["converged"] and np.all(np.diff(h) >= -tol)
    assert all(g <= tol for g in info["gains"].values())
    d0, d1 = distance(a, b)["l2"], distance(a, al)["l2"]
    assert d1 <= d0 * (1 + 1e-12)
    assert np.isclose(d1**2, d0**2 - 2 * (h[-1] - h[0]), rtol=1e-9)
    again = align(a, b, seed=5, return_info=True)[1]
    assert all(torch.equal(again["perms"][p], info["perms"][p]) for p in info["perms"])


def test_unsupported_models_get_one_sentence():
    for m, words in [(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2)), "LayerNorm"),
                     (nn.Sequential(nn.Conv2d(2, 4, 3), nn.Conv2d(4, 4, 3, groups=2)), "grouped"),
                     (nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Flatten(), nn.Linear(5, 2)), "cannot map")]:
        with pytest.raises(SBError, match=words): perm_spec(m)
    with pytest.raises(SBError, match="one architecture"): align(make("cnn"), make("mlp"))
    with pytest.raises(SBError, match="pass batches"): align(make("cnn"), make("cnn", 1), method="activations")


def bn_data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    X, Y = torch.randn(n, *SHAPES["cnn"], generator=g, dtype=torch.float64), torch.randint(0, 5, (n,), generator=g)
    return [(X[i:i + 16], Y[i:i + 16]) for i in range(0, n, 16)]


def test_paths_follow_the_batchnorm_rule():
    a, b = make("cnn", 0), make("cnn", 1)
    tr, te = bn_data(64, 0), bn_data(32, 1)
    with pytest.raises(SBError, match="pass bn_batches"): linear_path(a, b, te)
    p = linear_path(a, b, te, tr, alphas=np.linspace(0, 1, 4))
    assert p["bn"] == "recomputed" and len(p["loss"]) == 4 and p["loss_barrier"] >= 0 and p["error_barrier"] >= 0
    end = loss_error(recompute_bn(copy.deepcopy(b), tr), te)
    assert p["loss"][-1] == end[0] and p["error"][-1] == end[1]
    assert np.isnan(p["loss_mid"])                       # no alpha = 0.5 on this grid
    q = linear_path(a, b, te, [(i, x, y) for i, (x, y) in enumerate(tr)], alphas=np.linspace(0, 1, 4))  # (idx, x, y) batches
    assert np.array_equal(q["loss"], p["loss"])
    avg = linear_path(a, b, te, False, alphas=[0, 1])
    assert avg["bn"] == "averaged" and avg["loss"][0] == loss_error(a, te)[0]


def test_pairwise_and_connectivity_with_iterate_batches():
    g = torch.Generator().manual_seed(0)
    ds = torch.utils.data.TensorDataset(torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g))
    ms = []
    for s in range(3): torch.manual_seed(s); ms.append(nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)))
    paths = pairwise_paths(ms, iterate(ds, 16))
    Q, q = barrier_matrix(paths)
    assert Q.shape == (3, 3) and np.allclose(Q, Q.T) and np.all(np.diag(Q) == 0) and np.isclose(q, Q[np.triu_indices(3, 1)].mean())
    c = connectivity(paths, eps=np.inf, eps_error=np.inf)
    assert c["connected"] and c["connected_error"] and c["bn"] == "none" and c["n_alphas"] == 11


def test_soups_recompute_batchnorm_and_refuse_mixed_architectures():
    ms, tr, val = [make("cnn", s) for s in range(3)], bn_data(64, 0), bn_data(32, 1)
    soup = uniform_soup(ms, tr)
    mean_w = sum(m.state_dict()["0.weight"] for m in ms) / 3
    assert torch.allclose(soup.state_dict()["0.weight"], mean_w, atol=1e-15)
    ref = copy.deepcopy(soup); recompute_bn(ref, tr)
    assert same_state(soup.state_dict(), ref.state_dict())
    gs, info = greedy_soup(ms, val, tr, return_info=True)
    assert info["order"][0] == info["ingredients"][0] and set(info["ingredients"]) <= set(range(3))
    again = copy.deepcopy(gs); recompute_bn(again, tr)
    assert same_state(gs.state_dict(), again.state_dict())
    assert np.isclose(1 - loss_error(gs, val)[1], info["accuracy"]) or len(info["ingredients"]) == 1
    with pytest.raises(SBError, match="pass bn_batches"): greedy_soup(ms, val)
    with pytest.raises(SBError, match="one architecture"): uniform_soup([make("cnn"), make("mlp")], tr)
    with pytest.raises(SBError, match="at least one member"): uniform_soup([], tr)


def test_interpolate_and_distance_on_state_dicts():
    a, b = make("mlp", 0).state_dict(), make("mlp", 1).state_dict()
    assert same_state(interpolate(a, b, 0.), a) and same_state(interpolate(a, b, 1.), b)
    ext = interpolate(a, b, 2.)
    assert torch.allclose(ext["1.weight"], 2 * b["1.weight"] - a["1.weight"])
    d = distance(a, b, per_layer=True)
    assert np.isclose(sum(v["l2"]**2 for v in d["layers"].values()), d["l2"]**2)
    with pytest.raises(SBError, match="skip="): distance(a, make("cnn").state_dict())
    head = distance(a, b, skip="5.")        # a string is one prefix (not its characters): only the head is left out
    assert set(d["layers"]) - {"5"} and np.isclose(head["l2"]**2, d["l2"]**2 - d["layers"]["5"]["l2"]**2)


def test_plane_needs_three_distinct_members():
    ms, tr = [make("cnn", s) for s in range(3)], bn_data(32, 0)
    pl = member_plane(ms, tr, tr, n=3)
    assert pl["loss"].shape == (3, 3) and pl["bn"] == "recomputed" and pl["members"][0].tolist() == [0, 0]
    with pytest.raises(SBError, match="exactly three"): member_plane(ms[:2], tr, tr)
    with pytest.raises(SBError, match="one line"): member_plane([ms[0], ms[1], ms[0]], tr, tr)
