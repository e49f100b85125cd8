"Stacked members (`--stacked`, torch.func) train exactly like the member-by-member loop, up to float rounding."
import dataclasses, pytest, torch
from torch.utils.data import TensorDataset
from sharpbalance import data as sbdata
from sharpbalance.core import SBError
from sharpbalance.methods.core import train_ensemble

@pytest.fixture(scope="module")
def bundle(): return sbdata.load("digits", n_train=300)

KW = dict(seed="13 17 27", epochs=4, lr=0.05, batch_size=64, lrsche="cosine", progress=False, device="cpu")

@pytest.fixture(scope="module")
def signals():
    "MNIST-1D cut to 300 training signals, like the digits fixture."
    b = sbdata.load("mnist1d"); sub = TensorDataset(*(t[:300] for t in b.train.tensors))
    return dataclasses.replace(b, train=sub, train_eval=sub)

@pytest.mark.parametrize("model,method,extra", [
    ("mlp", "de", {}),
    ("mlp", "sam", dict(rho=0.2)),
    ("mlp", "sharpbalance", dict(rho=0.2, flat_ratio=0.5, initial_epochs=1)),
    ("mlp", "sharpbalance", dict(rho=0.1, flat_ratio=0.5, initial_epochs=1, adaptive=True, tail="high")),
    ("cnn1d", "sharpbalance", dict(rho=0.2, flat_ratio=0.5, initial_epochs=1)),  # convolutions as grouped ones
])
def test_stacked_equals_loop(request, model, method, extra):
    bundle = request.getfixturevalue("signals" if model == "cnn1d" else "bundle")
    loop = train_ensemble(method, bundle=bundle, model=model, **KW, **extra)
    stk = train_ensemble(method, bundle=bundle, model=model, stacked=True, **KW, **extra)
    if getattr(loop.method, "masks", None) is not None:
        for a, b in zip(loop.method.masks, stk.method.masks): assert torch.equal(a, b)
        torch.testing.assert_close(loop.method.scores, stk.method.scores, rtol=1e-4, atol=1e-6)
    for a, b in zip(loop.models, stk.models):
        for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()): torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=n)
    for la, lb in zip(loop.logs, stk.logs):
        torch.testing.assert_close(torch.tensor([r["train_loss"] for r in la]), torch.tensor([r["train_loss"] for r in lb]), rtol=1e-4, atol=1e-6)

def test_stacked_resume_and_checkpoints(bundle, tmp_path):
    "A stacked run writes the loop path's checkpoints (momentum buffers included), so either path resumes the other."
    kw = dict(model="mlp", rho=0.2, flat_ratio=0.5, initial_epochs=1, **KW)
    ref = train_ensemble("sharpbalance", bundle=bundle, **kw)
    train_ensemble("sharpbalance", bundle=bundle, **{**kw, "epochs": 4}, stacked=True, save_path=str(tmp_path/"r"))
    sd = torch.load(tmp_path/"r"/"track1.pt", weights_only=True)
    assert sd["epoch"] == 4 and len(sd["opt"]["state"]) == len(list(ref.models[1].parameters()))
    for p, q in zip(ref.models[1].state_dict().values(), sd["model"].values()): torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)

def test_stacked_refuses_batchnorm(bundle):
    with pytest.raises(SBError, match="mlp or cnn1d"): train_ensemble("de", bundle=bundle, model="cnn", stacked=True, **KW)
