"""Cross-checks of the uncertainty metrics of `sharpbalance.metrics` (entropies, mutual information, variation ratio,
risk-coverage, AURC/AUGRC, OOD detection) against torchmetrics (a dependency) and torch-uncertainty (optional, not a
dependency: those tests skip when it is not installed). The notebook's lessons hold the hand-computed cases; here
the numbers are compared on random ensembles of realistic shape."""
import importlib, importlib.util, itertools, os, sys, types
import pytest
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import binary_auroc, binary_roc
from sharpbalance import metrics as sm

pytestmark = pytest.mark.filterwarnings("ignore:Metric `.*` will save all:UserWarning")   # torch-uncertainty's buffer notes


def toy(M, N, C, signal, seed):
    "float32 probabilities of M members that share a signal on the label plus member noise, and the labels."
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (N,), generator=g)
    return (signal * F.one_hot(y, C) + 1.5 * torch.randn(M, N, C, generator=g)).softmax(-1), y


@pytest.fixture(scope="module")
def ens():
    "An in-distribution set (strong signal) and an OOD set (weak signal) from 5 members, 6 classes."
    P, y = toy(5, 600, 6, 3.0, 0)
    P_out, _ = toy(5, 400, 6, 0.5, 1)
    return P, y, P_out


def dense_ranks(s):
    "Scores mapped to [0, 1] by their rank among the distinct values: order and ties kept exactly, no sigmoid in torchmetrics."
    u, inv = torch.unique(s, return_inverse=True)
    return inv.double() / max(len(u) - 1, 1)


# ---------------------------------------------------------------------------------------------- torchmetrics
@pytest.mark.parametrize("score", sm.SCORES)
def test_ood_detection_matches_torchmetrics(ens, score):
    "AUROC = binary_auroc and FPR95 = the first binary_roc point with TPR >= 0.95, OOD as the positive class."
    P, _, P_out = ens
    s_in, s_out = sm.uncertainty_score(P, score), sm.uncertainty_score(P_out, score)
    d = sm.ood_detection(P, P_out, score)
    assert d == sm.detection_metrics(s_in, s_out)
    preds, target = dense_ranks(torch.cat([s_in, s_out])), torch.cat([torch.zeros(len(s_in)), torch.ones(len(s_out))]).long()
    assert abs(d["auroc"] - binary_auroc(preds, target).item()) < 1e-6      # torchmetrics returns float32
    fpr, tpr, _ = binary_roc(preds, target)
    assert abs(d["fpr95"] - fpr[tpr >= 0.95][0].item()) < 1e-6
    assert 0.5 < d["auroc"] <= 1                                            # every score sees the weaker OOD signal


@pytest.mark.parametrize("seed", range(5))
def test_detection_metrics_with_ties_match_torchmetrics(seed):
    "Heavily tied integer scores: the tie-aware ROC agrees with torchmetrics' at several TPR levels."
    g = torch.Generator().manual_seed(seed)
    s_in, s_out = torch.randint(0, 8, (97,), generator=g).double(), torch.randint(2, 10, (61,), generator=g).double()
    preds, target = dense_ranks(torch.cat([s_in, s_out])), torch.cat([torch.zeros(97), torch.ones(61)]).long()
    fpr, tpr, _ = binary_roc(preds, target)
    for level in (0.5, 0.8, 0.9, 0.95, 1.0):
        d = sm.detection_metrics(s_in, s_out, tpr=level)
        assert abs(d["auroc"] - binary_auroc(preds, target).item()) < 1e-6
        assert abs(d[f"fpr{100 * level:g}"] - fpr[tpr >= level][0].item()) < 1e-6


def test_tie_averaged_risk_is_the_mean_over_tie_orders():
    "The selective risk with ties equals the risk averaged over every order of the tied points (brute force)."
    p = torch.tensor([[.7, .3], [.7, .3], [.7, .3], [.9, .1], [.6, .4], [.6, .4], [.8, .2]])
    y = torch.tensor([0, 1, 1, 0, 1, 0, 1])
    s, err = -p.amax(1).double(), (p.argmax(1) != y).double()
    curves = []
    for perm in itertools.permutations(range(len(y))):
        perm = list(perm)
        if all(s[perm[i]] <= s[perm[i + 1]] for i in range(len(perm) - 1)):   # an order consistent with the ranking
            curves.append(err[perm].cumsum(0) / torch.arange(1, len(y) + 1))
    want = torch.stack(curves).mean(0)
    got = sm.risk_coverage(p[None], y)[1]
    assert len(curves) == 3 * 2 * 2 and torch.allclose(got, want, atol=1e-12, rtol=0)
    assert abs(sm.aurc(p[None], y) - sm._area(want, "torch-uncertainty")) < 1e-12


# ---------------------------------------------------------------------------------------------- torch-uncertainty
@pytest.fixture(scope="module")
def tu():
    """torch-uncertainty's classification metrics and OOD criteria, or a skip. Its package `__init__` imports the
    Lightning-based trainer; the metric modules need only torch and torchmetrics, so when Lightning is missing they are
    loaded under stand-in parent packages (removed again afterwards)."""
    if importlib.util.find_spec("torch_uncertainty") is None: pytest.skip("torch-uncertainty is not installed")
    before = set(sys.modules)
    try:
        import torch_uncertainty.metrics.classification as tum
        import torch_uncertainty.ood_criteria as crit
    except ImportError:
        for k in [k for k in sys.modules if k.split(".")[0] == "torch_uncertainty"]: del sys.modules[k]
        root = importlib.util.find_spec("torch_uncertainty").submodule_search_locations[0]
        for name, path in (("torch_uncertainty", root), ("torch_uncertainty.metrics", os.path.join(root, "metrics"))):
            stub = types.ModuleType(name); stub.__path__ = [path]; sys.modules[name] = stub
        try:
            tum = importlib.import_module("torch_uncertainty.metrics.classification")
            sys.modules["torch_uncertainty.metrics"].__dict__.update(MutualInformation=tum.MutualInformation, VariationRatio=tum.VariationRatio)
            crit = importlib.import_module("torch_uncertainty.ood_criteria")
        except ImportError as e: pytest.skip(f"torch-uncertainty's metric modules do not import: {e}")
    yield types.SimpleNamespace(m=tum, crit=crit)
    for k in set(sys.modules) - before: del sys.modules[k]


