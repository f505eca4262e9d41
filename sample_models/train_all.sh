#!/usr/bin/env bash
# Retrain the bundled checkpoints, one after another on one CPU thread (README.md lists times and scores).
#   bash sample_models/train_all.sh [LOGDIR [NAME...]]      e.g. bash sample_models/train_all.sh /tmp/logs code_gru
set -euo pipefail
cd "$(dirname "$0")/.."
logs=${1:-/tmp/lstmviz-train}
shift || true
only=" ${*:-parens_lstm code_lstm code_gru code_rnn shakespeare_lstm balanced_gru} "
mkdir -p "$logs"
c=sample_models/corpora
t() {
  name=$1; shift
  [[ $only == *" $name "* ]] || return 0
  /usr/bin/time -f "$name wall %e s" nice -n 10 lstmviz train --threads 1 --seed 0 --overwrite \
    --out "sample_models/$name.pt" "$@" >"$logs/$name.log" 2>&1
  tail -n 2 "$logs/$name.log"
}
t parens_lstm --corpus $c/parens.txt --arch lstm --layers 1 --hidden 64 --embed 16 --batch 32 --seq 100 --steps 1500
t code_lstm --corpus $c/python_stdlib.txt --arch lstm --layers 2 --hidden 256 --dropout 0.2 --steps 4000
t code_gru --corpus $c/python_stdlib.txt --arch gru --layers 2 --hidden 296 --dropout 0.2 --steps 1200
t code_rnn --corpus $c/python_stdlib.txt --arch rnn --layers 2 --hidden 512 --dropout 0.2 --steps 1200 --lr 2e-3
t shakespeare_lstm --corpus $c/shakespeare.txt --arch lstm --layers 2 --hidden 256 --dropout 0.2 --steps 1400 --minutes 15
# the many-to-one classifier (a factory, its state_dict, vocabulary and held-out documents), by its own script
if [[ $only == *" balanced_gru "* ]]; then
  /usr/bin/time -f "balanced_gru wall %e s" nice -n 10 python sample_models/balanced_gru.py --threads 1 --seed 0 \
    >"$logs/balanced_gru.log" 2>&1
  tail -n 2 "$logs/balanced_gru.log"
fi
