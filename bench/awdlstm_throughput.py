"""Training throughput of the AWD-LSTM language model and of the ULMFiT classifier, ours and fastai 2.8.12's, in one run.

What is timed: one training step = forward + cross-entropy loss + backward + `torch.optim.Adam(lr=1e-3,
betas=(0.7, 0.99))` step (+ zero_grad), the same torch optimizer for both implementations so that the models are
what is compared. `--warmup` (3) steps are run first and not timed, then `--batches` (10) steps are timed one by
one (on CUDA with a `torch.cuda.synchronize()` before every clock read). Inputs are random token ids from a fixed
seed, drawn from [9, vocab) (ids 0-8 are fastai's special tokens, 1 = xxpad), generated before the clock starts
and identical for both implementations.

  lm    the language model at the paper's size: emb_sz=400, n_hid=1152, n_layers=3, tied decoder with a bias,
        vocab `--vocab` (60,000), dropouts output 0.4, hidden 0.3, input 0.4, embed 0.05, weight 0.5 (the paper's;
        fastai's `awd_lstm_lm_config` with those values put in), bs=`--bs` (64), seq_len=`--seq-len` (70); the
        hidden state is carried from batch to batch (reset once before the warm-up), as in LM training.
        Tokens per step = bs * seq_len.
  enc   (not run unless asked: `--tasks lm,enc,clas`) the LM's encoder alone, the embedding, its dropouts and the
        three LSTMs, with the same batches and the mean square of the last layer's output as a stand-in loss: what
        the LSTMs alone reach, without the decoder's 60k-way product and softmax.
  clas  the classifier: the same encoder config (= fastai's `awd_lstm_clas_config`), BPT3C with seq_len
        `--clas-seq-len` (72) and max_len `--max-len` (1440), the head's defaults (BatchNorm/Dropout/Linear to
        50, ReLU, BatchNorm/Dropout(0.1)/Linear to `--n-class` (2)). Each batch has `--bs` documents whose lengths
        are drawn uniformly from [`--doc-min`, `--doc-max`] (230-1000 tokens, IMDb-like) and sorted longest first
        (as fastai's SortedDL gives them). Each implementation gets the batch in the layout its own data loader
        produces: fastai's `pad_input_chunk` layout (pad_first, padding in whole chunks of seq_len before the
        text, the remainder after it) for fastai; left-padded with pad id 1 for ours. Tokens per step = the real
        (non-pad) tokens of the batch.

Each (implementation, task) runs in its own fresh child process (hidden `--task/--impl/--result` mode): ours with
this interpreter (the project's environment), fastai with `--fastai-python` (a separate virtualenv with fastai
2.8.12; bench/README.md says how to make it). fastai is never imported by ulmfit_learner nor by the ours-child;
the fastai half only calls fastai's `AWD_LSTM`, `get_language_model`, `get_text_classifier`,
`awd_lstm_lm_config`, `awd_lstm_clas_config`. torch's thread count is left at its default (recorded).

Reported per child: ms/step (mean, median, min, max), tokens/s (total tokens / total timed time), peak RSS
(`ru_maxrss`, whole process; RSS after the model is built too), and on CUDA the peak allocated GPU memory of the
timed steps. Then a markdown table and a ratio table (ours tokens/s / fastai tokens/s; > 1 means ours is faster).
For the LM, a third table puts the tokens/s in hardware terms: the step's matrix-product FLOPs (3x the forward's:
the LSTMs' gate products and the decoder's, counted from the config), the TFLOP/s that makes, and its share of
what a plain (8192 x 8192) @ (8192 x 8192) product reaches on the same GPU in the same dtype, measured by the
parent after the children (`--no-peak` skips it; on a CPU it is not measured: there oneDNN's fused LSTM was seen
outrunning torch's fp32 matmul, so a matmul is no ceiling). The LSTMs' share of the FLOPs is given too: at the
paper's size with a 60k vocabulary the decoder does about half of them; `--tasks enc` times the LSTMs alone.

How to run (from the repository root):

    # CPU. On 2 cores (AMD EPYC, 2026-11, machine quiet) one paper-size LM step (bs 64 x 70) took ~6.3 s and one
    # classifier step (bs 64 documents of 230-1000 tokens) ~16-25 s; 2-3x that when the host was busy (watch the
    # load columns). The defaults (3 + 10 steps) are fine for the LM; give the classifier fewer steps
    .venv/bin/python bench/awdlstm_throughput.py --fastai-python /work/fastai-venv/bin/python \
        --tasks lm --json-out /tmp/awd_cpu_lm.json
    .venv/bin/python bench/awdlstm_throughput.py --fastai-python /work/fastai-venv/bin/python \
        --tasks clas --warmup 1 --batches 2 --json-out /tmp/awd_cpu_clas.json
    # padding's share: the same with every document 504 tokens long (no padding: both read the same tokens)
    .venv/bin/python bench/awdlstm_throughput.py --fastai-python /work/fastai-venv/bin/python \
        --tasks clas --bs 16 --doc-min 504 --doc-max 504 --warmup 1 --batches 3
    # fewer/more steps, one task, one side
    .venv/bin/python bench/awdlstm_throughput.py --fastai-python /work/fastai-venv/bin/python \
        --tasks lm --warmup 2 --batches 5
    .venv/bin/python bench/awdlstm_throughput.py --impls ours          # ours only, no fastai needed

    # CUDA: fp32, then bf16 / fp16 autocast (fp16 with a GradScaler); more steps as they are fast there
    .venv/bin/python bench/awdlstm_throughput.py --device cuda --warmup 10 --batches 50 \
        --fastai-python /path/to/fastai-venv/bin/python --json-out /tmp/awd_cuda.json
    .venv/bin/python bench/awdlstm_throughput.py --device cuda --amp bf16 --warmup 10 --batches 50 \
        --fastai-python /path/to/fastai-venv/bin/python
    .venv/bin/python bench/awdlstm_throughput.py --device cuda --amp fp16 --warmup 10 --batches 50 \
        --fastai-python /path/to/fastai-venv/bin/python

(`--amp fp16` is for CUDA: on CPU oneDNN has no fp16 LSTM and both sides fail; `--amp bf16` runs on CPU too.
The fastai venv for CUDA needs a CUDA build of torch, the same version as the project's if the comparison is
to be about the models only.) `--ar-tar` adds AR (alpha 2) and TAR (beta 1) to the LM loss, as ULMFiT's
training does (off by default). Output: a machine-facts JSON line, one JSON line per child on stdout, then the
tables; `--json-out FILE` writes everything as one JSON document (rewritten after every child).
"""
import argparse, json, sys, time

