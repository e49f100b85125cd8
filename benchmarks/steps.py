"""Step costs on the built-in data, as ratios measured in one run (never asserted by a test).

    .venv/bin/python benchmarks/steps.py [--steps 40] [--repeats 5] [--batch_size 128] [--threads 2]

Prints SAM step / SGD step, mixed step / SGD step (at the SAM share f that SharpBalance's selection gives three
briefly trained demo CNNs on digits at flat_ratio 0.5) and the speed of per-sample scoring (the default: hooks
engine, chunk 128) against the official method (vmap, chunk 16), then one JSON line with keys sam_over_sgd,
mixed_over_sgd, sam_share, scoring_speedup, batch_size.
Targets from the issue: SAM/SGD <= 2.1, mixed/SGD <= 1.15 x (1 + f), scoring >= 2.5x the baseline.
The default batch is 128, the official scripts' and `sharpbalance-train`'s; the demo trains with 64."""
import argparse, json, statistics, time
import torch, torch.nn.functional as F
from sharpbalance.core import set_seed
from sharpbalance import data as sbdata, models as sbmodels
from sharpbalance.sam import SAM, mixed_step
from sharpbalance.balance import per_sample_sharpness, sam_subsets, sam_share
from sharpbalance.train import TrainConfig, train_ensemble, _sam_step, _sgd_step

p = argparse.ArgumentParser(); p.add_argument("--steps", type=int, default=40); p.add_argument("--repeats", type=int, default=5)
p.add_argument("--batch_size", type=int, default=TrainConfig.batch_size); p.add_argument("--threads", type=int, default=2)
args = p.parse_args()
torch.set_num_threads(args.threads)
bundle = sbdata.load("digits")
X, Y = bundle.train.tensors
bs = args.batch_size

# the SAM share f a SharpBalance member actually gets: select from three members after 5 SAM epochs
res = train_ensemble(TrainConfig(method="sharpbalance", seed="13 17 27", rho=0.2, flat_ratio=0.5, initial_epochs=5, epochs=6,
                                 lr=0.05, batch_size=bs, lrsche="cosine", progress=False), bundle)
f = statistics.mean(res.sam_share); mask = res.masks[0]

def fresh(sam):
    set_seed(0); m = sbmodels.create("cnn", bundle.n_classes, bundle.input_shape)
    kw = dict(lr=0.05, momentum=0.9, weight_decay=5e-4)
    return m, (SAM(m.parameters(), torch.optim.SGD, rho=0.2, **kw) if sam else torch.optim.SGD(m.parameters(), **kw))

g = torch.Generator().manual_seed(0)
batches = [torch.randperm(len(Y), generator=g)[:bs] for _ in range(args.steps)]
def time_steps(kind):
    m, opt = fresh(kind != "sgd"); m.train()
    step = {"sgd": lambda x, y, i: _sgd_step(m, opt, x, y), "sam": lambda x, y, i: _sam_step(m, opt, x, y),
            "mixed": lambda x, y, i: mixed_step(m, opt, x, y, mask[i])}[kind]
    for i in batches[:5]: step(X[i], Y[i], i)
    t = time.perf_counter()
    for i in batches: step(X[i], Y[i], i)
    return (time.perf_counter() - t) / len(batches)

times = {k: [] for k in ("sgd", "sam", "mixed")}
for _ in range(args.repeats):  # interleaved, so drifts in machine load hit all three alike
    for k in times: times[k].append(time_steps(k))
med = {k: statistics.median(v) for k, v in times.items()}
for k, v in med.items(): print(f"{k:>5} step: {v*1e3:6.2f} ms (median of {args.repeats} runs of {args.steps} steps, batch {bs}, {args.threads} threads)")
sam_over_sgd, mixed_over_sgd = med["sam"] / med["sgd"], med["mixed"] / med["sgd"]
print(f"SAM / SGD   = {sam_over_sgd:.2f}   (target <= 2.1)")
print(f"mixed / SGD = {mixed_over_sgd:.2f}   at SAM share f = {f:.3f} (target <= 1.15 x (1 + f) = {1.15*(1+f):.2f})")

model = res.models[0]
def time_scoring(**kw):
    per_sample_sharpness(model, bundle.train_eval, **kw)
    ts = []
    for _ in range(args.repeats):
        t = time.perf_counter(); per_sample_sharpness(model, bundle.train_eval, **kw); ts.append(time.perf_counter() - t)
    return statistics.median(ts)
base, ours = time_scoring(batch_size=16, engine="vmap"), time_scoring()
print(f"scoring {len(Y)} samples: official chunk-16 vmap {base:.3f}s, default (hooks engine, chunk 128) {ours:.3f}s -> {base/ours:.2f}x (target >= 2.5x)")
print(json.dumps(dict(sam_over_sgd=round(sam_over_sgd, 3), mixed_over_sgd=round(mixed_over_sgd, 3), sam_share=round(f, 3),
                      scoring_speedup=round(base / ours, 3), batch_size=bs)))
