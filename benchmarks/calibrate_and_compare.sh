#!/usr/bin/env bash
# Make the shipped default calibration on simulated validation skies, then compare the finders
# and combiners on independent test skies (thresholds from validation, metrics on test).
#
#   bash benchmarks/calibrate_and_compare.sh WORKDIR [--install]
#
# With --install the calibration is copied to clusterfw/plugins/combiners/default_calibration.json.
# Truth: Mvir >= 2e14 Msun, z >= 0.25, matched within 1' (the `clusterfw evaluate` defaults).
set -euo pipefail
work=${1:?usage: calibrate_and_compare.sh WORKDIR [--install]}
install=${2:-}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$work" && cd "$work"
VAL_SEEDS="9001 9002 9003 9004"
TEST_SEEDS="9101 9102 9103 9104"
SIZE=3   # degrees, each patch

for s in $VAL_SEEDS $TEST_SEEDS; do
  [ -f "sky$s/truth_halos.parquet" ] || clusterfw simulate mm --size $SIZE --seed "$s" --out "sky$s" >/dev/null
done

run_all() {  # run_all SEED [--calibration FILE]
  local s=$1; shift
  local maps=(sky$s/sim_f095.fits sky$s/sim_f150.fits sky$s/sim_f220.fits)
  clusterfw run -q "${maps[@]}" --finder mf --out "s${s}_mf.parquet" "$@"
  clusterfw run -q "${maps[@]}" --finder resnet --out "s${s}_resnet.parquet" "$@"
  clusterfw run -q "${maps[@]}" --finder mf --finder resnet --combine rankprod \
    --out "s${s}_rankprod.parquet" "$@"
  clusterfw run -q "${maps[@]}" --finder mf --finder resnet --combine and \
    --out "s${s}_and.parquet" "$@"
}

cats=(); truths=()
for s in $VAL_SEEDS; do
  run_all "$s" 2>/dev/null
  for k in mf resnet rankprod; do cats+=("s${s}_$k.parquet"); truths+=(--truth "sky$s/truth_halos.parquet"); done
done
clusterfw calibrate "${truths[@]}" "${cats[@]}" --out calibration.json
if [ "$install" = "--install" ]; then
  cp calibration.json "$here/clusterfw/plugins/combiners/default_calibration.json"
fi

echo "== test skies ($TEST_SEEDS), thresholds from validation ($VAL_SEEDS) =="
for s in $TEST_SEEDS; do run_all "$s" --calibration calibration.json; done
python - "$TEST_SEEDS" <<'PY'
import sys
import numpy as np
from clusterfw.core.catalog_io import read_catalogue
from clusterfw.core.evaluation.matching import read_truth
from clusterfw.core.evaluation.metrics import MatchedSample
seeds = sys.argv[1].split()
print(f"{'method':<10} {'TP':>4} {'FP':>4} {'FN':>4} {'purity':>7} {'compl.':>7} {'F1':>6}")
for method in ("mf", "resnet", "rankprod", "and"):
    samples, decisions = [], []
    for s in seeds:
        table = read_catalogue(f"s{s}_{method}.parquet")
        samples.append(MatchedSample.from_catalogue(table, read_truth(f"sky{s}/truth_halos.parquet"), []))
        decisions.append([d is True for d in table["is_cluster"].to_pylist()])
    pooled = MatchedSample.concat(samples)
    c = pooled.counts(np.concatenate(decisions))
    print(f"{method:<10} {c.tp:>4} {c.fp:>4} {c.fn:>4} {c.purity:>7.3f} {c.completeness:>7.3f} {c.f1:>6.3f}")
PY
