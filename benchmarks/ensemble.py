"""Ensemble speed on the built-in data, as ratios measured in one run (never asserted by a test).

    .venv/bin/python benchmarks/ensemble.py [--steps 40] [--repeats 5] [--epochs 2] [--threads 1] [--device cpu] [--sweep]

1. Stacked vs sequential steps, M = 3 members of the `mlp` on digits (batch 64): the DE (SGD), SAM and SharpBalance
   mixed steps, taken member by member (`sam.mixed_step` with an all-False, all-True or partial mask) against one
   `stack.stacked_step` for all three (the default, layer-by-layer `Stack`; the SAM step also with the
   whole-model `vmap` engine). Target: stacked SAM step >= 1.5x faster.
   With --sweep, also the stacked SAM speed-up for mlp on digits and cnn1d on mnist1d at batches 8 to 512.
2. The whole epoch of the default trainer (`train_ensemble`, DE, the demo `cnn`, batch 128, per-epoch evaluation
   and logging, no checkpoints) against a plain per-member loop of SGD steps over the same batches.
   The loop is timed twice: training only, and with the test-set evaluation the trainer logs after every epoch.
3. A whole SharpBalance run of the trainer (the step model and batch, 4 epochs, selection after 2) with `--stacked`
   against without: training, per-epoch evaluation and the scoring at the selection all included.
Ends with one JSON line: stacked_speedup (SAM step), stacked_speedup_sgd, stacked_speedup_mixed, stacked_speedup_vmap
(SAM step, vmap engine), trainer_over_loop, trainer_over_loop_with_eval, stacked_run_speedup.
On a GPU (`--device cuda`) the same script also prints the throughput per member (samples/s) of each step."""
import argparse, json, statistics, time
import torch
from sharpbalance.core import set_seed, get_device
from sharpbalance import data as sbdata, models as sbmodels
from sharpbalance.sam import SAM, mixed_step
from sharpbalance.stack import Stack, StackedSAM, stacked_step
from sharpbalance.learner import evaluate
from sharpbalance.methods.core import train_ensemble
from sharpbalance.methods import de

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=40); p.add_argument("--repeats", type=int, default=5)
p.add_argument("--epochs", type=int, default=2); p.add_argument("--threads", type=int, default=1)
p.add_argument("--device", default="cpu"); p.add_argument("--model", default="mlp"); p.add_argument("--batch_size", type=int, default=64)
p.add_argument("--sweep", action="store_true", help="also print the stacked SAM speed-up for mlp/digits and cnn1d/mnist1d at batches 8-512")
args = p.parse_args()
torch.set_num_threads(args.threads)
dev = get_device(args.device)
sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
M, f = 3, 0.73  # f: a typical SharpBalance SAM share at flat_ratio 0.5 (see benchmarks/steps.py)
kw = dict(lr=0.05, momentum=0.9, weight_decay=5e-4)

def step_times(data, model, bs, kinds=("sgd", "sam", "mixed"), steps=args.steps, repeats=args.repeats, vmap_sam=False):
    """Median seconds per step of all M members, member by member and stacked: {(kind, 'sequential'|'stacked'|'vmap'): s};
    and each repeat's speed-up sequential / stacked: {(kind, 'stacked'|'vmap'): [ratio per repeat]}."""
    bundle = sbdata.load(data); X, Y = (t.to(dev) for t in bundle.train.tensors)
    g = torch.Generator().manual_seed(0)
    idx = [torch.stack([torch.randperm(len(Y), generator=g)[:bs] for _ in range(M)]).to(dev) for _ in range(steps)]
    masks = [torch.rand(M, bs, generator=g).to(dev) < f for _ in range(steps)]
    none, every = torch.zeros(bs, dtype=torch.bool, device=dev), torch.ones(bs, dtype=torch.bool, device=dev)
    def nets():
        set_seed(0); return [sbmodels.create(model, bundle.n_classes, bundle.input_shape).to(dev).train() for _ in range(M)]
    def time_seq(kind):
        ms = nets()
        opts = [torch.optim.SGD(m.parameters(), **kw) if kind == "sgd" else SAM(m.parameters(), torch.optim.SGD, rho=0.2, **kw) for m in ms]
        def step(i):
            for k, (m, o) in enumerate(zip(ms, opts)):
                x, y = X[idx[i][k]], Y[idx[i][k]]
                mixed_step(m, o, x, y, none if kind == "sgd" else every if kind == "sam" else masks[i][k])
        for i in range(3): step(i)
        sync(); t = time.perf_counter()
        for i in range(steps): step(i)
        sync(); return (time.perf_counter() - t) / steps
    def time_stacked(kind, engine="auto"):
        st = Stack(nets(), engine=engine).train(); ps = list(st.params.values())
        skw = dict(kw, foreach=True)  # as the methods' `stacked_optimizer`
        opt = torch.optim.SGD(ps, **skw) if kind == "sgd" else StackedSAM(ps, torch.optim.SGD, rho=0.2, **skw)
        def step(i):
            stacked_step(st, opt, X[idx[i]], Y[idx[i]], masks[i] if kind == "mixed" else None, sam=kind != "sgd")
        for i in range(3): step(i)
        sync(); t = time.perf_counter()
        for i in range(steps): step(i)
        sync(); return (time.perf_counter() - t) / steps
    paths = {k: ("sequential", "stacked") + (("vmap",) if vmap_sam and k == "sam" else ()) for k in kinds}
    times = {(k, s): [] for k in kinds for s in paths[k]}
    run = dict(sequential=time_seq, stacked=time_stacked, vmap=lambda k: time_stacked(k, "vmap"))
    for _ in range(repeats):  # a kind's paths back to back, so drifts in machine load hit them alike
        for (k, s) in times: times[(k, s)].append(run[s](k))
    ratios = {(k, s): [a / b for a, b in zip(times[(k, "sequential")], times[(k, s)])] for (k, s) in times if s != "sequential"}
    return {key: statistics.median(v) for key, v in times.items()}, ratios

