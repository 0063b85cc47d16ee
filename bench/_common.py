"""What the side-by-side benchmarks share: memory and load readings, machine facts, running one measurement in a
fresh child process, and number formatting. Standard library only: fastai's virtualenv imports it too."""
import json, os, platform, resource, shutil, subprocess, sys, tempfile, time


def rss_mb(who=resource.RUSAGE_SELF):
    "Peak resident memory (MB) of this process, or of its largest reaped child."
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: KiB


def cur_rss_mb():
    "Current resident memory (MB)."
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmRSS:'): return int(line.split()[1]) / 1024
    except OSError: return None


def loadavg():
    try: return os.getloadavg()[0]
    except OSError: return None


def machine_facts(packages=('ulmfit_learner', 'torch')):
    import importlib.metadata as md
    facts = dict(python=platform.python_version(), platform=platform.platform(), machine=platform.machine(),
                 cpu_count=os.cpu_count(), cpu_affinity=len(os.sched_getaffinity(0)))
    try:
        with open('/proc/cpuinfo') as f:
            facts['cpu_model'] = next((l.split(':', 1)[1].strip() for l in f if l.startswith('model name')), None)
        with open('/proc/meminfo') as f:
            facts['mem_total_gb'] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError: pass
    for pkg in packages:
        try: facts[pkg] = md.version(pkg)
        except md.PackageNotFoundError: facts[pkg] = None
    return facts


def run_child(script, impl, python, child_args, prefix, failure):
    """Run `script --impl impl --result FILE *child_args` with `python` in a fresh empty temporary directory
    (also FASTAI_HOME), and return the JSON it wrote plus `process_wall_s`; `failure` (a dict) if it failed."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    result = os.path.join(tmp, 'result.json')
    cmd = [python, os.path.abspath(script), '--impl', impl, '--result', result, *child_args]
    env = dict(os.environ, FASTAI_HOME=os.path.join(tmp, 'fastai_home'), PYTHONDONTWRITEBYTECODE='1')
    # ours is imported from the repository (the child's cwd is the temporary directory)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(script)))
    if impl == 'ours': env['PYTHONPATH'] = repo + os.pathsep + env.get('PYTHONPATH', '')
    t = time.perf_counter()
    try:
        # the child's own output (warnings, progress bars) goes to stderr, keeping stdout for results
        p = subprocess.run(cmd, cwd=tmp, env=env, stdout=sys.stderr, stderr=sys.stderr)
        if p.returncode != 0 or not os.path.exists(result): return dict(failure, error=f'child exited {p.returncode}')
        with open(result) as f: res = json.load(f)
        res['process_wall_s'] = time.perf_counter() - t
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def exit_if_failed(results, name):
    """After the tables: exit non-zero, naming them (`name(r)`), if any of `results` failed (a run missing a half
    is no comparison, and a script calling this one must see it)."""
    failed = [name(r) for r in results if 'error' in r]
    if failed: sys.exit(f"failed: {', '.join(failed)} (their errors above)")


def fmt(v, nd=2):
    "A table cell: '-' for None, thousands separators, `nd` decimals for floats."
    if v is None: return '-'
    if isinstance(v, float): return f'{v:,.{nd}f}'
    if isinstance(v, int): return f'{v:,}'
    return str(v)


def md_table(headers, rows, n_text=2):
    "A markdown table: the first `n_text` columns left-aligned, the rest right-aligned; short rows padded."
    line = lambda cells: '| ' + ' | '.join(list(cells) + [''] * (len(headers) - len(cells))) + ' |'
    sep = '|' + '|'.join('---' if i < n_text else '---:' for i in range(len(headers))) + '|'
    return '\n'.join([line(headers), sep, *map(line, rows)])


# The AWD-LSTM sizes the ULMFiT benchmarks offer: the paper's, the demo's, and one only to check that a script runs.
SIZES = {'paper': dict(emb_sz=400, n_hid=1152, n_layers=3), 'small': dict(emb_sz=100, n_hid=384, n_layers=2),
         'tiny': dict(emb_sz=16, n_hid=32, n_layers=1)}


def add_recipe_args(p, clas_epochs, drop_mults, seed_help='the seed of the data split and of training'):
    """The ULMFiT benchmarks' shared options (what `ours_by_direction` reads), added to the `argparse` parser `p`; the
    defaults are the paper's except `clas_epochs` and `drop_mults` (LM, classifier), which differ per dataset."""
    p.add_argument('--size', default='paper', choices=list(SIZES))
    p.add_argument('--lm-epochs', type=int, default=10)
    p.add_argument('--clas-epochs', type=int, default=clas_epochs,
                   help='epochs with every group unfrozen, after gradual unfreezing')
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--lm-lr', type=float, default=4e-3)
    p.add_argument('--clas-lr', type=float, default=1e-2)
    p.add_argument('--lm-drop-mult', type=float, default=drop_mults[0])
    p.add_argument('--clas-drop-mult', type=float, default=drop_mults[1])
    p.add_argument('--no-discr', dest='discr', action='store_false', help='one lr for every layer group')
    p.add_argument('--schedule', default='stlr', choices=['stlr', 'one_cycle', 'constant'],  # ulmfit_learner.SCHEDULES
                   help="ours' lr schedule: ULMFiT's STLR (the paper), one cycle with beta1 cycled 0.8-0.7-0.8, or constant")
    p.add_argument('--clip', type=float, default=None, help="clip the gradients' global norm to this before every step")
    p.add_argument('--no-stlr', dest='schedule', action='store_const', const='constant', default='stlr',
                   help='a constant lr instead of STLR (--schedule constant)')
    p.add_argument('--no-gradual', dest='gradual', action='store_false', help='every group trained from the first epoch')
    p.add_argument('--bidir', action='store_true', help='also the backward model; report the averaged classifiers')
    p.add_argument('--pretrained', default=None, help='a pretrained forward LM bundle (else no general-domain pretraining)')
    p.add_argument('--pretrained-bwd', default=None, help='a pretrained backward LM bundle, for --bidir')
    p.add_argument('--vocab-from', default='train', choices=['train', 'all'],  # ulmfit_learner.VOCAB_FROM
                   help="ours: the documents the vocabulary counts, the training ones or the validation ones too "
                        "(fastai's recipe always counts both)")
    p.add_argument('--extend-vocab', nargs='?', const=True, default=None, choices=['classifier', 'off'],
                   help="ours, with --pretrained: add the pretrained models' vocabulary after the task's (their words "
                        "missing from the training text keep their vectors) in both stages, or with 'classifier' in "
                        "the classifier's only (the library's default), or not at all with 'off' (the default before "
                        "2026-12-07)")
    p.add_argument('--seed', type=int, default=42, help=seed_help)
    p.add_argument('--device', default=None)
    p.add_argument('--amp', default=None, choices=['bf16', 'fp16'])
    p.add_argument('--json-out', default=None)


