"""ULMFiT on TREC-6, the paper's recipe, ours and fastai 2.8.12's side by side in one run, with ablation switches.

Data: `../shared/data/trec/train.csv` (5,452 questions) with 10% held out for validation (the same rows for both
implementations: a seeded `is_valid` column), and the 500 official test questions (`test.csv`).

The recipe (the paper's hyper-parameters; section 4 and 3.2-3.3):
  1. Language-model fine-tuning on the training questions (without general-domain pretraining unless
     `--pretrained BUNDLE`): AWD-LSTM emb 400, hidden 1152, 3 layers, the paper's dropouts times `--lm-drop-mult`,
     Adam betas (0.7, 0.99), bs 64, BPTT 70, base lr 0.004; STLR (cut_frac 0.1, ratio 32); discriminative lrs
     (2.6 per group) when fine-tuning a pretrained model.
  2. The classifier on the fine-tuned encoder: concat pooling, head 50, drop_mult `--clas-drop-mult`, bs 64,
     base lr 0.01; gradual unfreezing (one more layer group per epoch), discriminative lrs, STLR; then
     `--clas-epochs` epochs with everything unfrozen.
Ablations (the paper's Tables 6 and 7): `--no-discr` (one lr for every group), `--no-stlr` (a constant lr), `--no-gradual`
(everything trained from the first epoch). `--schedule one_cycle` gives ours one cycle instead of STLR (the lr warmed
up over a quarter of each fit and annealed to almost zero, Adam's beta1 cycled 0.8-0.7-0.8: fastai's schedule, with
everything else ours). `--bidir` also trains the backward model and averages the two classifiers. `--vocab-from all`
gives ours fastai's vocabulary: counted over the validation questions too, not the training ones alone (over ten
splits 0.6 points less validation error and 0.2 less test error; with a pretrained model 1.4 and 0.3 on five:
BENCHMARKS.md). With `--pretrained`, ours adds the pretrained vocabulary after the classifier's, so that the
pretrained words the training questions lack keep their vectors (the library's default, `--extend-vocab classifier`:
on five splits 2.6 points less validation error and 2.3 less test error, for about 8% more time); `--extend-vocab`
alone adds it in both stages (no better, six times the CPU time), `--extend-vocab off` not at all (the default before
2026-12-07, which the earlier pretrained rows of BENCHMARKS.md used).

fastai's half (`--fastai-python`, a separate virtualenv, see bench/README.md) runs fastai's ULMFiT recipe on the same
split, shaped like ours: `language_model_learner(..., pretrained=False)` fine-tuned with `fit_one_cycle`, then
`text_classifier_learner` with one `fit_one_cycle` epoch per stage (the head, then -2, -3, ... down to the first
LSTM) at half the lr, then `--clas-epochs` with everything unfrozen, lrs spread with `slice(lr / 2.6**(groups-1),
lr)`; the same sizes, dropouts, bs, epochs and lrs as ours. fastai has no STLR: one-cycle is its nearest schedule.
`--amp`, `--schedule`, `--vocab-from` and `--extend-vocab` apply to ours only (fastai's `tokenize_df` counts every
row's tokens); `--clip` to both (fastai's `GradientClip`).

Reported: validation error (final epoch, and the best epoch), test error, the wall time of both stages; a markdown table.
`--seeds 3 4 5` repeats the run on as many validation splits (the seed draws the split and the initial weights; both
implementations of one seed run back to back) and adds each implementation's mean and standard deviation: with 545
validation questions one run's error moves by about 1.5 points from split to split.

    .venv/bin/python bench/trec6.py --fastai-python /work/fastai-venv/bin/python --json-out /tmp/trec6.json
    .venv/bin/python bench/trec6.py --impl ours --no-gradual            # one ablation, ours only
    .venv/bin/python bench/trec6.py --size small --bs 32 --lm-epochs 20 --lm-lr 1e-2 --clas-lr 2e-2 \
        --lm-drop-mult 0.3 --clas-drop-mult 0.5 --seeds 3 4 5 --fastai-python /work/fastai-venv/bin/python
    .venv/bin/python bench/trec6.py --impl ours --size small --lm-epochs 4 --clas-epochs 4   # minutes, not an hour
"""
import argparse, json, os, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import SIZES, add_recipe_args, exit_if_failed, fmt, machine_facts, md_table, ours_by_direction, run_child  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared', 'data', 'trec')


def load_split(seed: int, valid_pct: float = 0.1):
    import numpy as np
    import pandas as pd
    train = pd.read_csv(os.path.join(DATA, 'train.csv'), keep_default_na=False)
    test = pd.read_csv(os.path.join(DATA, 'test.csv'), keep_default_na=False)
    valid = np.random.default_rng(seed).permutation(len(train))[:round(len(train) * valid_pct)]
    train['is_valid'] = False
    train.loc[valid, 'is_valid'] = True
    return train, test


