#!/usr/bin/env bash
# Make the shipped default calibration on simulated validation skies, then compare the finders
# and combiners on independent test skies (thresholds from validation, metrics on test).
#
#   bash benchmarks/calibrate_and_compare.sh WORKDIR [--install]
#
# JOBS=N (environment, default 1) runs N skies at a time.
#
# With --install the calibration is copied to clusterfw/plugins/combiners/default_calibration.json.
# Truth: the shipped resnet's labels, M500c >= 1.5e14 Msun at any redshift (the mass cut SZ
# surveys quote), matched within 1'. The calibration holds the mf and resnet thresholds and
# reference ECDFs, the rankprod and and thresholds and the stack model of mf+resnet.
set -euo pipefail
work=${1:?usage: calibrate_and_compare.sh WORKDIR [--install]}
install=${2:-}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$work" && cd "$work"
VAL_SEEDS="9001 9002 9003 9004"
TEST_SEEDS="9101 9102 9103 9104"
SIZE=3   # degrees, each patch
TRUTH_CUT=(--mass-col m500c --mass-min 1.5e14 --z-min 0)
COMBINERS="rankprod and stack"
JOBS=${JOBS:-1}

throttle() {  # wait until fewer than JOBS background runs are going
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
}

for s in $VAL_SEEDS $TEST_SEEDS; do
  [ -f "sky$s/truth_halos.parquet" ] || clusterfw simulate mm --size $SIZE --seed "$s" --out "sky$s" >/dev/null
done

run_all() {  # run_all SEED COMBINERS [--calibration FILE]
  local s=$1 combiners=$2; shift 2
  local maps=(sky$s/sim_f095.fits sky$s/sim_f150.fits sky$s/sim_f220.fits)
  clusterfw run -q "${maps[@]}" --finder mf --out "s${s}_mf.parquet" "$@"
  clusterfw run -q "${maps[@]}" --finder resnet --out "s${s}_resnet.parquet" "$@"
  for c in $combiners; do
    clusterfw run -q "${maps[@]}" --finder mf --finder resnet --combine "$c" \
      --out "s${s}_$c.parquet" "$@"
  done
}

cats=(); truths=()
for s in $VAL_SEEDS; do
  throttle
  run_all "$s" rankprod 2>/dev/null &  # calibrate needs the single and one combined catalogue
done
wait
for s in $VAL_SEEDS; do
  for k in mf resnet rankprod; do cats+=("s${s}_$k.parquet"); truths+=(--truth "sky$s/truth_halos.parquet"); done
done
rm -f calibration.json
clusterfw calibrate "${truths[@]}" "${TRUTH_CUT[@]}" "${cats[@]}" --out calibration.json
clusterfw info calibration.json
if [ "$install" = "--install" ]; then
  cp calibration.json "$here/clusterfw/plugins/combiners/default_calibration.json"
fi

echo "== test skies ($TEST_SEEDS), thresholds from validation ($VAL_SEEDS) =="
for s in $TEST_SEEDS; do
  throttle
  run_all "$s" "$COMBINERS" --calibration calibration.json 2>/dev/null &
done
wait
python - "$TEST_SEEDS" $COMBINERS <<'PY'
import sys
import numpy as np
from clusterfw.core.catalog_io import read_catalogue
from clusterfw.core.evaluation.matching import read_truth
from clusterfw.core.evaluation.metrics import MatchedSample
seeds = sys.argv[1].split()
methods = ["mf", "resnet", *sys.argv[2:]]
print(f"{'method':<10} {'TP':>4} {'FP':>4} {'FN':>4} {'purity':>7} {'compl.':>7} {'F1':>6} {'σ':>6}")
rng = np.random.default_rng(0)
for method in methods:
    samples, decisions = [], []
    for s in seeds:
        table = read_catalogue(f"s{s}_{method}.parquet")
        truth = read_truth(f"sky{s}/truth_halos.parquet", mass_col="m500c")
        samples.append(MatchedSample.from_catalogue(table, truth, [], mass_min=1.5e14, z_min=0.0))
        decisions.append([d is True for d in table["is_cluster"].to_pylist()])
    pooled = MatchedSample.concat(samples)
    c = pooled.counts(np.concatenate(decisions))
    # bootstrap σ of F1: the (tp, fp, fn) counts drawn again (multinomial)
    n = c.tp + c.fp + c.fn
    draws = rng.multinomial(n, np.array([c.tp, c.fp, c.fn]) / max(n, 1), 4000)
    f1s = 2 * draws[:, 0] / np.maximum(2 * draws[:, 0] + draws[:, 1] + draws[:, 2], 1)
    print(f"{method:<10} {c.tp:>4} {c.fp:>4} {c.fn:>4} {c.purity:>7.3f} {c.completeness:>7.3f} "
          f"{c.f1:>6.3f} {f1s.std():>6.3f}")
PY
