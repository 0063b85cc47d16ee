"""How fast `ulmfit_learner.pretrain` runs, end to end, on a slice of a corpus: what a full pretraining would cost.

Stage 1 of ULMFiT (a general-domain language model) on the whole of `../shared/data/general-corpus` is hours of
GPU work, more than a benchmark run can spend. This runs the real thing, `pretrain()` with its tokenization, cache,
loaders, mixed precision and checkpoint-free training, on `--max-docs` articles of a corpus for `--epochs` epochs,
and reports:

- the tokenization's seconds and our tokens per whitespace-separated word on this corpus,
- each epoch's seconds (training and the validation pass) and the training tokens per second,
- the validation perplexity per epoch (a real, if short, training run: it must go down),
- what one epoch over `general-corpus/train.txt.xz` (26,531,314 whitespace tokens, its README) would take at the
  last epoch's rate (the first pays for cuDNN's and the allocator's warm-up).

    .venv/bin/python bench/pretrain_speed.py ../shared/data/general-corpus/valid.txt.xz --size small \\
        --max-docs 40 --epochs 2 --json-out /tmp/pretrain_cpu.json                  # CPU, minutes
    python bench/pretrain_speed.py .gpu/data/general-corpus/valid.txt.xz --device cuda --precision bf16 \\
        --n-workers 8 --epochs 2 --json-out $OUT/pretrain_cuda.json                  # the GPU session's probe

`--size` is the AWD-LSTM's (bench/_common.SIZES: paper = emb 400, hidden 1152, 3 layers); the rest are
`pretrain()`'s own defaults: bs 64, BPTT 70, lr 4e-3 with STLR, the paper's dropouts, vocabulary of at most 60,000
tokens seen 3 times or more. Stdout: one JSON document, then a markdown table.
"""
import argparse, json, os, shutil, sys, tempfile, time

from _common import SIZES, fmt, machine_facts, md_table

TRAIN_WORDS = 26_531_314  # general-corpus/train.txt.xz, whitespace tokens (its README)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('corpus', help='a corpus file pretrain() reads (WikiText-style articles, .xz allowed)')
    ap.add_argument('--size', default='paper', choices=list(SIZES))
    ap.add_argument('--max-docs', type=int, default=None, help='read only the first N articles')
    ap.add_argument('--epochs', type=int, default=2)
    ap.add_argument('--device', default=None, help='cpu, cuda, ... (default: cuda if available)')
    ap.add_argument('--precision', default='auto', choices=('auto', 'bf16', 'fp16', 'fp32'))
    ap.add_argument('--n-workers', type=int, default=0, help='tokenizer processes (0: in this process)')
    ap.add_argument('--valid-pct', type=float, default=0.05)
    ap.add_argument('--json-out', default=None)
    a = ap.parse_args(argv)

    import torch
    from ulmfit_learner.pretrain import pretrain, read_corpus
    texts = list(read_corpus(a.corpus, max_docs=a.max_docs))   # read once: counted here, trained on below
    words = sum(len(d.split()) for d in texts)
    work = tempfile.mkdtemp(prefix='pretrain-speed-')
    try:
        t = time.perf_counter()
        learn = pretrain(texts, os.path.join(work, 'lm'), config=SIZES[a.size], epochs=a.epochs,
                         valid_pct=a.valid_pct, n_workers=a.n_workers, device=a.device,
                         mixed_precision=None if a.precision == 'fp32' else a.precision, checkpoint_minutes=None,
                         progress=False)
        total = time.perf_counter() - t
        with open(os.path.join(work, 'lm', 'training.json')) as f: summary = json.load(f)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    hist = learn.recorder.history
    epoch_s = [float(s) for s in hist['time']]
    train_tokens = summary['train_tokens']
    per_word = (len(learn.dls.train.ids) + len(learn.dls.valid.ids)) / words   # both splits: all the words read
    rate = train_tokens / epoch_s[-1]
    res = dict(machine=machine_facts(), args=vars(a), gpu=torch.cuda.get_device_name(learn.device)
               if learn.device.type == 'cuda' else None, device=str(learn.device), mixed_precision=summary['mixed_precision'],
               words_read=words, train_tokens=train_tokens, tokens_per_word=per_word, vocab_size=summary['vocab_size'],
               seconds_total=total, seconds_before_training=total - sum(epoch_s), epoch_seconds=epoch_s,
               train_tokens_per_s=[train_tokens / s for s in epoch_s],
               valid_perplexity=[float(v) for v in hist['perplexity']],
               general_corpus_epoch_hours=TRAIN_WORDS * per_word / rate / 3600)
    print(json.dumps(res))
    if a.json_out:
        with open(a.json_out, 'w') as f: json.dump(res, f, indent=1)
    rows = [[str(i + 1), fmt(s, 1), fmt(r, 0), fmt(p, 1)]
            for i, (s, r, p) in enumerate(zip(epoch_s, res['train_tokens_per_s'], res['valid_perplexity']))]
    print(f"\n{a.size} AWD-LSTM on {res['device']} ({res['gpu'] or 'no GPU'}), {res['mixed_precision'] or 'fp32'}; "
          f"{words:,} words -> {train_tokens:,} training tokens ({per_word:.2f} per word), vocab {res['vocab_size']:,}; "
          f"{res['seconds_before_training']:.1f} s before the first epoch (tokenizing, vocabulary, loaders, model)")
    print(md_table(['epoch', 'seconds', 'training tokens/s', 'valid perplexity'], rows, n_text=1))
    print(f"\none epoch over general-corpus/train ({TRAIN_WORDS:,} words) at the last epoch's rate: "
          f"{res['general_corpus_epoch_hours']:.2f} h")
    return res


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