def ours_by_direction(a, train, test, work, sizes, **stage_kwargs):
    """ULMFiT's stages 2 and 3 with the library's recipe (`ulmfit_learner.recipe.ulmfit_stages`, the code of `ulmfit
    train`) for the forward model, and for the backward one too with `a.bidir`: {direction: errors, times, histories},
    and 'bidir' with the averaged pair's test error. `a` holds the benchmarks' shared options."""
    from ulmfit_learner import bidirectional_preds, set_seed, ulmfit_stages
    results, learners = {}, {}
    for direction in (['fwd', 'bwd'] if a.bidir else ['fwd']):
        bwd = direction == 'bwd'
        pretrained = a.pretrained_bwd if bwd else a.pretrained
        set_seed(a.seed)
        t = time.perf_counter()
        lm, clas = ulmfit_stages(train, os.path.join(work, direction), pretrained=pretrained,
                                 config=None if pretrained else sizes, lm_epochs=a.lm_epochs, clas_epochs=a.clas_epochs,
                                 lm_lr=a.lm_lr, clas_lr=a.clas_lr, bs=a.bs, seq_len=70, seed=a.seed, device=a.device,
                                 backwards=bwd, discr=a.discr, schedule=a.schedule, gradual=a.gradual,
                                 lm_drop_mult=a.lm_drop_mult, clas_drop_mult=a.clas_drop_mult, amp=a.amp, clip=a.clip,
                                 vocab_from=a.vocab_from,
                                 extend_vocab={'off': False}.get(a.extend_vocab, a.extend_vocab), **stage_kwargs)
        hist, acc = clas.recorder.values, clas.recorder.metric_names.index('accuracy')  # the last fit's epochs
        test_dl = clas.dls.test_dl(test.text, labels=test.label)
        probs, targs = clas.get_preds(dl=test_dl)
        results[direction] = dict(seconds=time.perf_counter() - t, valid_error=1 - hist[-1][acc],
                                  best_valid_error=1 - max(h[acc] for h in hist), **_test_errors(probs, targs),
                                  history=hist, columns=clas.recorder.metric_names,
                                  lm_history=lm.recorder.values, lm_columns=lm.recorder.metric_names,
                                  vocab_size=len(clas.dls.vocab), lm_vocab_size=len(lm.dls.vocab))
        learners[direction] = (clas, test_dl)
    if a.bidir:
        (f, f_test), (b, b_test) = learners['fwd'], learners['bwd']
        p, t = bidirectional_preds(f, b)
        pt, tt = bidirectional_preds(f, b, f_test, b_test)
        results['bidir'] = dict(valid_error=1 - (p.argmax(1) == t).float().mean().item(),
                                **_test_errors(pt, tt))
    return results


def _test_errors(probs, targs) -> dict:
    "`test_error` and `test_wrong`, the positions of the documents a classifier gets wrong (in the test set's order)."
    wrong = (probs.argmax(1) != targs).nonzero().flatten().tolist()
    return dict(test_error=len(wrong) / len(targs), test_wrong=wrong)
