"""What the Learner's event machinery costs per batch, against a bare PyTorch loop doing the same work.

Both loops train the same model on the same batches with the same optimizer (AdamW, one param group per
layer group); the Learner runs with its default callbacks (TerminateOnNaN, Recorder, ProgressCallback writing
plain lines to a log) and a one-cycle ParamScheduler. Run:  python bench/engine_overhead.py
"""
import argparse, io, platform, statistics, time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ulmfit_learner import DataLoaders, Learner, ProgressCallback, set_seed, one_cycle_lr, one_cycle_mom, set_hyper


def make(width, n=8192, bs=64):
    set_seed(0)
    ds = TensorDataset(torch.randn(n, width), torch.randint(0, 10, (n,)))
    model = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))
    return DataLoader(ds, batch_size=bs, shuffle=True), model


def groups(model): return [list(model[0].parameters()), list(model[2].parameters()), list(model[4].parameters())]


def bare(width, epochs):
    dl, model = make(width)
    opt = torch.optim.AdamW([{'params': g} for g in groups(model)], lr=1e-3, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01)
    total = epochs * len(dl); lr_s, mom_s = one_cycle_lr(1e-3), one_cycle_mom()
    t, start = 0, time.perf_counter()
    for _ in range(epochs):
        model.train()
        for xb, yb in dl:
            for pg in opt.param_groups: set_hyper(pg, 'lr', lr_s(t / total)); set_hyper(pg, 'mom', mom_s(t / total))
            loss = nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
            float(loss.detach())  # what a loop that logs its loss pays for the sync
            t += 1
    return (time.perf_counter() - start) / total


def learner(width, epochs):
    dl, model = make(width)
    learn = Learner(DataLoaders(dl), model, nn.CrossEntropyLoss(), splitter=groups, default_cbs=False,
                    cbs=None)
    from ulmfit_learner import Recorder, TerminateOnNaN
    learn.add_cbs([TerminateOnNaN(), Recorder(), ProgressCallback(file=io.StringIO())])
    start = time.perf_counter()
    learn.fit_one_cycle(epochs, 1e-3)
    return (time.perf_counter() - start) / (epochs * len(dl))


if __name__ == '__main__':
    ap = argparse.ArgumentParser(); ap.add_argument('--epochs', type=int, default=2); ap.add_argument('--repeats', type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    print(f'torch {torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads')
    print(f"{'width':>6} {'bare us/batch':>14} {'Learner us/batch':>17} {'overhead us':>12} {'overhead %':>11}")
    for width in (32, 256, 1024):
        bs, ls = [], []
        for _ in range(args.repeats):  # interleaved, so that drifts in machine load hit both loops alike
            bs.append(bare(width, args.epochs)); ls.append(learner(width, args.epochs))
        b, l = statistics.median(bs) * 1e6, statistics.median(ls) * 1e6
        print(f'{width:>6} {b:>14.1f} {l:>17.1f} {l - b:>12.1f} {100 * (l - b) / b:>10.1f}%')
