#!/usr/bin/env bash
# The GPU checks of issues 4 and 5, prepared to run on the lent GPU machine in two calls of the device tool, from
# the repository root there, after `bash bench/gpu_prepare.sh` here (bench/README.md, "On a GPU"):
#
#   models    carry [".gpu/whl-fastai", ".gpu/data"]:  bash bench/gpu_session.sh models     (its steps' timeouts: 7 min)
#             nvidia-smi; the CUDA tests of the engine, the loaders, the AWD-LSTM (cuDNN's fused kernel, seen by the
#             profiler) and the classifier; the throughput benchmark ours vs fastai 2.8.12 in bf16 (LM, encoder
#             alone, classifier) with the share of the GPU's bf16 matmul peak, and the LM in fp32
#   pretrain  carry [".gpu/whl-spacy", ".gpu/data"]:   bash bench/gpu_session.sh pretrain   (5 min)
#             the CUDA tests of mixed-precision pretraining (bf16, fp16 with its scaler, auto; resume after a
#             crash), then bench/pretrain_speed.py: the paper-size model pretrained on general-corpus's valid split
#             in bf16, and what one epoch over its train split would take
#
# Everything lands in $OUT (at most 8 files come back): a log per stage and the benchmarks' JSON. No network is
# needed there: the wheels the image lacks are installed from the carried folder into $SITE. The image's python3
# has torch. To rehearse on a CPU machine (the CUDA tests skip, the benchmarks shrink):
#   PYTHON=/path/to/python GPU_DIR=/tmp/gpu311 DEVICE=cpu QUICK=1 OUT=/tmp/out bash bench/gpu_session.sh models
set -uo pipefail
cd "$(dirname "$0")/.."
stage=${1:?usage: bash bench/gpu_session.sh models|pretrain}
PY=${PYTHON:-python3}
GPU_DIR=${GPU_DIR:-.gpu}
SITE=${SITE:-/tmp/site}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
say() { echo; echo "== $(date -u +%H:%M:%S) $*"; }

case $stage in
  models) wheels=$GPU_DIR/whl-fastai ;;
  pretrain) wheels=$GPU_DIR/whl-spacy ;;
  *) echo "unknown stage $stage (models or pretrain)"; exit 2 ;;
esac

run_stage() {
say "install $(ls "$wheels"/*.whl 2>/dev/null | wc -l) wheels from $wheels into $SITE"
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$wheels"/*.whl \
  || { echo "the wheels did not install: run bench/gpu_prepare.sh here and carry $wheels"; exit 1; }
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"

# The tests read ../shared/data, which does not travel: the slices they need were carried in $GPU_DIR/data
[ -e ../shared/data/trec/train.csv ] || export ULMFIT_SHARED_DATA="$(cd "$GPU_DIR/data" && pwd)"

say "machine"
nvidia-smi 2>&1 | head -15
"$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda,
'cudnn', torch.backends.cudnn.version(), 'gpu', torch.cuda.get_device_name() if torch.cuda.is_available() else None)"

fail=0
if [ "$stage" = models ]; then
  say "CUDA tests: engine, loaders, AWD-LSTM, classifier"
  timeout 120 "$PY" -m pytest -q -m cuda -p no:cacheprovider tests/test_cuda.py tests/test_text_loaders.py \
    tests/test_models_awdlstm.py tests/test_models_classifier.py || fail=1
  if [ -n "${QUICK:-}" ]; then B=(--vocab 2000 --bs 8 --doc-min 40 --doc-max 80 --warmup 1 --batches 2)
  else B=(--warmup 10 --batches 50); fi
  say "throughput, bf16 autocast: ours and fastai 2.8.12, LM, encoder alone, classifier"
  timeout 200 "$PY" bench/awdlstm_throughput.py --device "$DEVICE" --amp bf16 --tasks lm,enc,clas "${B[@]}" \
    --fastai-python "$PY" --json-out "$OUT/throughput_bf16.json" || fail=1
  say "throughput, fp32: the LM and the encoder"
  timeout 100 "$PY" bench/awdlstm_throughput.py --device "$DEVICE" --amp none --tasks lm,enc "${B[@]}" \
    --fastai-python "$PY" --json-out "$OUT/throughput_fp32.json" || fail=1
else
  say "CUDA tests: mixed-precision pretraining, resumed after a crash"
  timeout 120 "$PY" -m pytest -q -m cuda -p no:cacheprovider tests/test_pretrain.py || fail=1
  if [ -n "${QUICK:-}" ]; then P=(--size tiny --max-docs 10 --precision fp32)
  else P=(--precision bf16); fi
  say "pretraining speed: general-corpus valid split, 2 epochs"
  timeout 180 "$PY" bench/pretrain_speed.py "$GPU_DIR/data/general-corpus/valid.txt.xz" --device "$DEVICE" \
    --n-workers 8 --epochs 2 "${P[@]}" --json-out "$OUT/pretrain_speed.json" || fail=1
fi
say "done, $( [ $fail = 0 ] && echo 'every step passed' || echo 'SOME STEP FAILED (above)')"
return $fail
}

run_stage 2>&1 | tee -a "$OUT/$stage.log"
exit "${PIPESTATUS[0]}"
