"""The text pipeline on IMDb, ours and fastai's default one side by side, in the same run.

Run from the project's environment; fastai (no dependency of ulmfit_learner) runs in a separate virtualenv
whose Python is given with --fastai-python (bench/README.md says how to make it):

    python bench/text_pipeline.py --n-docs 10000 --fastai-python /work/fastai-venv/bin/python --json-out /tmp/t10k.json
    python bench/text_pipeline.py --fastai-python /work/fastai-venv/bin/python     # all 100k reviews

The fastai half only CALLS fastai; it copies none of its code. Each (implementation, stage) runs in a fresh
child process (`--stage NAME --impl IMPL` below), in a new empty temporary directory (cwd, FASTAI_HOME, our
token cache) that is removed afterwards, so nothing is reused between stages and each stage's peak RSS is its own.
Ours runs with `--our-workers` tokenizer processes (default: 0 and 2, two rows; fastai uses its default,
`defaults.cpus`). The fastai stages are:

  tokenize  `tokenize_df(df, text_cols='text')` with fastai's default n_workers (defaults.cpus):
            wall time, docs/s, tokens/s (tokens = sum of the result's `text_length`, special tokens
            such as xxbos/xxmaj included), vocabulary (Counter) size.
  lm        `TextDataLoaders.from_df(df, text_col='text', is_lm=True, valid_pct=0.1, seed=42, bs=64, seq_len=72)`:
            wall time of the call (tokenization + vocab + LM loader set-up), time to the first train batch
            (`next(iter(dls.train))`, includes the epoch's shuffle/chunking), mean time per batch over the next
            `--lm-batches` (200) batches.
  clas      on the labelled reviews (train+test), `TextDataLoaders.from_df(df, text_col='text',
            label_col='label', valid_pct=0.1, seed=42, bs=64)`: wall time, first train batch time, and the
            mean time per batch over the next `--clas-batches` (50) batches.

Documents: the corpus is train.csv.xz, test.csv.xz, unsup.csv.xz concatenated in that order (100,000 rows;
labelled = the first 50,000). `--n-docs N` keeps N of them, chosen as
`sorted(numpy.random.RandomState(0).permutation(len(pool))[:N])` (corpus order kept), where the pool is all
100k reviews for `tokenize` and `lm`, and the 50k labelled ones for `clas`. The other half of the benchmark
should select the same rows.

Peak RSS: `resource.getrusage(RUSAGE_SELF).ru_maxrss` in the stage's child, read after the imports
(`rss_after_import_mb`) and after reading the CSVs (`read_peak_rss_mb`: parsing all three .csv.xz files peaks
higher than what stays). Then `base_rss_mb` (current VmRSS, after gc) is taken and the high-water mark is reset
(`/proc/self/clear_refs` <- 5, `peak_reset`), so `peak_rss_mb`, read at the end, is the stage's own peak
(base included) and `peak_rss_over_base_mb` what the stage added. `RUSAGE_CHILDREN` at the end gives the largest
peak RSS of any process the stage forked and reaped (fastai's tokenizer pool, DataLoader workers); forked
workers share the parent's pages, so their RSS counts pages counted in the parent too.

CPU time (`cpu_self_s`, `cpu_children_s`: user+sys over the stage, after the CSV read) and the 1-minute load
average before and after each stage are recorded too: on a shared machine a load above the core count means the
wall times were taken with the cores contended.

Output: one JSON line per stage on stdout (and a machine-facts line first), then a markdown table;
`--json-out FILE` writes everything as one JSON document, rewritten after every stage (so a long run that is
cut off still leaves its finished stages there).
"""
import argparse, gc, json, os, resource, sys, time

from _common import cur_rss_mb as _cur_rss_mb, exit_if_failed, fmt as _f, loadavg as _loadavg, machine_facts, md_table, rss_mb as _rss_mb, run_child

DATA = '/work/shared/data/imdb'
SPLITS = ('train', 'test', 'unsup')
STAGES = ('tokenize', 'lm', 'clas')


def _cpu_s():
    "CPU seconds (user+sys) of this process and of its reaped children."
    me, ch = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, ch.ru_utime + ch.ru_stime


