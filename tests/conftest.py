"""Shared fixtures: tiny synthetic data, a small model with three layer groups (one of them holding a BatchNorm),
and a factory for learners that write their files under pytest's `tmp_path`."""
import os
from pathlib import Path

os.environ['MPLBACKEND'] = 'Agg'  # before anything imports matplotlib: lr_find and the recorder plot without a display

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ulmfit_learner import DataLoaders, Learner, ProgressCallback, set_seed

N_IN, N_CLASS = 4, 3
# The real datasets (../shared/data beside the checkout); ULMFIT_SHARED_DATA points elsewhere, as on the GPU machine,
# where ../shared does not travel (bench/gpu_session.sh)
DATA = Path(os.environ.get('ULMFIT_SHARED_DATA') or Path(__file__).resolve().parents[2] / 'shared' / 'data')


def make_data(kind: str = 'cls', n: int = 16, seed: int = 0) -> TensorDataset:
    "`n` random points in 4-d; `cls`: 3 classes from a fixed linear map, `reg`: a noisy linear target of shape (n, 1)."
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(N_IN, N_CLASS, generator=torch.Generator().manual_seed(1234))  # the same task whatever the seed
    x = torch.randn(n, N_IN, generator=g)
    if kind == 'cls': y = (x @ w).argmax(1)
    elif kind == 'reg': y = x @ w[:, :1] + 0.1 * torch.randn(n, 1, generator=g)
    else: raise ValueError(kind)
    return TensorDataset(x, y)


def make_dls(kind: str = 'cls', n_train: int = 16, n_valid: int = 8, bs: int = 4, shuffle: bool = True,
             valid: bool = True) -> DataLoaders:
    "Training loader (shuffled by default) and an unshuffled validation loader over `make_data`."
    train = DataLoader(make_data(kind, n_train, seed=1), batch_size=bs, shuffle=shuffle)
    vdl = DataLoader(make_data(kind, n_valid, seed=2), batch_size=bs) if valid else None
    return DataLoaders(train, vdl, device='cpu')


def make_model(n_out: int = N_CLASS, hidden: int = 8, dropout: float = 0.1) -> nn.Sequential:
    "Linear -> ReLU -> BatchNorm -> Dropout -> Linear -> ReLU -> Linear."
    return nn.Sequential(nn.Linear(N_IN, hidden), nn.ReLU(), nn.BatchNorm1d(hidden), nn.Dropout(dropout),
                         nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


def three_groups(model: nn.Sequential) -> list:
    "Group 0: first Linear; group 1: the BatchNorm and the middle Linear; group 2: the head. Every parameter once."
    return [list(model[0].parameters()), [*model[2].parameters(), *model[4].parameters()], list(model[6].parameters())]


def build_learner(path, kind: str = 'cls', dls=None, model=None, progress: bool = False, **kwargs) -> Learner:
    "A learner on the tiny data with the three-group splitter (ProgressCallback removed unless `progress`)."
    dls = make_dls(kind) if dls is None else dls
    model = make_model(N_CLASS if kind == 'cls' else 1) if model is None else model
    kwargs.setdefault('splitter', three_groups)
    kwargs.setdefault('device', 'cpu')
    loss = nn.CrossEntropyLoss() if kind == 'cls' else nn.MSELoss()
    learn = Learner(dls, model, kwargs.pop('loss_func', loss), path=path, **kwargs)
    if not progress: learn.remove_cb(ProgressCallback)
    return learn


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')


def _single_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def one_thread():
    "Tiny models run fastest on one thread (and very slowly with several on a busy machine)."
    yield from _single_thread()


@pytest.fixture(scope='module')
def one_thread_module():
    "`one_thread` for a whole module, whose module-scoped fixtures train (a per-test fixture comes too late for them)."
    yield from _single_thread()


@pytest.fixture(autouse=True)
def _seed_and_close_figures():
    "Every test starts from the same random state, and leaves no matplotlib figure open."
    set_seed(0)
    yield
    plt.close('all')


@pytest.fixture
def splitter():
    return three_groups


@pytest.fixture
def data():
    return make_data


@pytest.fixture
def dls_factory():
    return make_dls


@pytest.fixture
def model_factory():
    return make_model


@pytest.fixture
def learner_factory(tmp_path):
    "`learner_factory(kind='cls'|'reg', **Learner kwargs)`; files go to `tmp_path/models`."
    def _make(kind: str = 'cls', **kwargs):
        kwargs.setdefault('path', tmp_path)
        return build_learner(kind=kind, **kwargs)
    return _make