# ---- ours ----------------------------------------------------------------------------------------------------------
def run_ours(a):
    import torch
    train, test = load_split(a.seed)
    res = {'impl': 'ours', 'torch_threads': torch.get_num_threads()}
    for direction, r in ours_by_direction(a, train, test, a.work, SIZES[a.size], valid_col='is_valid',
                                          what='questions').items():
        res[direction if direction == 'bidir' else f'clas_{direction}'] = r
    return res


# ---- fastai's recipe ------------------------------------------------------------------------------------------------
def run_fastai(a):
    import torch
    from fastai.text.all import (AWD_LSTM, Perplexity, TextDataLoaders, accuracy, awd_lstm_clas_config,
                                 awd_lstm_lm_config, language_model_learner, set_seed, text_classifier_learner)
    train, test = load_split(a.seed)
    res = {'impl': 'fastai', 'torch_threads': torch.get_num_threads()}
    cfg = SIZES[a.size]
    clip = []
    if a.clip is not None:
        from fastai.callback.training import GradientClip
        clip = [GradientClip(a.clip)]
    set_seed(a.seed)
    t = time.perf_counter()
    dls_lm = TextDataLoaders.from_df(train, text_col='text', is_lm=True, valid_col='is_valid', bs=a.bs, seq_len=70)
    lm_cfg = dict(awd_lstm_lm_config, emb_sz=cfg['emb_sz'], n_hid=cfg['n_hid'], n_layers=cfg['n_layers'],
                  output_p=0.4, hidden_p=0.3, input_p=0.4, embed_p=0.05, weight_p=0.5)
    lm = language_model_learner(dls_lm, AWD_LSTM, config=lm_cfg, pretrained=False, drop_mult=a.lm_drop_mult,
                                metrics=[accuracy, Perplexity()], path=a.work, cbs=clip)
    lm.fit_one_cycle(a.lm_epochs, a.lm_lr)
    lm.save_encoder('enc')
    lm_history = [list(map(float, v)) for v in lm.recorder.values]
    dls = TextDataLoaders.from_df(train, text_col='text', label_col='label', valid_col='is_valid', bs=a.bs,
                                  text_vocab=dls_lm.vocab)
    clas_cfg = dict(awd_lstm_clas_config, emb_sz=cfg['emb_sz'], n_hid=cfg['n_hid'], n_layers=cfg['n_layers'],
                    output_p=0.4, hidden_p=0.3, input_p=0.4, embed_p=0.05, weight_p=0.5)
    clas = text_classifier_learner(dls, AWD_LSTM, config=clas_cfg, pretrained=False, drop_mult=a.clas_drop_mult,
                                   metrics=accuracy, path=a.work, cbs=clip)
    clas.load_encoder('enc')
    lr, n_groups = a.clas_lr, cfg['n_layers'] + 2  # embedding, each LSTM, head: as ours
    spread = lambda lr: slice(lr / 2.6 ** (n_groups - 1), lr) if a.discr else lr
    if a.gradual:  # the head, then one more group per stage, as fastai's tutorial does; at half the lr, as ours
        clas.fit_one_cycle(1, spread(lr / 2))
        for n in range(2, n_groups):
            clas.freeze_to(-n)
            clas.fit_one_cycle(1, spread(lr / 2))
    clas.unfreeze()
    clas.fit_one_cycle(a.clas_epochs, spread(lr))
    hist = [list(map(float, v)) for v in clas.recorder.values]
    test_dl = dls.test_dl(test, with_labels=True)
    probs, targs = clas.get_preds(dl=test_dl)
    res['clas_fwd'] = dict(seconds=time.perf_counter() - t, history=hist, lm_history=lm_history, valid_error=1 - hist[-1][2],
                           best_valid_error=1 - max(h[2] for h in hist),
                           test_error=1 - (probs.argmax(1) == targs).float().mean().item())
    return res