from _common import (cur_rss_mb as _cur_rss_mb, exit_if_failed, fmt, loadavg as _loadavg, machine_facts, md_table,
                     rss_mb as _rss_mb, run_child as run_in_child)

TASKS = ('lm', 'clas', 'enc')
DEFAULT_TASKS = ('lm', 'clas')
IMPLS = ('ours', 'fastai')
PAPER_DROPOUTS = dict(output_p=0.4, hidden_p=0.3, input_p=0.4, embed_p=0.05, weight_p=0.5)
FIRST_ID = 9  # fastai's special tokens are ids 0-8 (1 = xxpad)
PAD = 1


def lm_batches(args, n):
    "n (x, y) pairs of (bs, seq_len) from one random stream, y = x shifted by one (as an LM loader gives them)."
    import torch
    g = torch.Generator().manual_seed(args.seed)
    stream = torch.randint(FIRST_ID, args.vocab, (args.bs, n * args.seq_len + 1), generator=g)
    sl = args.seq_len
    return [(stream[:, i * sl:(i + 1) * sl], stream[:, i * sl + 1:(i + 1) * sl + 1]) for i in range(n)]


def clas_docs(args, n):
    "n batches: a list of bs documents (1-d id tensors), longest first, and bs labels."
    import torch
    g = torch.Generator().manual_seed(args.seed + 1)
    out = []
    for _ in range(n):
        lens = torch.randint(args.doc_min, args.doc_max + 1, (args.bs,), generator=g).sort(descending=True).values
        docs = [torch.randint(FIRST_ID, args.vocab, (int(l),), generator=g) for l in lens]
        out.append((docs, torch.randint(0, args.n_class, (args.bs,), generator=g)))
    return out