def run(metric, *args):
    "update(*args) then compute() of a torchmetrics-style metric."
    metric.update(*args)
    return metric.compute()


def maxdiff(a, b): return (torch.as_tensor(a).double().flatten() - torch.as_tensor(b).double().flatten()).abs().max().item()


def test_entropies_match_torch_uncertainty(ens, tu):
    "Entropy of [N, C] = H[pbar]; Entropy of [N, M, C] = mean member entropy; MutualInformation = ours (float32 rounding)."
    P, _, P_out = ens
    for Q in (P, P_out):
        Qt = Q.transpose(0, 1)                                               # torch-uncertainty's [batch, estimators, classes]
        assert maxdiff(sm.predictive_entropy(Q, "none"), run(tu.m.Entropy(reduction="none"), Q.mean(0))) < 1e-5
        assert maxdiff(sm.expected_entropy(Q, "none"), run(tu.m.Entropy(reduction="none"), Qt)) < 1e-5
        assert maxdiff(sm.mutual_information(Q, "none"), run(tu.m.MutualInformation(reduction="none"), Qt)) < 1e-5
        assert abs(sm.mutual_information(Q) - run(tu.m.MutualInformation(), Qt).item()) < 1e-5


def test_variation_ratio_vs_torch_uncertainty(ens, tu):
    "Equal where the soft vote is a most-voted class; elsewhere torch-uncertainty's count (against the soft vote) is larger."
    P, _, P_out = ens
    for Q in (P, P_out):
        ours, theirs = sm.variation_ratio(Q, "none"), run(tu.m.VariationRatio(probabilistic=False, reduction="none"), Q).double()
        counts = F.one_hot(Q.argmax(2), Q.shape[2]).sum(0)                   # [N, C] votes per class
        plurality = counts.gather(1, Q.mean(0).argmax(1, keepdim=True)).squeeze(1) == counts.amax(1)
        assert plurality.any() and maxdiff(ours[plurality], theirs[plurality]) < 1e-6
        assert (ours[~plurality] < theirs[~plurality]).all()


def test_selective_classification_matches_torch_uncertainty(ens, tu):
    """Risk-coverage curve, AURC, AUGRC and risk at coverage equal torch-uncertainty's on confidences without ties
    (float64, since float32 confidences of a few hundred points can tie, depending on the CPU's kernels)."""
    for P, y in (ens[:2], toy(3, 1000, 10, 1.0, 2)):
        P = P.double(); pbar = P.mean(0)
        assert pbar.amax(1).unique().numel() == len(y)                      # no ties: torch-uncertainty's sort order is defined
        m = tu.m.AURC(); m.update(pbar, y)
        cov, risk = sm.risk_coverage(P, y)
        assert maxdiff(risk, m.partial_compute()) < 1e-6
        assert abs(sm.aurc(P, y) - m.compute().item()) < 1e-6
        assert abs(sm.aurc(P, y, convention="mean") - m.partial_compute().double().mean().item()) < 1e-6
        assert abs(sm.augrc(P, y) - run(tu.m.AUGRC(), pbar, y).item()) < 1e-6
        for c in (0.1, 0.5, 0.8, 0.9, 1.0):
            assert abs(sm.risk_at_coverage(P, y, c) - run(tu.m.RiskAtxCov(c), pbar, y).item()) < 1e-6
        assert abs(risk[-1].item() - (1 - sm.accuracy(pbar, y))) < 1e-12


@pytest.mark.parametrize("score", ["msp", "entropy", "mi", "vr"])
def test_fpr95_matches_torch_uncertainty(ens, tu, score):
    "FPR95 equals torch-uncertainty's tie-aware FPR95(pos_label=1) fed the same scores with OOD as target 1."
    P, _, P_out = ens
    s_in, s_out = sm.uncertainty_score(P, score), sm.uncertainty_score(P_out, score)
    want = run(tu.m.FPR95(pos_label=1), torch.cat([s_in, s_out]), torch.cat([torch.zeros(len(s_in)), torch.ones(len(s_out))]).long())
    assert abs(sm.ood_detection(P, P_out, score)["fpr95"] - want.item()) < 1e-6


def test_scores_match_torch_uncertainty_ood_criteria(ens, tu):
    "Same sign (higher = more OOD) and values as torch-uncertainty's criteria; its 'entropy' is our 'expected_entropy'."
    P, _, _ = ens
    Pt = P.transpose(0, 1)                                                   # the routine's probs_per_est [batch, M, C]
    crit = tu.crit.get_ood_criterion
    assert maxdiff(sm.uncertainty_score(P, "msp"), crit("msp")(P.mean(0))) == 0
    assert maxdiff(sm.uncertainty_score(P, "expected_entropy"), crit("entropy")(Pt)) < 1e-5
    assert maxdiff(sm.uncertainty_score(P, "mi"), crit("mutual_information")(Pt)) < 1e-5
    assert (sm.uncertainty_score(P, "vr") <= crit("variation_ratio")(Pt).double() + 1e-6).all()   # theirs: float32
