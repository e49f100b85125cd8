"""Weight-space speed, as ratios measured in one run (never asserted by a test).

    .venv/bin/python benchmarks/weightspace.py [--repeats 7] [--threads 1] [--device cpu]

1. greedy_soup_over_bound: `weightspace.greedy_soup` over M = 5 members of the demo `cnn` (width 16, 1x16x16 inputs,
   10 classes), 500 held-out and 1,000 BatchNorm images in batches of 250, against its bound: per candidate (the M
   members), one evaluation pass of the held-out set plus one BatchNorm recomputation, M x (eval + recompute), both
   timed alone in the same run (a plain no-grad eval-mode loop; torch's `update_bn`). Target <= 1.2. The algorithm's
   own minimum, M evaluations to rank the members plus (M - 1) x (recompute + eval) for the candidate soups, is
   printed too (greedy_soup_over_work): with these sizes that minimum exceeds the bound by about 5%.
2. bn_recompute_over_forward: `weightspace.recompute_bn` over the 1,000 images against the same forward passes in
   train mode under no_grad. Target <= 1.1.
3. align_over_eval: `weightspace.align` (weight matching, including building the permutation spec and the permuted
   copy) of two ResNet-18s of width 16 against one evaluation pass of one of them over 1,000 CIFAR-shaped random
   images (batches of 250). Target <= 2.
Members are fresh initialisations from different seeds: the passes cost the same for trained weights (the greedy
soup's cost depends on them only through the one extra recomputation when no candidate is accepted, which the bound
covers). Each ratio is the median over repeats of the ratio of back-to-back timings. Ends with one JSON line.
Other scripts import the three functions (`from weightspace import align_over_eval`, with benchmarks/ on the path)."""
import argparse, json, statistics, time
import torch
from torch.optim.swa_utils import update_bn
from sharpbalance.core import get_device, set_seed
from sharpbalance import models as sbmodels
from sharpbalance.weightspace import align, greedy_soup, recompute_bn


def _setup(threads, device):
    "The device and its synchronisation, with `threads` CPU threads."
    torch.set_num_threads(threads)
    dev = get_device(device)
    return dev, ((lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None))

def _timed(f, sync):
    "Seconds one call of f takes (the device synchronised before and after)."
    sync(); t = time.perf_counter(); f(); sync(); return time.perf_counter() - t

def _members(name, M, shape, width, dev):
    out = []
    for k in range(M): set_seed(k); out.append(sbmodels.create(name, 10, shape, width=width).to(dev).eval())
    return out

def _data(n, shape, bs, seed, dev):
    g = torch.Generator().manual_seed(seed)
    X, Y = torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g)
    return [(X[i:i + bs].to(dev), Y[i:i + bs].to(dev)) for i in range(0, n, bs)]

@torch.no_grad()
def _eval_pass(model, batches):
    "The plain evaluation pass: eval mode, no grad, errors counted."
    model.eval(); e = 0
    for x, y in batches: e += (model(x).argmax(1) != y).sum()
    return int(e)

@torch.no_grad()
def _train_forward(model, batches):
    "The plain forward passes in train mode (no grad) that BatchNorm recomputation is compared with."
    model.train()
    for x, _ in batches: model(x)
    model.eval()

def greedy_soup_over_bound(repeats:int=7, threads:int=1, device:str="cpu", verbose:bool=False, _work=None) -> float:
    "Greedy soup of M = 5 cnn(16) members over M x (one held-out evaluation + one BatchNorm recomputation)."
    dev, sync = _setup(threads, device)
    M, shape = 5, (1, 16, 16)
    cnns, val, bn = _members("cnn", M, shape, 16, dev), _data(500, shape, 250, 1, dev), _data(1000, shape, 250, 2, dev)
    for m in cnns: _eval_pass(m, val); recompute_bn(m, bn)   # warm-up
    r, w, ts, tb = [], [], [], []
    for _ in range(repeats):
        t_eval = statistics.median(_timed(lambda: _eval_pass(m, val), sync) for m in cnns)
        t_upd = statistics.median(_timed(lambda: update_bn([x for x, _ in bn], m), sync) for m in cnns)
        t_soup = _timed(lambda: greedy_soup(cnns, val, bn), sync)
        r.append(t_soup / (M * (t_eval + t_upd))); w.append(t_soup / (M * t_eval + (M - 1) * (t_eval + t_upd)))
        ts.append(t_soup); tb.append(M * (t_eval + t_upd))
    if _work is not None: _work.append(statistics.median(w))
    if verbose:
        print(f"greedy soup, M = {M} cnn(16): {statistics.median(ts)*1e3:.0f} ms, bound {statistics.median(tb)*1e3:.0f} ms -> "
              f"greedy_soup_over_bound {statistics.median(r):.3f} (target <= 1.2); over its own minimum work {statistics.median(w):.3f}")
    return statistics.median(r)

def bn_recompute_over_forward(repeats:int=7, threads:int=1, device:str="cpu", verbose:bool=False) -> float:
    "`recompute_bn` over 1,000 images against the same forward passes in train mode (no grad)."
    dev, sync = _setup(threads, device)
    m, bn = _members("cnn", 1, (1, 16, 16), 16, dev)[0], _data(1000, (1, 16, 16), 250, 2, dev)
    _train_forward(m, bn); recompute_bn(m, bn)   # warm-up
    r = []
    for _ in range(repeats):
        t_fw, t_bn = _timed(lambda: _train_forward(m, bn), sync), _timed(lambda: recompute_bn(m, bn), sync)
        r.append(t_bn / t_fw)
    if verbose: print(f"BatchNorm recomputation over 1,000 images vs the same train-mode forward passes: "
                      f"bn_recompute_over_forward {statistics.median(r):.3f} (target <= 1.1)")
    return statistics.median(r)

def align_over_eval(repeats:int=7, threads:int=1, device:str="cpu", verbose:bool=False) -> float:
    "Weight matching of two ResNet-18s (width 16) over one evaluation pass of 1,000 CIFAR-shaped images."
    dev, sync = _setup(threads, device)
    a, b = _members("resnet18", 2, (3, 32, 32), 16, dev)
    imgs = _data(1000, (3, 32, 32), 250, 3, dev)
    _eval_pass(a, imgs); align(a, b)   # warm-up
    r, ta, te, res = [], [], [], {}
    for _ in range(repeats):
        t_ev = _timed(lambda: _eval_pass(a, imgs), sync)
        t_al = _timed(lambda: res.__setitem__("out", align(a, b, return_info=True)), sync)
        r.append(t_al / t_ev); ta.append(t_al); te.append(t_ev)
    if verbose: print(f"weight matching of two resnet18(16): {statistics.median(ta)*1e3:.0f} ms ({res['out'][1]['sweeps']} sweeps), "
                      f"one evaluation pass over 1,000 images {statistics.median(te)*1e3:.0f} ms -> align_over_eval "
                      f"{statistics.median(r):.3f} (target <= 2)")
    return statistics.median(r)

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=7); p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    kw = dict(repeats=args.repeats, threads=args.threads, device=args.device, verbose=True)
    print(f"device {get_device(args.device)}, {args.threads} thread(s), {args.repeats} repeats")
    work = []
    out = dict(greedy_soup_over_bound=greedy_soup_over_bound(**kw, _work=work))
    out.update(greedy_soup_over_work=work[0], bn_recompute_over_forward=bn_recompute_over_forward(**kw), align_over_eval=align_over_eval(**kw))
    print(json.dumps({**{k: round(v, 4) for k, v in out.items()}, **dict(device=args.device, threads=args.threads, repeats=args.repeats)}))