def _reset_peak_rss():
    "Linux: writing 5 to /proc/self/clear_refs resets the peak-RSS high-water mark (and so ru_maxrss)."
    try:
        with open('/proc/self/clear_refs', 'w') as f: f.write('5')
        return True
    except OSError: return False


def load_docs(data_dir, labelled_only, n_docs):
    import numpy as np, pandas as pd
    dfs = [pd.read_csv(os.path.join(data_dir, f'{s}.csv.xz'), keep_default_na=False)
           for s in (SPLITS[:2] if labelled_only else SPLITS)]
    df = pd.concat(dfs, ignore_index=True)
    if n_docs is not None and n_docs < len(df):
        idx = np.sort(np.random.RandomState(0).permutation(len(df))[:n_docs])
        df = df.iloc[idx].reset_index(drop=True)
    return df


def run_stage(args):
    "Runs in the child: one stage, cold, and writes its result as JSON to args.result."
    t0 = time.perf_counter()
    import torch
    if args.impl == 'fastai':
        from fastai.text.all import TextDataLoaders, tokenize_df, defaults
    else:
        import ulmfit_learner  # noqa: F401 (imports counted like fastai's)
    res = dict(impl=args.impl, stage=args.stage, n_docs_requested=args.n_docs, import_s=time.perf_counter() - t0,
               rss_after_import_mb=_rss_mb(), torch_threads=torch.get_num_threads())
    if args.impl == 'fastai': res['fastai_default_cpus'] = defaults.cpus
    t = time.perf_counter()
    df = load_docs(args.data_dir, labelled_only=args.stage == 'clas', n_docs=args.n_docs)
    gc.collect()
    res.update(n_docs=len(df), read_csv_s=time.perf_counter() - t, read_peak_rss_mb=_rss_mb(),
               base_rss_mb=_cur_rss_mb())
    # the full corpus is parsed even for a subset: reset the high-water mark so that the stage's peak is its own
    res['peak_reset'] = _reset_peak_rss()
    res['loadavg1_before'] = _loadavg()
    cpu0 = _cpu_s()

    if args.impl != 'fastai':
        run_ours(args, res, df)
        return _finish(res, t0, cpu0, _cpu_s(), args)

    if args.stage == 'tokenize':
        n_workers = defaults.cpus if args.n_workers is None else args.n_workers
        t = time.perf_counter()
        out, counter = tokenize_df(df, text_cols='text', n_workers=n_workers)
        wall = time.perf_counter() - t
        n_tok = int(out['text_length'].sum())
        res.update(n_workers=n_workers, wall_s=wall, docs_per_s=len(df) / wall, tokens=n_tok,
                   tokens_per_s=n_tok / wall, vocab_counter_size=len(counter))

    elif args.stage == 'lm':
        t = time.perf_counter()
        dls = TextDataLoaders.from_df(df, text_col='text', is_lm=True, valid_pct=0.1, seed=42, bs=64, seq_len=72)
        wall = time.perf_counter() - t
        res.update(wall_s=wall, docs_per_s=len(df) / wall, rss_after_build_mb=_rss_mb(),
                   vocab_size=len(dls.vocab), train_batches=len(dls.train), valid_batches=len(dls.valid),
                   dl_num_workers=dls.train.fake_l.num_workers)
        res.update(_time_batches(dls.train, args.lm_batches))

    elif args.stage == 'clas':
        t = time.perf_counter()
        dls = TextDataLoaders.from_df(df, text_col='text', label_col='label', valid_pct=0.1, seed=42, bs=64)
        wall = time.perf_counter() - t
        res.update(wall_s=wall, docs_per_s=len(df) / wall, rss_after_build_mb=_rss_mb(),
                   vocab_size=len(dls.vocab[0]), classes=list(map(str, dls.vocab[1])), train_batches=len(dls.train),
                   valid_batches=len(dls.valid), dl_num_workers=dls.train.fake_l.num_workers)
        res.update(_time_batches(dls.train, args.clas_batches))

    cpu1 = _cpu_s()
    _finish(res, t0, cpu0, cpu1, args)


