#!/usr/bin/env bash
# bench/etcd.sh: the etcd part of bench/run.sh alone: tempalias on its
# embedded bbolt file against two tempalias hosts sharing one real
# 3-member etcd cluster, the same workloads, alternating, medians of
# ROUNDS (see the etcd part in run.sh for what runs and what CPU counts).
#
#   bash bench/etcd.sh            # about 6 minutes on 2 cores
#   QUICK=1 bash bench/etcd.sh    # a smoke check
#
# Knobs as run.sh's (QUICK=1, ROUNDS, DUR, WARM, SMTP_C, HTTP_C, OUT),
# ETCD_NALIAS for the aliases relayed to. Results: bench/out/etcd/.
dir=$(cd "$(dirname "$0")" && pwd)
if [[ ${QUICK:-0} != 1 ]]; then
	export DUR=${DUR:-10s} WARM=${WARM:-3s}
fi
export OUT=${OUT:-$dir/out/etcd} PARTS=etcd
exec bash "$dir/run.sh"
