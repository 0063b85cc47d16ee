"""The same engine on a GPU; skipped cleanly where there is none."""
import pytest
import torch

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize('precision', ['fp32', 'fp16', 'bf16'])
def test_fit_on_cuda(learner_factory, precision):
    learn = learner_factory(device='cuda')
    if precision == 'fp16': learn.to_fp16()
    if precision == 'bf16': learn.to_bf16()
    learn.fit_one_cycle(2, 1e-2)
    assert next(learn.model.parameters()).is_cuda
    assert all(v[1] == v[1] for v in learn.recorder.values)
    if precision == 'fp16': assert learn.scaler is not None
    preds, targs = learn.get_preds()
    assert preds.device.type == 'cpu' and preds.shape == (8, 3)


@cuda
@pytest.mark.cuda
def test_save_on_cuda_load_on_cpu(learner_factory, tmp_path):
    learn = learner_factory(device='cuda')
    learn.fit(1)
    learn.save('gpu')
    cpu = learner_factory(device='cpu')
    cpu.load('gpu')
    assert all(torch.equal(a.cpu(), b) for a, b in zip(learn.model.state_dict().values(), cpu.model.state_dict().values()))