bs = args.batch_size
print(f"device {dev}, {args.threads} thread(s), M = {M}, model {args.model}, batch {bs}, {args.steps} steps x {args.repeats} repeats")
(med, ratios), speed = step_times("digits", args.model, bs, vmap_sam=True), {}
def ratio(key):
    "Median over repeats of the speed-up within one repeat, with its range."
    r = ratios[key]; return statistics.median(r), f"(repeats {min(r):.2f}-{max(r):.2f})"
for k in ("sgd", "sam", "mixed"):
    a, b = med[(k, "sequential")], med[(k, "stacked")]; speed[k], rng = ratio((k, "stacked"))
    print(f"{k:>5} step, all {M} members: sequential {a*1e3:7.2f} ms, stacked {b*1e3:7.2f} ms -> {speed[k]:.2f}x {rng}"
          f"   ({bs / b:,.0f} samples/s per member stacked, {bs / a:,.0f} sequential)")
speed["vmap"], rng = ratio(("sam", "vmap"))
print(f"  sam step, stacked with the whole-model vmap engine: {med[('sam', 'vmap')]*1e3:7.2f} ms -> {speed['vmap']:.2f}x {rng}")
print(f"stacked SAM step speed-up = {speed['sam']:.2f}x (target >= 1.5x)")
if args.sweep:  # where stacking pays: per-step overhead (small batches) against arithmetic (large ones)
    print("stacked SAM step speed-up by model and batch (sequential / stacked):")
    for data, model in (("digits", "mlp"), ("mnist1d", "cnn1d")):
        row = []
        for b_ in (8, 32, 128, 512):
            _, r = step_times(data, model, b_, kinds=("sam",), steps=max(10, args.steps // 2))
            row.append(f"batch {b_:3d}: {statistics.median(r[('sam', 'stacked')]):.2f}x")
        print(f"  {model:5s} on {data:7s}  " + "   ".join(row))

# 2. whole epochs: the trainer against a plain loop over the same batches
bundle = sbdata.load("digits")
cfg = de.Config(seed="13 17 27", epochs=args.epochs, lr=0.05, progress=False, device=str(dev), workers=0)
def plain_loop(with_eval=False):
    ms, gens = [], []
    for s in cfg.seed:
        set_seed(s); ms.append(sbmodels.create(cfg.model, bundle.n_classes, bundle.input_shape).to(dev).train())
        gens.append(torch.Generator().manual_seed(s))
    opts = [torch.optim.SGD(m.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay) for m in ms]
    for _ in range(cfg.epochs):
        for m, o, gn in zip(ms, opts, gens):
            for _, x, y in sbdata.iterate(bundle.train, cfg.batch_size, shuffle=True, generator=gn):
                mixed_step(m, o, x.to(dev), y.to(dev), torch.zeros(len(y), dtype=torch.bool))
            if with_eval: evaluate(m, bundle.test, dev)  # what the trainer logs every epoch: test loss and error
    sync()
tt, tl, te = [], [], []
for _ in range(max(1, args.repeats // 2)):
    t = time.perf_counter(); train_ensemble(cfg, bundle=bundle); sync(); tt.append(time.perf_counter() - t)
    t = time.perf_counter(); plain_loop(); sync(); tl.append(time.perf_counter() - t)
    t = time.perf_counter(); plain_loop(with_eval=True); sync(); te.append(time.perf_counter() - t)
trainer, loop, loop_eval = statistics.median(tt), statistics.median(tl), statistics.median(te)
print(f"{cfg.epochs} epochs of {M} '{cfg.model}' members (DE, batch {cfg.batch_size}): trainer {trainer:.2f} s "
      f"(evaluation and logs included), plain loop {loop:.2f} s -> trainer / loop = {trainer/loop:.2f}")
print(f"the plain loop plus the trainer's per-epoch test-set evaluation: {loop_eval:.2f} s -> trainer / that = {trainer/loop_eval:.2f}")
# 3. a whole SharpBalance run of the trainer, stacked against member by member (evaluation and scoring included)
def sb_run(stacked):
    kw = dict(model=args.model, seed="13 17 27", epochs=4, initial_epochs=1, rho=0.2, flat_ratio=0.5, lr=0.05, batch_size=bs,
              progress=False, device=str(dev), workers=0, stacked=stacked)
    t = time.perf_counter(); train_ensemble("sharpbalance", bundle=bundle, **kw); sync(); return time.perf_counter() - t
runs = [sb_run(False) / sb_run(True) for _ in range(max(1, args.repeats // 2))]
run_speedup = statistics.median(runs)
print(f"whole SharpBalance run ({args.model}, 4 epochs, selection after 2, batch {bs}): member by member / --stacked = "
      f"{run_speedup:.2f} (runs {min(runs):.2f}-{max(runs):.2f})")
print(json.dumps(dict(stacked_speedup=round(speed["sam"], 3), stacked_speedup_sgd=round(speed["sgd"], 3),
                      stacked_speedup_mixed=round(speed["mixed"], 3),
                      stacked_speedup_vmap=round(speed["vmap"], 3), trainer_over_loop=round(trainer / loop, 3),
                      trainer_over_loop_with_eval=round(trainer / loop_eval, 3),
                      stacked_run_speedup=round(run_speedup, 3))))
