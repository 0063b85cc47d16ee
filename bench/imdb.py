"""ULMFiT on IMDb (the paper's Table 2 setting), sized for a GPU, with a `--subset` mode for a CPU.

Data: `../shared/data/imdb/` (aclImdb v1.0 as CSV): the language model is fine-tuned on the text of the 25,000
labelled training reviews and the 50,000 unlabelled ones; the classifier trains on the 25,000 labelled reviews
(`--valid-pct` of them held out for validation) and is tested on the official 25,000 test reviews. The paper
reports 5.30% test error for the forward model and 4.58% for forward + backward (`--bidir`), both from a model
pretrained on WikiText-103 (`--pretrained BUNDLE`, `--pretrained-bwd BUNDLE`; without one there is no
general-domain stage). The recipe is the library's (`ulmfit_learner.recipe.ulmfit_stages`): the same code as
`ulmfit train`, with the ablation switches `--no-discr`, `--no-stlr`, `--no-gradual`.

    # a GPU, the paper's sizes (an hour or more per direction on one GPU)
    python bench/imdb.py --device cuda --amp bf16 --pretrained PATH/fwd --json-out /tmp/imdb.json
    # a CPU: 1,000 reviews of each split, the demo's small model, minutes
    python bench/imdb.py --subset 1000 --size small --lm-epochs 1 --clas-epochs 2 --bs 32
"""
import argparse, json, os, shutil, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import SIZES, add_recipe_args, fmt, machine_facts, md_table, ours_by_direction  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared', 'data', 'imdb')


def load(subset, seed):
    "Train, test and unlabelled reviews; with `subset`, that many of train and test (both classes equally) and 2x unsup."
    import pandas as pd
    read = lambda split: pd.read_csv(os.path.join(DATA, f'{split}.csv.xz'), keep_default_na=False)
    train, test, unsup = read('train'), read('test'), read('unsup')
    if subset:
        pick = lambda df, n: df.groupby('label', group_keys=False).sample(n=n // 2, random_state=seed).reset_index(drop=True)
        train, test = pick(train, subset), pick(test, subset)
        unsup = unsup.sample(n=min(2 * subset, len(unsup)), random_state=seed)
    return train, test, unsup


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--subset', type=int, default=None, help='reviews per split (both classes equally); default: all')
    add_recipe_args(p, clas_epochs=6, drop_mults=(0.3, 0.5))
    p.add_argument('--valid-pct', type=float, default=0.1)
    p.add_argument('--work', default=None, help='folder for encoders and checkpoints (default: a temporary one, removed)')
    a = p.parse_args()

    import torch
    train, test, unsup = load(a.subset, a.seed)
    work = a.work or tempfile.mkdtemp(prefix='imdb-')
    results = {'machine': machine_facts(), 'args': dict(vars(a)), 'n': dict(train=len(train), test=len(test), unsup=len(unsup))}
    try:
        results.update(ours_by_direction(a, train, test, work, SIZES[a.size], extra_texts=list(unsup.text),
                                          valid_pct=a.valid_pct, what='reviews'))
    finally:
        if not a.work: shutil.rmtree(work, ignore_errors=True)
    rows = [[d, fmt(100 * r['valid_error']), fmt(100 * r['test_error']), fmt(r.get('seconds'))]
            for d, r in results.items() if d in ('fwd', 'bwd', 'bidir')]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and (a.device or 'cuda').startswith('cuda') else 'CPU'
    print(f"\nIMDb, {results['n']}, {device}")
    print(md_table(['model', 'valid error %', 'test error %', 'seconds'], rows, n_text=1))
    if a.json_out:
        with open(a.json_out, 'w') as f: json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
