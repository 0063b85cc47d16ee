"""The top-level package: an explicit `__all__`, and `import *` gives exactly that list."""
import importlib

import ulmfit_learner


def test_all_is_explicit_and_importable():
    names = ulmfit_learner.__all__
    assert isinstance(names, list) and len(names) == len(set(names)), "__all__ must be a list without duplicates"
    missing = [n for n in names if not hasattr(ulmfit_learner, n)]
    assert not missing, f"names in __all__ that the package does not define: {missing}"


def test_star_import_gives_exactly_all():
    ns = {}
    exec('from ulmfit_learner import *', ns)
    got = {k for k in ns if k != '__builtins__'}
    assert got == set(ulmfit_learner.__all__)


def test_the_names_the_issue_promises():
    for name in ['Learner', 'DataLoaders', 'accuracy', 'error_rate', 'Perplexity', 'F1Score', 'Callback', 'CancelFit',
                 'CancelEpoch', 'CancelTrain', 'CancelValidate', 'CancelBatch', 'ParamScheduler', 'Recorder',
                 'ProgressCallback', 'GradientClip', 'SaveModelCallback', 'EarlyStoppingCallback', 'CSVLogger',
                 'TerminateOnNaN', 'CheckpointCallback', 'Adam', 'SGD', 'valley', 'minimum', 'steep', 'stlr',
                 'one_cycle_lr', 'sched_lin', 'sched_cos', 'sched_no', 'sched_exp', 'combine_scheds', 'set_seed',
                 'TextDataLoaders', 'DataBlock', 'TextBlock', 'CategoryBlock', 'MultiCategoryBlock', 'RandomSplitter',
                 'ColSplitter', 'GrandparentSplitter', 'Tokenizer', 'SpacyTokenizer', 'SentencePieceTokenizer',
                 'Vocab', 'LMDataLoader', 'SortedDataLoader']:
        assert name in ulmfit_learner.__all__, name


def test_every_public_module_name_is_reexported():
    "Each exported module's own `__all__` (written by nbdev) is reachable from the top level, except internals."
    internal = {'format_time', 'listify', 'as_metric', 'plot_lr_find', 'spiral_data', 'demo', 'main', 'Schedule',
                'CHECKPOINT_FORMAT', 'CANCEL_EXCEPTIONS', 'SuggestedLRs',
                # text internals: token constants (SPECIAL_TOKENS lists them), file formats, helpers
                'UNK', 'PAD', 'BOS', 'EOS', 'FLD', 'REP', 'WREP', 'UP', 'MAJ', 'CACHE_FORMAT', 'FAKE_TOKEN',
                'VOCAB_FORMAT', 'tokenwise', 'read_text_file', 'MEMO_SIZE', 'dropout_mask', 'ENCODER_FORMAT',
                # bundle internals: format constants and a checksum helper; the LM state-dict keys
                'BUNDLE_FORMAT', 'MAX_SHARD_BYTES', 'MANIFEST', 'META', 'SPM_FILE', 'sha256_file',
                'EMB_KEY', 'DEC_WEIGHT', 'DEC_BIAS'}
    for mod in ['core', 'callback', 'optimizer', 'schedule', 'metrics', 'callbacks', 'learner', 'text.tokenize',
                'text.vocab', 'text.loaders', 'text.data', 'models.awdlstm', 'models.classifier', 'bundle', 'pretrained', 'ulmfit', 'pretrain', 'recipe', 'interpret']:
        m = importlib.import_module(f'ulmfit_learner.{mod}')
        missing = [n for n in m.__all__ if n not in ulmfit_learner.__all__ and n not in internal]
        assert not missing, f"ulmfit_learner.{mod} exports {missing} but the package does not"


def test_version():
    assert ulmfit_learner.__version__.count('.') == 2
