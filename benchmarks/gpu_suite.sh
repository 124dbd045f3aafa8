#!/usr/bin/env bash
# Every GPU measurement of benchmarks/README.md, one after another on one GPU node, each under its own
# time limit; each prints ours, the baseline and the ratio. Logs go to $OUT (or benchmarks/gpu-logs).
#
#   benchmarks/gpu_suite.sh                       # all sections
#   benchmarks/gpu_suite.sh embed-b16 vocab       # some of them
#
# Sections: test (the nvJPEG and device-views agreement tests), embed-b16, embed-l14, vocab, kmeans, ksearch, train,
# tiles (tile crops/s against embed_images img/s, and the pseudo-label aggregation).
# Sizes can be overridden for a smoke run on a CPU, e.g.
#   B16=s3a-tiny L14=s3a-tiny IMAGES=200 KM_N=20000 KM_K=50 KS_N=6000 KS_K=30 TRAIN_ARCH=s3a-tiny \
#   DEVICE=cpu benchmarks/gpu_suite.sh
set -uo pipefail
cd "$(dirname "$0")"
LOG=${OUT:-gpu-logs}
mkdir -p "$LOG"
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$(cd .. && pwd)/src TQDM_DISABLE=1 PYTHONUNBUFFERED=1
export S3A_SHARED_DATA=${S3A_SHARED_DATA:-$(cd ../.. && pwd)/shared/data}
PY=${PY:-python3}
PHOTOS=$S3A_SHARED_DATA/imagenet-sample
WORKERS=${WORKERS:-$(($(nproc) - 1))}
IMAGES=${IMAGES:-20000}
DEVICE=${DEVICE:-cuda}
# the code measured: a copy of the tree without .git (a lent machine) names it with S3A_COMMIT
COMMIT=${S3A_COMMIT:-$(git -C .. describe --always --dirty 2>/dev/null || echo unknown)}

section() {
    local name=$1 limit=$2 start rc
    shift 2
    echo "== $name (code $COMMIT): $*"
    start=$(date +%s)
    timeout "$limit" "$@" >"$LOG/$name.log" 2>&1
    rc=$?
    grep -v -e Warning -e warnings.warn "$LOG/$name.log" | tail -n 25
    echo "== $name: exit $rc after $(($(date +%s) - start)) s"
}

run_section() {
    case $1 in
    test) section test 120 "$PY" -m pytest ../tests/unit/test_embed.py ../tests/unit/test_gpu_views.py -m gpu -q -s -p no:cacheprovider \
        ${TEST_K:+-k "$TEST_K"} ;;
    embed-b16) section embed-b16 150 "$PY" bench_embed.py --arch "${B16:-ViT-B-16}" --images "$IMAGES" \
        --batch-size 512 --workers "$WORKERS" --decoders "${B16_DECODERS:-pil,fast,gpu:torchvision,gpu:nvimgcodec:inline,gpu:nvimgcodec}" --copies-dir /tmp/s3a-jpegs \
        --image-dir "$PHOTOS" ;;
    embed-l14) section embed-l14 150 "$PY" bench_embed.py --arch "${L14:-ViT-L-14}" --images "$IMAGES" \
        --batch-size 256 --workers "$WORKERS" --decoders pil,gpu:nvimgcodec --copies-dir /tmp/s3a-jpegs \
        --image-dir "$PHOTOS" ;;
    vocab) section vocab 120 "$PY" bench_vocab.py --arch "${B16:-ViT-B-16}" --batch-size 4096 ;;
    kmeans) section kmeans 150 "$PY" bench_kmeans.py --n "${KM_N:-1280000}" --k "${KM_K:-1000}" --iters 3 \
        --repeat 1 --full-n-init 0 --sil-n 10000 --device "$DEVICE" ;;
    ksearch) section ksearch 150 "$PY" bench_ksearch.py --n "${KS_N:-300000}" --k "${KS_K:-1000}" \
        --device "$DEVICE" ;;
    train) section train 150 "$PY" bench_train.py --arch "${TRAIN_ARCH:-ViT-B-16}" --batch-size 256 \
        --workers "$WORKERS" --steps 20 --image-dir "$PHOTOS" ;;
    tiles) section tiles 150 "$PY" bench_tiles.py --arch "${B16:-ViT-B-16}" --images "${TILE_IMAGES:-5000}" \
        --batch-size 576 --workers "$WORKERS" --device "$DEVICE" --image-dir "$PHOTOS" ;;
    *) echo "unknown section $1" >&2 ;;
    esac
}

echo "gpu_suite on $(hostname): $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo no GPU), $(nproc) cores, code $COMMIT"
for s in "${@:-test embed-b16 embed-l14 vocab kmeans ksearch train tiles}"; do
    for part in $s; do run_section "$part"; done
done