def pad_left(docs):
    "Ours: left-padded with PAD to the longest document."
    import torch
    L = max(len(d) for d in docs)
    x = torch.full((len(docs), L), PAD, dtype=torch.long)
    for i, d in enumerate(docs): x[i, L - len(d):] = d
    return x


def pad_chunks(docs, seq_len):
    "fastai's pad_input_chunk layout (pad_first=True): whole seq_len chunks of padding before, the rest after."
    import torch
    L = max(len(d) for d in docs)
    x = torch.full((len(docs), L), PAD, dtype=torch.long)
    for i, d in enumerate(docs):
        before = ((L - len(d)) // seq_len) * seq_len
        x[i, before:before + len(d)] = d
    return x


# ------------------------------------------------------------------------------------------------- the models

def build(args):
    "The model for (args.impl, args.task), on args.device."
    import torch
    torch.manual_seed(args.seed)
    enc = dict(emb_sz=400, n_hid=1152, n_layers=3, pad_token=PAD, **PAPER_DROPOUTS)
    if args.impl == 'fastai':
        from fastai.text.all import (AWD_LSTM, get_language_model, get_text_classifier, awd_lstm_lm_config,
                                     awd_lstm_clas_config)
        if args.task in ('lm', 'enc'):
            cfg = dict(awd_lstm_lm_config); cfg.update(enc); cfg.update(tie_weights=True, out_bias=True)
            model = get_language_model(AWD_LSTM, args.vocab, config=cfg)
        else:
            cfg = dict(awd_lstm_clas_config); cfg.update(enc)
            model = get_text_classifier(AWD_LSTM, args.vocab, args.n_class, seq_len=args.clas_seq_len, config=cfg,
                                        max_len=args.max_len)
        config_used = {k: v for k, v in cfg.items()}
    else:
        from ulmfit_learner.models.awdlstm import AWDLSTM, get_language_model
        if args.task in ('lm', 'enc'):
            model = get_language_model(AWDLSTM, args.vocab, config=dict(enc))
        else:
            from ulmfit_learner.models.classifier import get_text_classifier
            model = get_text_classifier(AWDLSTM, args.vocab, args.n_class, seq_len=args.clas_seq_len,
                                        max_len=args.max_len, config=dict(enc))
        config_used = dict(enc)
    if args.task == 'enc':   # the encoder alone: embedding, dropouts and the three LSTMs
        model = model[0] if args.impl == 'fastai' else model.encoder
    return model.to(args.device), config_used


def _logits(out):
    "fastai's models return (logits, raw, dropped-out); ours the logits (a tuple accepted too)."
    return out[0] if isinstance(out, (tuple, list)) else out


def _ar_tar(model, out, impl, alpha=2., beta=1.):
    "AR on the dropped-out last-layer output, TAR on the raw one (the LM's)."
    if impl == 'fastai': raw, dp = out[1], out[2]
    else: raw, dp = model.last_raw_output, model.last_output
    if isinstance(raw, (list, tuple)): raw = raw[-1]
    if isinstance(dp, (list, tuple)): dp = dp[-1]
    return alpha * dp.float().pow(2).mean() + beta * (raw[:, 1:] - raw[:, :-1]).float().pow(2).mean()


def run_child(args):
    "In the child: build, warm up, time; write the result as JSON to args.result."
    t0 = time.perf_counter()
    import torch
    import torch.nn.functional as F
    res = dict(impl=args.impl, task=args.task, device=args.device, amp=args.amp, torch=torch.__version__,
               torch_threads=torch.get_num_threads(), bs=args.bs, vocab=args.vocab, seed=args.seed,
               warmup=args.warmup, batches=args.batches, ar_tar=bool(args.ar_tar and args.task == 'lm'),
               loadavg1_before=_loadavg())
    dev = torch.device(args.device)
    if dev.type == 'cuda':
        res['gpu'] = torch.cuda.get_device_name(dev)
    n = args.warmup + args.batches
    if args.task in ('lm', 'enc'):
        data = lm_batches(args, n)
        toks = [x.numel() for x, _ in data]
        res.update(seq_len=args.seq_len)
    else:
        docs = clas_docs(args, n)
        lay = (lambda d: pad_chunks(d, args.clas_seq_len)) if args.impl == 'fastai' else pad_left
        data = [(lay(d), y) for d, y in docs]
        toks = [sum(len(t) for t in d) for d, _ in docs]
        res.update(clas_seq_len=args.clas_seq_len, max_len=args.max_len, doc_min=args.doc_min, doc_max=args.doc_max,
                   n_class=args.n_class, padded_tokens_timed=sum(x.numel() for x, _ in data[args.warmup:]),
                   layout='pad_input_chunk (pad_first)' if args.impl == 'fastai' else 'left-padded')
    data = [(x.to(dev), y.to(dev)) for x, y in data]

    model, cfg = build(args)
    res.update(import_build_s=time.perf_counter() - t0, config=cfg,
               n_params=sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()),
               rss_after_build_mb=_cur_rss_mb())
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.7, 0.99))
    amp_dtype = {'none': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}[args.amp]
    scaler = torch.amp.GradScaler(dev.type) if args.amp == 'fp16' else None
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == 'cuda' else (lambda: None)
    if hasattr(model, 'reset'): model.reset()
    elif hasattr(model[0], 'reset'): model[0].reset()

    def step(x, y):
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out = model(x)
            logits = _logits(out)
            if args.task == 'enc': loss = logits.float().pow(2).mean()   # a stand-in loss on the LSTMs' output
            else: loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))
            if res['ar_tar']: loss = loss + _ar_tar(model, out, args.impl)
        if scaler is not None:
            scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
        else:
            loss.backward(); opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for x, y in data[:args.warmup]: step(x, y)
    sync()
    if dev.type == 'cuda': torch.cuda.reset_peak_memory_stats(dev)
    times, losses = [], []
    for x, y in data[args.warmup:]:
        t = time.perf_counter()
        loss = step(x, y)
        sync()
        times.append(time.perf_counter() - t)
        losses.append(float(loss.detach()))
    timed_toks = sum(toks[args.warmup:])
    st = sorted(times)
    res.update(ms_mean=1000 * sum(times) / len(times), ms_median=1000 * st[len(st) // 2], ms_min=1000 * st[0],
               ms_max=1000 * st[-1], tokens_timed=timed_toks, tokens_per_s=timed_toks / sum(times),
               tokens_per_batch_mean=timed_toks / len(times), timed_s=sum(times), loss_first=losses[0],
               loss_last=losses[-1], peak_rss_mb=_rss_mb(), loadavg1_after=_loadavg(),
               child_total_s=time.perf_counter() - t0)
    if dev.type == 'cuda': res['cuda_peak_alloc_mb'] = torch.cuda.max_memory_allocated(dev) / 2**20
    with open(args.result, 'w') as f: json.dump(res, f)


# --------------------------------------------------------------------------------------------------- the parent

def spawn(task, impl, args):
    child = ['--task', task]
    for k in ('device', 'amp', 'vocab', 'bs', 'seq_len', 'clas_seq_len', 'max_len', 'doc_min', 'doc_max', 'n_class',
              'warmup', 'batches', 'seed'):
        child += ['--' + k.replace('_', '-'), str(getattr(args, k))]
    if args.ar_tar: child.append('--ar-tar')
    python = args.fastai_python if impl == 'fastai' else sys.executable
    return run_in_child(__file__, impl, python, child, f'awdbench-{impl}-{task}-', dict(impl=impl, task=task))


def _f(v, nd=1): return fmt(v, nd)


def lm_flops_per_token(cfg, vocab):
    """The language model's forward matrix-product FLOPs per token, (LSTM layers, decoder): a layer of input size i and
    hidden size h does 2 * 4h * (i + h) (the four gates' input and hidden products), the tied decoder 2 * emb * vocab.
    A training step does about 3x the forward's (the backward computes the gradients of both the inputs and the
    weights). Element-wise work (gates, dropout masks, softmax) and the embedding lookup are left out."""
    emb, hid, n = cfg['emb_sz'], cfg['n_hid'], cfg['n_layers']
    ins = [emb] + [hid] * (n - 1)
    outs = [hid] * (n - 1) + [emb]
    return sum(2 * 4 * h * (i + h) for i, h in zip(ins, outs)), 2 * emb * vocab


def matmul_peak(device, amp, n=8192, reps=10):
    """What this device's matrix products reach in the dtype the step computes in (bf16/fp16 under autocast, else
    fp32), in TFLOP/s: the mean of `reps` (n x n) @ (n x n) products after 3 warm-ups. The yardstick for the model's
    share of a GPU. TF32 is left at torch's defaults: off for this matmul, on for cuDNN's LSTM, so in fp32 an LSTM
    may pass 100% of it; under bf16 autocast both run in bf16."""
    import torch
    dev = torch.device(device)
    dtype = {'none': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}[amp]
    g = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(n, n, device=dev, dtype=dtype, generator=g)
    b = torch.randn(n, n, device=dev, dtype=dtype, generator=g)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == 'cuda' else (lambda: None)
    for _ in range(3): a @ b
    sync()
    t = time.perf_counter()
    for _ in range(reps): a @ b
    sync()
    return dict(n=n, dtype=str(dtype).replace('torch.', ''), tflops=2 * n ** 3 * reps / (time.perf_counter() - t) / 1e12)


def add_flops(results, peak):
    "The LM and encoder rows' achieved TFLOP/s (3x the forward's over the measured tokens/s) and their share of `peak`."
    for r in results:
        if 'error' in r or r['task'] not in ('lm', 'enc'): continue
        lstm, dec = lm_flops_per_token(r['config'], r['vocab'])
        if r['task'] == 'enc': dec = 0
        r.update(lm_fwd_flops_per_token=lstm + dec, lstm_flops_share=lstm / (lstm + dec),
                 tflops=3 * (lstm + dec) * r['tokens_per_s'] / 1e12)
        if peak: r['share_of_matmul_peak'] = r['tflops'] / peak['tflops']


def flops_table(results, peak):
    rows = [[r['impl'], r['task'], f"{r['device']}/{r['amp']}", f"{r['lm_fwd_flops_per_token'] / 1e6:.1f}",
             f"{100 * r['lstm_flops_share']:.0f}%", _f(r['tflops'], 2),
             f"{100 * r['share_of_matmul_peak']:.1f}%" if 'share_of_matmul_peak' in r else '-']
            for r in results if 'tflops' in r]
    head = ['impl', 'task', 'device/amp', 'fwd MFLOP/token', 'LSTM share', 'TFLOP/s (3x fwd)',
            f"of the {peak['dtype']} matmul peak ({peak['tflops']:.1f} TFLOP/s, n={peak['n']})" if peak else 'of peak']
    return md_table(head, rows, n_text=3)


def summary(results):
    headers = ['impl', 'task', 'device/amp', 'threads', 'tokens/step', 'ms/step mean', 'median', 'min', 'max', 'tokens/s',
               'peak RSS MB', 'GPU peak MB', 'load before/after']
    rows = []
    for r in results:
        if 'error' in r: rows.append([r['impl'], r['task'], r['error']]); continue
        rows.append([r['impl'], r['task'], f"{r['device']}/{r['amp']}", _f(r['torch_threads']),
                     _f(r['tokens_per_batch_mean'], 0), _f(r['ms_mean']), _f(r['ms_median']), _f(r['ms_min']),
                     _f(r['ms_max']), _f(r['tokens_per_s'], 0), _f(r['peak_rss_mb'], 0),
                     _f(r.get('cuda_peak_alloc_mb'), 0), f"{_f(r['loadavg1_before'], 2)}/{_f(r['loadavg1_after'], 2)}"])
    return md_table(headers, rows, n_text=3)


def ratios(results):
    ok = {(r['impl'], r['task']): r for r in results if 'error' not in r}
    rows = []
    for task in TASKS:
        o, f = ok.get(('ours', task)), ok.get(('fastai', task))
        if o is None or f is None: continue
        rows.append([task, f"{o['tokens_per_s'] / f['tokens_per_s']:.2f}x", f"{f['ms_mean'] / o['ms_mean']:.2f}x",
                     f"{o['peak_rss_mb']:,.0f} / {f['peak_rss_mb']:,.0f}"])
    return md_table(['task', 'tokens/s ours / fastai', 'ms/step (mean) fastai / ours', 'peak RSS ours / fastai MB'],
                    rows, n_text=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--tasks', default=','.join(DEFAULT_TASKS), help=f'comma-separated, of {TASKS}')
    ap.add_argument('--impls', default='ours,fastai', help='comma-separated, of ours,fastai (fastai needs --fastai-python)')
    ap.add_argument('--fastai-python', default=None, help='a Python with fastai 2.8.12 installed; without it, ours only')
    ap.add_argument('--device', default='cpu', help='cpu, cuda, cuda:1, ...')
    ap.add_argument('--amp', choices=('none', 'bf16', 'fp16'), default='none', help='autocast dtype (fp16: GradScaler)')
    ap.add_argument('--vocab', type=int, default=60_000)
    ap.add_argument('--bs', type=int, default=64)
    ap.add_argument('--seq-len', type=int, default=70, help='LM: tokens per row per step')
    ap.add_argument('--clas-seq-len', type=int, default=72, help='classifier: BPT3C chunk length')
    ap.add_argument('--max-len', type=int, default=1440, help='classifier: last positions kept for pooling')
    ap.add_argument('--doc-min', type=int, default=230, help='classifier: shortest document (tokens)')
    ap.add_argument('--doc-max', type=int, default=1000, help='classifier: longest document (tokens)')
    ap.add_argument('--n-class', type=int, default=2)
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--batches', type=int, default=10, help='timed steps')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--ar-tar', action='store_true', help='LM: add AR (2) and TAR (1) to the loss')
    ap.add_argument('--no-peak', action='store_true',
                    help="CUDA: skip measuring the GPU's matrix-product peak (the yardstick of the TFLOP/s table)")
    ap.add_argument('--json-out', default=None)
    ap.add_argument('--impl', choices=IMPLS, default=None, help=argparse.SUPPRESS)   # internal: child mode
    ap.add_argument('--task', choices=TASKS, default=None, help=argparse.SUPPRESS)
    ap.add_argument('--result', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.task:
        return run_child(args)

    facts = machine_facts()
    print(json.dumps(dict(machine=facts)), flush=True)
    doc = dict(machine=facts, argv=sys.argv[1:], results=[])
    impls = [i.strip() for i in args.impls.split(',') if i.strip()]
    for i in impls:
        if i not in IMPLS: ap.error(f'unknown impl {i!r}')
    if 'fastai' in impls and not args.fastai_python:
        print('(no --fastai-python: fastai skipped)', file=sys.stderr); impls.remove('fastai')
    tasks = [t.strip() for t in args.tasks.split(',') if t.strip()]
    for t in tasks:
        if t not in TASKS: ap.error(f'unknown task {t!r}')
    for task in tasks:
        for impl in impls:
            res = spawn(task, impl, args)
            doc['results'].append(res)
            print(json.dumps(res), flush=True)
            if args.json_out:
                with open(args.json_out, 'w') as f: json.dump(doc, f, indent=1)
    print()
    print(f"torch {facts['torch']}, python {facts['python']}, {facts['cpu_count']} CPUs ({facts.get('cpu_model')}), "
          f"device {args.device}, amp {args.amp}; LM bs={args.bs} seq_len={args.seq_len}; classifier bs={args.bs} "
          f"docs {args.doc_min}-{args.doc_max} tokens, seq_len={args.clas_seq_len}, max_len={args.max_len}; "
          f"vocab {args.vocab:,}; {args.warmup} warm-up + {args.batches} timed steps"
          + (f'; fastai 2.8.12 in {args.fastai_python}' if args.fastai_python else ''))
    if {'lm', 'enc'} & set(tasks):
        on_gpu = args.device.startswith('cuda')
        doc['matmul_peak'] = matmul_peak(args.device, args.amp) if on_gpu and not args.no_peak else None
        add_flops(doc['results'], doc['matmul_peak'])
        if args.json_out:
            with open(args.json_out, 'w') as f: json.dump(doc, f, indent=1)
    print(summary(doc['results']))
    if len(impls) > 1:
        print()
        print(ratios(doc['results']))
    if any('tflops' in r for r in doc['results']):
        print()
        print(flops_table(doc['results'], doc['matmul_peak']))
    exit_if_failed(doc['results'], lambda r: f"{r['impl']} {r['task']}")


if __name__ == '__main__':
    main()
