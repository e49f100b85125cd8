"""Single-basin costs, as ratios measured in one run (never asserted by a test).

    .venv/bin/python benchmarks/basin.py [--members 3] [--steps 30] [--repeats 5] [--batch_size 128] [--threads 1]

penalty_step_over_plain: one joint step of `methods.basin.Connected` with the connectivity penalty (lambda = 1, one
drawn pair and alpha per step: one extra forward-backward through the interpolated network) over the same joint step
with lambda = 0 (plain SGD on the same M members), on the built-in digits with the default CNN. Target <= 1.6 (the
ideal is 1 + 1/M plus the cost of building the interpolated weights).
align_over_eval: weight matching of two ResNet-18s (width 16) against one evaluation pass over 1,000 CIFAR-shaped
images, measured by `benchmarks/weightspace.py`'s function (the alignment is `sharpbalance.weightspace.align`).
Target <= 2. Ends with one JSON line: penalty_step_over_plain, align_over_eval, members, batch_size, threads."""
import argparse, json, statistics, sys, time
from pathlib import Path
from types import SimpleNamespace
import torch
from sharpbalance.core import set_seed
from sharpbalance import data as sbdata, models as sbmodels
from sharpbalance.methods.basin import Connected, ConnectedConfig

p = argparse.ArgumentParser()
p.add_argument("--members", type=int, default=3); p.add_argument("--steps", type=int, default=30)
p.add_argument("--repeats", type=int, default=5); p.add_argument("--batch_size", type=int, default=128)
p.add_argument("--threads", type=int, default=1); p.add_argument("--model", default="cnn"); p.add_argument("--width", type=int, default=None)
args = p.parse_args()
torch.set_num_threads(args.threads)
bundle = sbdata.load("digits")
X, Y = bundle.train.tensors
M, bs = args.members, args.batch_size

def members():
    "M fresh members with their SGD optimizers (the same M for both steps)."
    out = []
    for k in range(M):
        set_seed(k); m = sbmodels.create(args.model, bundle.n_classes, bundle.input_shape, width=args.width).train()
        out.append(SimpleNamespace(model=m, opt=torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)))
    return out

g = torch.Generator().manual_seed(0)
batches = [[torch.randperm(len(Y), generator=g)[:bs] for _ in range(M)] for _ in range(args.steps)]

def time_steps(lam):
    "Seconds per joint step of Connected at this lambda (its real joint_step, warmed up first)."
    tracks, method = members(), Connected()
    learner = SimpleNamespace(cfg=ConnectedConfig(lam=lam, seed=list(range(1, M + 1)), progress=False), device=torch.device("cpu"))
    method.gen, method.pen, method.n = torch.Generator().manual_seed(0), torch.zeros(()), 0
    step = lambda b: method.joint_step(learner, tracks, b, [X[i] for i in b], [Y[i] for i in b])
    for b in batches[:3]: step(b)
    t = time.perf_counter()
    for b in batches: step(b)
    return (time.perf_counter() - t) / len(batches)

times = {0.: [], 1.: []}
for _ in range(args.repeats):  # interleaved, so drifts in machine load hit both alike
    for lam in times: times[lam].append(time_steps(lam))
ratios = sorted(a / b for a, b in zip(times[1.], times[0.]))
penalty = statistics.median(ratios)
for lam, v in times.items():
    print(f"joint step, lambda = {lam:g}: {statistics.median(v)*1e3:6.2f} ms (median of {args.repeats} runs of {args.steps} steps; "
          f"{M} members x batch {bs}, {args.model}, {args.threads} thread(s))")
print(f"penalty step / plain step = {penalty:.2f}   (target <= 1.6; ideal 1 + 1/M = {1 + 1/M:.2f}; per-repeat range {ratios[0]:.2f}-{ratios[-1]:.2f})")

align = None
try:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from weightspace import align_over_eval  # benchmarks/weightspace.py: weight matching of two ResNet-18s vs one evaluation pass
except ImportError as e:
    print(f"align_over_eval: not measured ({e}); benchmarks/weightspace.py provides it")
else:
    align = align_over_eval(repeats=args.repeats, threads=args.threads)
    print(f"weight matching of two ResNet-18s (width 16) / one evaluation of 1,000 CIFAR-shaped images = {align:.2f}   (target <= 2)")
print(json.dumps(dict(penalty_step_over_plain=round(penalty, 3), align_over_eval=None if align is None else round(align, 3),
                      members=M, batch_size=bs, threads=args.threads)))
