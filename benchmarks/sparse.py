"""Cost of the FreeTickets masks, as ratios measured in one run (never asserted by a test).

    .venv/bin/python benchmarks/sparse.py [--steps 40] [--repeats 5] [--batch_size 128] [--threads 1] [--width 16 64] [--clock process]

On the kit's CNN and the built-in digits (16x16), with ERK masks at density 0.2, it times
  * a dense training step (`sam.mixed_step`, the step every method takes),
  * the masked step FreeTickets takes: the same step, then the one fused mask pass (`sparse.Masker.apply`,
    one `torch._foreach_mul_` over all masked weights) and the step counter (`methods.freetickets.DST.step`),
  * for comparison, masking with `torch.nn.utils.parametrize` (the mask recomputed in every forward pass),
  * one prune-and-grow update (`sparse.prune_and_grow`, magnitude death, gradient growth, rate 0.5),
and prints masked_step_over_dense (target <= 1.15), prune_grow_over_step (target <= 5; it runs every Delta T steps)
and parametrize_step_over_dense, then one JSON line with those keys, the widths and the batch size.
Each ratio is the median over repeats of the ratio within a repeat; the variants are interleaved so that drifts in
machine load hit them alike. The default clock is this process's CPU time (`time.process_time`) with one thread, which
a machine shared with other jobs disturbs much less than wall time; `--clock wall` times wall-clock seconds."""
import argparse, json, statistics, time
import torch, torch.nn as nn
from torch.nn.utils import parametrize
from sharpbalance.core import set_seed
from sharpbalance import data as sbdata, models as sbmodels, sparse
from sharpbalance.sam import mixed_step
from sharpbalance.learner import TrainConfig, Track, TrackSpec
from sharpbalance.methods.freetickets import DST, DSTConfig

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=40); p.add_argument("--repeats", type=int, default=5)
p.add_argument("--batch_size", type=int, default=TrainConfig.batch_size); p.add_argument("--threads", type=int, default=1)
p.add_argument("--clock", choices=("process", "wall"), default="process", help="CPU time of this process, or wall-clock time")
p.add_argument("--width", type=int, nargs="+", default=[16, 64], help="CNN widths to time")
args = p.parse_args()
torch.set_num_threads(args.threads)
clock = time.process_time if args.clock == "process" else time.perf_counter
bundle = sbdata.load("digits")
X, Y = bundle.train.tensors
bs = args.batch_size
g = torch.Generator().manual_seed(0)
batches = [torch.randperm(len(Y), generator=g)[:bs] for _ in range(args.steps)]
none = torch.zeros(bs, dtype=torch.bool)

class _Mask(nn.Module):
    def __init__(self, m): super().__init__(); self.register_buffer("m", m)
    def forward(self, w): return w * self.m

class _Learner:
    "The two attributes `DST.step` reads."
    def __init__(self, cfg): self.cfg, self.train_ds = cfg, bundle.train

def fresh(width, kind):
    "A model, optimizer and step function of one kind: dense, masked (FreeTickets' step) or parametrize."
    set_seed(0); m = sbmodels.create("cnn", bundle.n_classes, bundle.input_shape, width=width); m.train()
    masks = sparse.init_masks(m, 0.2, "ERK", generator=torch.Generator().manual_seed(0))
    if kind == "parametrize":
        for name, mod in m.named_modules():
            if isinstance(mod, sparse.MASKED): parametrize.register_parametrization(mod, "weight", _Mask(masks[f"{name}.weight"]))
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    if kind == "masked":
        cfg = DSTConfig(seed="0", epochs=10**6, update_frequency=10**9, batch_size=bs, progress=False)  # no update inside the timing
        meth, learner = DST(), _Learner(cfg)
        t = Track(TrackSpec(0, 0), m, opt, None, torch.Generator(), torch.get_rng_state(), state=dict(masks=masks, steps=0, updates=0))
        meth.masker(t).apply()
        return m, masks, lambda x, y: meth.step(learner, t, None, x, y)
    return m, masks, lambda x, y: mixed_step(m, opt, x, y, none)

def time_steps(width, kind):
    m, masks, step = fresh(width, kind)
    for i in batches[:5]: step(X[i], Y[i])
    t = clock()
    for i in batches: step(X[i], Y[i])
    return (clock() - t) / len(batches)

def time_prune_grow(width, n=10):
    m, masks, step = fresh(width, "masked")
    step(X[batches[0]], Y[batches[0]])  # gradients of a batch in place, as after any step
    pg = lambda: sparse.prune_and_grow(m, masks, 0.5, "gradient")
    pg(); t = clock()
    for _ in range(n): pg()
    return (clock() - t) / n

def paired(a, b): return statistics.median(x / y for x, y in zip(a, b))
def spread(a, b): r = sorted(x / y for x, y in zip(a, b)); return f"{r[0]:.2f}-{r[-1]:.2f}"

out = dict(batch_size=bs, threads=args.threads, clock=args.clock, widths=args.width, density=0.2)
worst = dict(masked_step_over_dense=0., prune_grow_over_step=0., parametrize_step_over_dense=0.)
for w in args.width:
    times = {k: [] for k in ("dense", "masked", "parametrize", "prune_grow")}
    kinds = ["dense", "masked", "parametrize"]
    for rep in range(args.repeats):  # the order rotates, so that no variant is always the first after a new model
        for k in kinds[rep % 3:] + kinds[:rep % 3]: times[k].append(time_steps(w, k))
        times["prune_grow"].append(time_prune_grow(w))
    r = dict(masked_step_over_dense=paired(times["masked"], times["dense"]), prune_grow_over_step=paired(times["prune_grow"], times["dense"]),
             parametrize_step_over_dense=paired(times["parametrize"], times["dense"]))
    print(f"cnn width {w} ({sum(p.numel() for p in sparse.maskable(sbmodels.create('cnn', 10, bundle.input_shape, width=w)).values())} masked weights), "
          f"batch {bs}, {args.threads} thread(s), {args.clock} time, median of {args.repeats} runs of {args.steps} steps:")
    for k in ("dense", "masked", "parametrize", "prune_grow"): print(f"  {k:>11}: {statistics.median(times[k])*1e3:7.2f} ms")
    print(f"  masked / dense step      = {r['masked_step_over_dense']:.3f}  (target <= 1.15; per-repeat {spread(times['masked'], times['dense'])})")
    print(f"  prune-and-grow / step    = {r['prune_grow_over_step']:.3f}  (target <= 5; per-repeat {spread(times['prune_grow'], times['dense'])})")
    print(f"  parametrize / dense step = {r['parametrize_step_over_dense']:.3f}  (per-repeat {spread(times['parametrize'], times['dense'])})")
    out[f"width{w}"] = {k: round(v, 4) for k, v in r.items()}
    for k, v in r.items(): worst[k] = max(worst[k], v)
print(json.dumps({**{k: round(v, 4) for k, v in worst.items()}, **out}))
