#!/usr/bin/env bash
# Stage what gpu_suite.sh needs on a GPU machine that has PyTorch but no internet and no ../shared:
# the Python wheels its image lacks (versions of constraints.txt, CPython 3.12, x86-64 Linux) in
# .whl/, and as many of the ImageNet sample photos (107 MB in all) as fit beside them in .photos/: a
# call carries at most 64 MiB, the tracked tree included, so the photos get what 60 MiB leaves.
# Both folders are kept out of git (.git/info/exclude) and out of CI.
#
#   benchmarks/device_prep.sh            # stage, then print the command to run there
#   PHOTOS_MB=10 benchmarks/device_prep.sh
#
# There: install the wheels into a folder of their own and put it first on the path, then run the
# suite's sections with S3A_SHARED_DATA pointing at the copied photos and S3A_COMMIT naming the code
# (the tree travels without .git): the command printed below.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${S3A_SHARED_DATA:-$(cd .. && pwd)/shared/data}
PY=${PY:-python3}
# open_clip and its tokeniser's needs, the config models, and nvImageCodec with its nvJPEG; timm and
# typing_extensions too, since the image's may be older than open_clip and pydantic accept
PACKAGES=(open_clip_torch ftfy wcwidth timm pydantic pydantic_core annotated-types typing-inspection
    typing_extensions nvidia-nvimgcodec-cu13 nvidia-nvjpeg)

pin() { # the version constraints.txt pins for a package, matched as pip normalises names
    local want
    want=$(echo "$1" | tr 'A-Z_.' 'a-z--')
    awk -F'==' -v w="$want" '{n=tolower($1); gsub(/[_.]/, "-", n); if (n == w) print $2}' constraints.txt
}

for f in /.whl/ /.photos/; do
    grep -qxF "$f" .git/info/exclude 2>/dev/null || echo "$f" >>.git/info/exclude
done

rm -rf .whl && mkdir .whl # one version of each: two would stop the install there
for p in "${PACKAGES[@]}"; do
    v=$(pin "$p")
    [ -n "$v" ] || { echo "device_prep: $p is not pinned in constraints.txt" >&2; exit 2; }
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$p==$v" 2>&1 |
        { grep -v "is ignored: it is neither" || true; }
done

[ -d "$SHARED/imagenet-sample" ] || { echo "device_prep: no photos at $SHARED/imagenet-sample" >&2; exit 2; }
rm -rf .photos && mkdir -p .photos/imagenet-sample
mib() { du -sm "$@" | awk '{s += $1} END {print s + 0}'; }
tracked=$(git ls-files -z | xargs -0 du -cm 2>/dev/null | tail -n1 | cut -f1)
budget=$(((${PHOTOS_MB:-$((60 - $(mib .whl) - tracked))}) * 1024 * 1024)) used=0 n=0
[ "$budget" -gt 0 ] || { echo "device_prep: no room left for photos beside the wheels" >&2; exit 2; }
while IFS= read -r f; do
    size=$(stat -c %s "$f")
    [ $((used + size)) -le "$budget" ] || break
    cp "$f" .photos/imagenet-sample/ && used=$((used + size)) n=$((n + 1))
done < <(find "$SHARED/imagenet-sample" -maxdepth 1 -type f | sort)
cp "$SHARED/README.md" .photos/ 2>/dev/null || true

echo "staged: $(ls .whl | wc -l) wheels ($(mib .whl) MiB), $n photos ($(mib .photos) MiB), tracked files $tracked MiB"
cat <<EOF
On the GPU machine (carry: [".whl", ".photos"]), for the sections of issue 23:
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site S3A_SHARED_DATA=\$PWD/.photos PY=python3 S3A_COMMIT=$(git describe --always --dirty) && benchmarks/gpu_suite.sh test train ksearch embed-b16 vocab
EOF