def run_ours(args, res, df):
    "Our pipeline, the same three stages (tokenizer processes: args.n_workers)."
    from ulmfit_learner import TextDataLoaders, Tokenizer, tokenize_texts
    nw = args.n_workers or 0
    res['n_workers'] = nw
    if args.stage == 'tokenize':
        t = time.perf_counter()
        corpus = tokenize_texts(df['text'].tolist(), Tokenizer(), n_workers=nw, progress=False)
        wall = time.perf_counter() - t
        res.update(wall_s=wall, docs_per_s=len(df) / wall, tokens=int(corpus.n_tokens),
                   tokens_per_s=corpus.n_tokens / wall, vocab_counter_size=len(corpus.tokens))
        return
    t = time.perf_counter()
    if args.stage == 'lm':
        dls = TextDataLoaders.from_df(df, text_col='text', is_lm=True, valid_pct=0.1, seed=42, bs=64, seq_len=72,
                                      n_workers=nw, progress=False)
    else:
        dls = TextDataLoaders.from_df(df, text_col='text', label_col='label', valid_pct=0.1, seed=42, bs=64,
                                      n_workers=nw, progress=False)
    wall = time.perf_counter() - t
    res.update(wall_s=wall, docs_per_s=len(df) / wall, rss_after_build_mb=_rss_mb(), vocab_size=len(dls.vocab),
               train_batches=len(dls.train), valid_batches=len(dls.valid), dl_num_workers=0)
    res.update(_time_batches(dls.train, args.lm_batches if args.stage == 'lm' else args.clas_batches))


def _finish(res, t0, cpu0, cpu1, args):
    res.update(cpu_self_s=cpu1[0] - cpu0[0], cpu_children_s=cpu1[1] - cpu0[1], loadavg1_after=_loadavg())
    res.update(peak_rss_mb=_rss_mb(), peak_rss_children_mb=_rss_mb(resource.RUSAGE_CHILDREN),
               stage_total_s=time.perf_counter() - t0)
    res['peak_rss_over_base_mb'] = res['peak_rss_mb'] - res['base_rss_mb']
    with open(args.result, 'w') as f: json.dump(res, f)


def _time_batches(dl, n):
    "First batch (iter + next: includes the epoch's shuffle and worker start-up), then n more; wraps epochs."
    t = time.perf_counter()
    it = iter(dl); xb = next(it)
    first = time.perf_counter() - t
    shape = [list(o.shape) for o in xb] if isinstance(xb, (tuple, list)) else list(xb.shape)
    times, done = [], 0
    while done < n:
        t = time.perf_counter()
        try: next(it)
        except StopIteration:
            it = iter(dl); continue  # re-iteration cost is not counted as a batch
        times.append(time.perf_counter() - t); done += 1
    del it
    mean = sum(times) / len(times) if times else None
    return dict(first_batch_s=first, first_batch_shape=shape, timed_batches=len(times), mean_batch_s=mean,
                batches_per_s=1 / mean if mean else None)


def spawn(stage, args, impl, n_workers=None):
    child = ['--stage', stage, '--data-dir', os.path.abspath(args.data_dir), '--lm-batches', str(args.lm_batches),
             '--clas-batches', str(args.clas_batches)]
    if args.n_docs is not None: child += ['--n-docs', str(args.n_docs)]
    if n_workers is not None: child += ['--n-workers', str(n_workers)]
    python = args.fastai_python if impl == 'fastai' else sys.executable
    return run_child(__file__, impl, python, child, f'textbench-{impl}-{stage}-',
                     dict(impl=impl, stage=stage, n_docs_requested=args.n_docs))


