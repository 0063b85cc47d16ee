"""Mistakes a user can make, each met by an error that names the problem and the fix."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ulmfit_learner import DataLoaders, Learner
from conftest import make_dls, make_model, three_groups


def test_splitter_that_leaves_parameters_out(tmp_path):
    with pytest.raises(ValueError, match=r"left 1 parameter out.*'0.bias'.*never train"):
        Learner(make_dls(), make_model(), nn.CrossEntropyLoss(), splitter=lambda m: three_groups(m)[1:] + [[m[0].weight]],
                path=tmp_path)


def test_splitter_with_a_parameter_twice(tmp_path):
    with pytest.raises(ValueError, match='in two layer groups'):
        Learner(make_dls(), make_model(), nn.CrossEntropyLoss(),
                splitter=lambda m: three_groups(m) + [list(m[0].parameters())], path=tmp_path)


def test_splitter_with_an_empty_group(tmp_path):
    with pytest.raises(ValueError, match='empty'):
        Learner(make_dls(), make_model(), nn.CrossEntropyLoss(), splitter=lambda m: [[], list(m.parameters())], path=tmp_path)


def test_training_without_a_training_loader(learner_factory, dls_factory):
    "Loaders made for prediction have no training loader: every way of training says so instead of crashing."
    learn = learner_factory(dls=DataLoaders(None, dls_factory().valid, device='cpu'))
    for train in (lambda: learn.fit(1), lambda: learn.fit_stlr(1, 1e-2), lambda: learn.fit_one_cycle(1),
                  lambda: learn.lr_find(show_plot=False)):
        with pytest.raises(ValueError, match='no training data.*give it loaders'): train()
    with pytest.raises(ValueError, match='no training loader'): learn.dls.one_batch()
    assert len(learn.validate()) == 1, 'validation still works'


def test_empty_training_loader(learner_factory):
    dls = DataLoaders(DataLoader(TensorDataset(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))), device='cpu')
    learn = learner_factory(dls=dls)
    with pytest.raises(ValueError, match='training loader is empty'): learn.fit(1)


def test_zero_epochs(learner_factory):
    with pytest.raises(ValueError, match='n_epoch must be at least 1'): learner_factory().fit(0)


def test_no_validation_loader(learner_factory):
    learn = learner_factory(dls=make_dls(valid=False))
    learn.fit(1)  # training alone works
    assert learn.recorder.values[0][2] != learn.recorder.values[0][2], "valid_loss is NaN without a validation set"
    with pytest.raises(ValueError, match='no validation loader'): learn.validate()
    with pytest.raises(ValueError, match='no validation loader'): learn.get_preds()


def test_load_missing_file(learner_factory):
    with pytest.raises(FileNotFoundError, match='no saved learner at .*nope.pth'): learner_factory().load('nope')


def test_load_weights_of_another_architecture(learner_factory):
    learn = learner_factory()
    learn.save('small')
    other = learner_factory(model=make_model(hidden=16))
    with pytest.raises(ValueError, match='do not fit this model.*another architecture'): other.load('small')


def test_load_optimizer_with_another_number_of_groups(learner_factory):
    learn = learner_factory()
    learn.fit(1)
    learn.save('three')
    other = learner_factory(splitter=lambda m: [list(m.parameters())])
    with pytest.raises(ValueError, match='3 param groups.*1 layer groups.*with_opt=False'): other.load('three')
    other.load('three', with_opt=False)


def test_load_a_file_that_is_not_a_learner(learner_factory, tmp_path):
    (tmp_path / 'models').mkdir()
    torch.save({'something': torch.zeros(1)}, tmp_path / 'models' / 'other.pth')
    with pytest.raises(ValueError, match="not a file written by Learner.save"): learner_factory().load('other')


def test_load_refuses_pickled_objects(learner_factory, tmp_path):
    (tmp_path / 'models').mkdir()
    torch.save({'model': {}, 'evil': object()}, tmp_path / 'models' / 'evil.pth')
    with pytest.raises(Exception, match='[Ww]eights only'): learner_factory().load('evil')


def test_resume_without_progress(learner_factory, tmp_path):
    (tmp_path / 'models').mkdir()
    learn = learner_factory()
    torch.save({'model': learn.model.state_dict()}, tmp_path / 'models' / 'bare.pth')
    with pytest.raises(ValueError, match='no training progress'): learn.fit(1, resume='bare')


def test_lr_finder_bad_range(learner_factory):
    with pytest.raises(ValueError, match='start_lr < end_lr'): learner_factory().lr_find(start_lr=1., end_lr=1e-3)


def test_callback_with_a_non_callable_event_attribute(learner_factory):
    class Bad:
        order = 0
        after_batch = 3
    with pytest.raises(TypeError, match='non-callable'): learner_factory().add_cb(Bad())