# ---- the run --------------------------------------------------------------------------------------------------------
def child_args(a):
    out = ['--size', a.size, '--lm-epochs', str(a.lm_epochs), '--clas-epochs', str(a.clas_epochs), '--seed', str(a.seed),
           '--bs', str(a.bs), '--lm-lr', str(a.lm_lr), '--clas-lr', str(a.clas_lr), '--lm-drop-mult', str(a.lm_drop_mult),
           '--clas-drop-mult', str(a.clas_drop_mult)]
    for flag in ('discr', 'gradual'):
        if not getattr(a, flag): out.append(f'--no-{flag}')
    out += ['--schedule', a.schedule, '--vocab-from', a.vocab_from]
    if a.extend_vocab is not None:
        out += ['--extend-vocab'] + ([a.extend_vocab] if isinstance(a.extend_vocab, str) else [])
    if a.clip is not None: out += ['--clip', str(a.clip)]
    if a.bidir: out.append('--bidir')
    if a.device: out += ['--device', a.device]
    if a.amp: out += ['--amp', a.amp]
    if a.pretrained: out += ['--pretrained', os.path.abspath(a.pretrained)]
    if a.pretrained_bwd: out += ['--pretrained-bwd', os.path.abspath(a.pretrained_bwd)]
    return out


def _row(r, seed):
    "The table rows of one run: forward, and the averaged pair with --bidir."
    c = r.get('clas_fwd', {})
    rows = [[r['impl'], 'fwd', str(seed), fmt(100 * c['valid_error']) if c else r.get('error', '-'),
             fmt(100 * c['best_valid_error']) if c else '-', fmt(100 * c['test_error']) if c else '-',
             fmt(c.get('seconds')), fmt(r.get('process_wall_s'))]]
    if 'bidir' in r:
        rows.append([r['impl'], 'fwd+bwd', str(seed), fmt(100 * r['bidir']['valid_error']), '-',
                     fmt(100 * r['bidir']['test_error']), fmt(c['seconds'] + r['clas_bwd']['seconds']), '-'])
    return rows


def mean_rows(runs):
    "Per implementation and model, the mean and standard deviation over the seeds (rows only where there are 2+)."
    import statistics as st
    rows = []
    for impl in dict.fromkeys(r['impl'] for r in runs):
        for model, key in (('fwd', 'clas_fwd'), ('fwd+bwd', 'bidir')):
            done = [r[key] for r in runs if r['impl'] == impl and key in r]
            if len(done) < 2: continue
            ms = lambda k: (f"{100 * st.mean(d[k] for d in done):.2f} ± {100 * st.stdev(d[k] for d in done):.2f}"
                            if all(k in d for d in done) else '-')
            secs = [d['seconds'] for d in done if 'seconds' in d]
            rows.append([impl, model, f'mean of {len(done)}', ms('valid_error'), ms('best_valid_error'), ms('test_error'),
                         fmt(st.mean(secs)) if secs else '-', '-'])
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--impl', default='both', choices=['ours', 'fastai', 'both'])
    p.add_argument('--fastai-python', default=None, help="the fastai virtualenv's python (needed for fastai's half)")
    add_recipe_args(p, clas_epochs=8, drop_mults=(1.0, 1.0),
                    seed_help='the seed of the validation split and of training')
    p.add_argument('--seeds', type=int, nargs='+', default=None,
                   help='several seeds (each its own validation split): a run per seed and implementation, and the mean')
    p.add_argument('--result', default=None, help=argparse.SUPPRESS)  # child mode
    a = p.parse_args()
    if a.result:  # a child: one implementation, in a fresh process and an empty folder
        a.work = os.getcwd()
        res = run_ours(a) if a.impl == 'ours' else run_fastai(a)
        with open(a.result, 'w') as f: json.dump(res, f)
        return
    impls = ['ours', 'fastai'] if a.impl == 'both' else [a.impl]
    if 'fastai' in impls and not a.fastai_python: sys.exit('fastai needs --fastai-python (see bench/README.md)')
    results = {'machine': machine_facts(), 'args': dict(vars(a)), 'runs': []}
    rows = []
    for seed in a.seeds or [a.seed]:  # both implementations of one seed back to back: they see the same machine load
        a.seed = seed
        for impl in impls:
            py = sys.executable if impl == 'ours' else a.fastai_python
            r = run_child(__file__, impl, py, child_args(a), f'trec6-{impl}-', {'impl': impl}) | {'seed': seed}
            results['runs'].append(r)
            print(json.dumps({k: v for k, v in r.items() if not k.startswith(('lm_', 'clas_'))} |
                             {k: {kk: vv for kk, vv in v.items() if not kk.endswith('history')} for k, v in r.items()
                              if k.startswith(('lm_', 'clas_'))}), flush=True)
            rows += _row(r, seed)
            if a.json_out:  # after every run: a long sweep stopped half way keeps what it measured
                with open(a.json_out, 'w') as f: json.dump(results, f, indent=1)
    print(md_table(['impl', 'model', 'seed', 'valid error %', 'best epoch valid error %', 'test error %',
                    'LM + classifier s', 'process s'], rows + mean_rows(results['runs']), n_text=3))
    exit_if_failed(results['runs'], lambda r: f"{r['impl']} seed {r['seed']}")


if __name__ == '__main__':
    main()