def summary(results):
    headers = ['impl', 'stage', 'docs', 'wall s', 'docs/s', 'tokens/s', 'first batch s', 'mean batch ms', 'batches',
               'base RSS MB', 'stage peak RSS MB', 'peak over base MB', 'peak RSS children MB', 'CPU s (self+children)',
               'load before/after']
    rows = []
    for r in results:
        if 'error' in r: rows.append([r['impl'], r['stage'], '-', r['error']]); continue
        mb = r.get('mean_batch_s')
        impl = r['impl'] + (f" (w={r['n_workers']})" if 'n_workers' in r else '')
        rows.append([impl, r['stage'], _f(r['n_docs']), _f(r['wall_s']), _f(r.get('docs_per_s'), 0),
                     _f(r.get('tokens_per_s'), 0), _f(r.get('first_batch_s'), 3), _f(mb * 1000 if mb else None),
                     _f(r.get('train_batches')), _f(r['base_rss_mb'], 0), _f(r['peak_rss_mb'], 0),
                     _f(r['peak_rss_over_base_mb'], 0), _f(r['peak_rss_children_mb'], 0),
                     _f(r['cpu_self_s'] + r['cpu_children_s'], 1), f"{_f(r['loadavg1_before'])}/{_f(r['loadavg1_after'])}"])
    return md_table(headers, rows)


def ratios(results):
    "Ours against fastai, stage by stage: throughput (docs/s) and peak RSS over the base."
    fa = {r['stage']: r for r in results if r.get('impl') == 'fastai' and 'error' not in r}
    rows = []
    for r in results:
        if r.get('impl') != 'ours' or 'error' in r or r['stage'] not in fa: continue
        f = fa[r['stage']]
        cpu_o, cpu_f = r['cpu_self_s'] + r['cpu_children_s'], f['cpu_self_s'] + f['cpu_children_s']
        rows.append([f"w={r.get('n_workers')}", r['stage'], f"{r['docs_per_s'] / f['docs_per_s']:.2f}x",
                     f"{cpu_f / cpu_o:.2f}x", f"{r['peak_rss_over_base_mb']:,.0f} / {f['peak_rss_over_base_mb']:,.0f}"])
    return md_table(['ours', 'stage', 'docs/s ours / fastai', 'CPU s fastai / ours',
                     'peak RSS over base: ours / fastai MB'], rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--n-docs', type=int, default=None, help='subset size (default: all 100k; clas uses the 50k labelled)')
    ap.add_argument('--stages', default=','.join(STAGES), help=f'comma-separated, of {STAGES}')
    ap.add_argument('--data-dir', default=DATA)
    ap.add_argument('--our-workers', default='0,2', help='tokenizer processes for our pipeline, one row each')
    ap.add_argument('--fastai-python', default=None, help="a Python with fastai installed; without it, ours only")
    ap.add_argument('--lm-batches', type=int, default=200)
    ap.add_argument('--clas-batches', type=int, default=50)
    ap.add_argument('--json-out', default=None)
    ap.add_argument('--impl', choices=('ours', 'fastai'), default='ours', help=argparse.SUPPRESS)
    ap.add_argument('--n-workers', type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument('--stage', choices=STAGES, help=argparse.SUPPRESS)   # internal: run one stage in this process
    ap.add_argument('--result', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:
        return run_stage(args)

    facts = machine_facts(('ulmfit_learner', 'torch', 'spacy', 'pandas', 'numpy'))
    print(json.dumps(dict(machine=facts)), flush=True)
    doc = dict(machine=facts, argv=sys.argv[1:], results=[])
    runs = [('ours', int(w)) for w in args.our_workers.split(',') if w.strip()]
    if args.fastai_python: runs.append(('fastai', None))
    for stage in [s.strip() for s in args.stages.split(',') if s.strip()]:
        if stage not in STAGES: ap.error(f'unknown stage {stage!r}')
        for impl, nw in runs:
            res = spawn(stage, args, impl, nw)
            doc['results'].append(res)
            print(json.dumps(res), flush=True)
            if args.json_out:
                with open(args.json_out, 'w') as f: json.dump(doc, f, indent=1)
    print()
    print(f"torch {facts['torch']}, spacy {facts['spacy']}, pandas {facts['pandas']}, python {facts['python']}, "
          f"{facts['cpu_count']} CPUs ({facts.get('cpu_model')})" + (' ; fastai 2.8.12 in ' + args.fastai_python
                                                                     if args.fastai_python else ''))
    print(summary(doc['results']))
    if args.fastai_python:
        print()
        print(ratios(doc['results']))
    exit_if_failed(doc['results'], lambda r: f"{r['impl']} {r['stage']}")


if __name__ == '__main__':
    main()
