"""ULMFiT transfer learning for text in three lines: an AWD-LSTM, a callback-driven Learner, STLR and gradual unfreezing."""
__version__ = "0.1.0"

from .callback import (EVENTS, Callback, CallbackError, CancelBatch, CancelEpoch, CancelFit, CancelTrain,
                       CancelValidate)
from .callbacks import (CheckpointCallback, CSVLogger, EarlyStoppingCallback, GradientClip, ProgressCallback,
                        Recorder, SaveModelCallback, TerminateOnNaN, TrackerCallback)
from .core import (DataLoaders, atomic_write, default_device, get_rng_state, in_notebook, peek_batch, show_frame, set_rng_state, set_seed, to_detach,
                   to_device)
from .learner import Learner, single_group
from .metrics import AvgLoss, AvgMetric, F1Score, Metric, Perplexity, accuracy, error_rate
from .models.awdlstm import (AWD_LSTM, AWDLSTM, AWDLSTMConfig, EmbeddingDropout, FlattenedCrossEntropy, LanguageModel,
                             LinearDecoder, LockedDropout, ModelResetter, RNNRegularizer, WeightDropout,
                             awd_lstm_lm_split, get_language_model, lm_loss, make_config)
from .models.classifier import (PoolingLinearClassifier, SentenceEncoder, TextClassifier, awd_lstm_clas_split,
                                get_text_classifier, load_encoder, masked_concat_pool)
from .optimizer import SGD, Adam, get_hyper, group_lrs, set_hyper
from .text.data import (CategoryBlock, ColReader, ColSplitter, DataBlock, GrandparentSplitter, MultiCategoryBlock,
                        RandomSplitter, TextBlock, TextDataLoaders, VOCAB_FROM, get_text_files, parent_label)
from .text.loaders import LMDataLoader, SortedDataLoader
from .text.tokenize import (DEFAULT_POST_RULES, DEFAULT_PRE_RULES, SPECIAL_TOKENS, SentencePieceTokenizer,
                            SpacyTokenizer, TokenizedCorpus, Tokenizer, fix_html, join_fields, replace_all_caps,
                            replace_maj, replace_rep, replace_wrep, rm_useless_spaces, spec_add_spaces, tokenize_texts)
from .text.vocab import Vocab
from .bundle import (LIBRARY_RULES, Bundle, check_writable, is_bundle, read_bundle, shard_tensors, tokenizer_from_json, tokenizer_to_json,
                     verify_bundle, write_bundle)
from .interpret import ClassificationInterpretation
from .ulmfit import (GradualUnfreezing, LMLearner, TextLearner, bidirectional_preds, language_model_learner, load_learner,
                     match_embeddings, model_sizes, pretrained_tokenizer, pretrained_vocab,
                     text_classifier_learner)
from .pretrained import download_bundle, import_fastai_weights, list_pretrained, pretrained_path, read_itos, ulmfit_home
from .pretrain import SCHEDULES, MissingColumn, pretrain, read_corpus, read_lines
from .recipe import DEMO_CONFIG, EXTEND_VOCAB, RECIPE_STEPS, fine_tune_lm, lm_learner, train_classifier, trec6, ulmfit_stages, wiki_sample
from .schedule import (LRFinder, ParamScheduler, combine_scheds, flat_cos_lr, minimum, one_cycle_lr, one_cycle_mom,
                       sched_cos, sched_exp, sched_lin, sched_no, sched_stlr, steep, stlr, valley)

# The public names, listed by hand so that `from ulmfit_learner import *` gives exactly this list.
__all__ = [
    # core
    'set_seed', 'default_device', 'to_device', 'to_detach', 'get_rng_state', 'set_rng_state', 'DataLoaders', 'peek_batch', 'atomic_write', 'in_notebook', 'show_frame',
    # callback contract
    'EVENTS', 'Callback', 'CallbackError', 'CancelFit', 'CancelEpoch', 'CancelTrain', 'CancelValidate', 'CancelBatch',
    # optimizers
    'Adam', 'SGD', 'get_hyper', 'set_hyper', 'group_lrs',
    # schedules and the LR finder
    'sched_lin', 'sched_cos', 'sched_no', 'sched_exp', 'combine_scheds', 'one_cycle_lr', 'one_cycle_mom', 'stlr',
    'sched_stlr', 'flat_cos_lr', 'ParamScheduler', 'LRFinder', 'valley', 'minimum', 'steep',
    # metrics
    'Metric', 'AvgMetric', 'AvgLoss', 'accuracy', 'error_rate', 'Perplexity', 'F1Score',
    # callbacks
    'Recorder', 'ProgressCallback', 'GradientClip', 'TerminateOnNaN', 'TrackerCallback', 'SaveModelCallback',
    'EarlyStoppingCallback', 'CSVLogger', 'CheckpointCallback',
    # learner
    'Learner', 'single_group',
    # text: tokenization
    'SPECIAL_TOKENS', 'Tokenizer', 'SpacyTokenizer', 'SentencePieceTokenizer', 'tokenize_texts', 'TokenizedCorpus',
    'join_fields', 'fix_html', 'replace_rep', 'replace_wrep', 'spec_add_spaces', 'rm_useless_spaces',
    'replace_all_caps', 'replace_maj', 'DEFAULT_PRE_RULES', 'DEFAULT_POST_RULES',
    # text: vocabulary and loaders
    'Vocab', 'LMDataLoader', 'SortedDataLoader',
    # text: the data API
    'TextDataLoaders', 'DataBlock', 'TextBlock', 'CategoryBlock', 'MultiCategoryBlock', 'ColReader', 'RandomSplitter',
    'ColSplitter', 'GrandparentSplitter', 'get_text_files', 'parent_label', 'VOCAB_FROM',
    # models: the AWD-LSTM language model and the ULMFiT classifier
    'AWDLSTMConfig', 'make_config', 'AWDLSTM', 'AWD_LSTM', 'EmbeddingDropout', 'LockedDropout', 'WeightDropout',
    'LinearDecoder', 'LanguageModel', 'get_language_model', 'awd_lstm_lm_split', 'FlattenedCrossEntropy', 'lm_loss',
    'ModelResetter', 'RNNRegularizer', 'SentenceEncoder', 'masked_concat_pool', 'PoolingLinearClassifier',
    'TextClassifier', 'get_text_classifier', 'awd_lstm_clas_split', 'load_encoder',
    # model bundles: folders of safetensors shards and JSON with a checksum manifest
    'Bundle', 'write_bundle', 'read_bundle', 'is_bundle', 'check_writable', 'verify_bundle', 'shard_tensors', 'tokenizer_to_json', 'tokenizer_from_json',
    'LIBRARY_RULES',
    # ULMFiT learners, prediction, export and pretrained models
    'TextLearner', 'LMLearner', 'language_model_learner', 'text_classifier_learner', 'GradualUnfreezing',
    'bidirectional_preds', 'load_learner', 'match_embeddings', 'pretrained_tokenizer', 'pretrained_vocab', 'ulmfit_home', 'pretrained_path',
    'list_pretrained', 'download_bundle', 'import_fastai_weights', 'read_itos',
    # ULMFiT stage 1: pretraining; the recipe of stages 2 and 3
    'pretrain', 'SCHEDULES', 'read_corpus', 'read_lines', 'MissingColumn', 'model_sizes', 'trec6', 'DEMO_CONFIG', 'EXTEND_VOCAB', 'RECIPE_STEPS', 'lm_learner', 'fine_tune_lm', 'train_classifier',
    'ulmfit_stages', 'wiki_sample',
    # interpretation
    'ClassificationInterpretation',
]
