"""Step costs on the built-in data, as ratios measured in one run (never asserted by a test).

    .venv/bin/python benchmarks/steps.py [--steps 40] [--repeats 5] [--batch_size 128] [--threads 2]

Prints SAM step / SGD step, mixed step / SGD step (at the SAM share f that SharpBalance's selection gives three
briefly trained demo CNNs on digits at flat_ratio 0.5) and the speed of per-sample scoring (the default: hooks
engine, chunk 128) against the official method (vmap, chunk 16), then one JSON line with keys sam_over_sgd,
mixed_over_sgd, sam_share, scoring_speedup, batch_size.
Targets from the issue: SAM/SGD <= 2.1, mixed/SGD <= 1.15 x (1 + f), scoring >= 2.5x the baseline.
The default batch is 128, the official scripts' and `sharpbalance-train`'s; the demo trains with 64."""
import argparse, json, statistics, time
import torch
from sharpbalance.core import set_seed
from sharpbalance import data as sbdata, models as sbmodels
from sharpbalance.sam import SAM, mixed_step
from sharpbalance.scores import per_sample_sharpness
from sharpbalance.learner import TrainConfig
from sharpbalance.methods.core import train_ensemble
from sharpbalance.methods.sharpbalance import sam_share

p = argparse.ArgumentParser(); p.add_argument("--steps", type=int, default=40); p.add_argument("--repeats", type=int, default=5)
p.add_argument("--batch_size", type=int, default=TrainConfig.batch_size); p.add_argument("--threads", type=int, default=2)
args = p.parse_args()
torch.set_num_threads(args.threads)
bundle = sbdata.load("digits")
X, Y = bundle.train.tensors
bs = args.batch_size

# the SAM share f a SharpBalance member actually gets: select from three members after 5 SAM epochs
res = train_ensemble("sharpbalance", bundle=bundle, seed="13 17 27", rho=0.2, flat_ratio=0.5, initial_epochs=4, epochs=6,
                     lr=0.05, batch_size=bs, lrsche="cosine", progress=False)
f = statistics.mean(sam_share(res.method.masks)); mask = res.method.masks[0]

def fresh(sam):
    set_seed(0); m = sbmodels.create("cnn", bundle.n_classes, bundle.input_shape)
    kw = dict(lr=0.05, momentum=0.9, weight_decay=5e-4)
    return m, (SAM(m.parameters(), torch.optim.SGD, rho=0.2, **kw) if sam else torch.optim.SGD(m.parameters(), **kw))

g = torch.Generator().manual_seed(0)
batches = [torch.randperm(len(Y), generator=g)[:bs] for _ in range(args.steps)]
def time_steps(kind):
    m, opt = fresh(kind != "sgd"); m.train()
    none, every = torch.zeros(bs, dtype=torch.bool), torch.ones(bs, dtype=torch.bool)
    step = {"sgd": lambda x, y, i: mixed_step(m, opt, x, y, none), "sam": lambda x, y, i: mixed_step(m, opt, x, y, every),
            "mixed": lambda x, y, i: mixed_step(m, opt, x, y, mask[i])}[kind]
    for i in batches[:5]: step(X[i], Y[i], i)
    t = time.perf_counter()
    for i in batches: step(X[i], Y[i], i)
    return (time.perf_counter() - t) / len(batches)

times = {k: [] for k in ("sgd", "sam", "mixed")}
for _ in range(args.repeats):  # interleaved, so drifts in machine load hit all three alike
    for k in times: times[k].append(time_steps(k))
def paired(a, b): return statistics.median(x / y for x, y in zip(a, b))  # median over repeats of the ratio within a repeat
def spread(a, b): r = sorted(x / y for x, y in zip(a, b)); return f"{r[0]:.2f}-{r[-1]:.2f}"
for k, v in times.items(): print(f"{k:>5} step: {statistics.median(v)*1e3:6.2f} ms (median of {args.repeats} runs of {args.steps} steps, batch {bs}, {args.threads} threads)")
sam_over_sgd, mixed_over_sgd = paired(times["sam"], times["sgd"]), paired(times["mixed"], times["sgd"])
print(f"SAM / SGD   = {sam_over_sgd:.2f}   (target <= 2.1; per-repeat range {spread(times['sam'], times['sgd'])})")
print(f"mixed / SGD = {mixed_over_sgd:.2f}   at SAM share f = {f:.3f} (target <= 1.15 x (1 + f) = {1.15*(1+f):.2f}; per-repeat range {spread(times['mixed'], times['sgd'])})")

model = res.models[0]
scoring = {"official": dict(batch_size=16, engine="vmap"), "vmap": dict(engine="vmap"), "default": {}}
st = {k: [] for k in scoring}
for kw in scoring.values(): per_sample_sharpness(model, bundle.train_eval, **kw)  # warm-up
for _ in range(args.repeats):  # interleaved as above
    for k, kw in scoring.items():
        t = time.perf_counter(); per_sample_sharpness(model, bundle.train_eval, **kw); st[k].append(time.perf_counter() - t)
speedup = paired(st["official"], st["default"])
print(f"scoring {len(Y)} samples: official chunk-16 vmap {statistics.median(st['official']):.3f}s, default (hooks engine, chunk 128) "
      f"{statistics.median(st['default']):.3f}s -> {speedup:.2f}x (target >= 2.5x; per-repeat range {spread(st['official'], st['default'])})")
print(f"  (vmap at the same chunk of 128: {statistics.median(st['vmap']):.3f}s -> {paired(st['official'], st['vmap']):.2f}x; "
      "it holds 128 per-sample gradients at once, the hooks engine none)")
print(json.dumps(dict(sam_over_sgd=round(sam_over_sgd, 3), mixed_over_sgd=round(mixed_over_sgd, 3), sam_share=round(f, 3),
                      scoring_speedup=round(speedup, 3), batch_size=bs)))
