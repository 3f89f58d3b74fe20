#!/usr/bin/env bash
# bench/etcd.sh: the etcd section of the benchmarks. tempalias on its
# embedded bbolt file against two tempalias hosts sharing one real 3-member
# etcd cluster, in one run on this machine, the same workloads as
# bench/run.sh's tempalias rows, alternating, medians of ROUNDS.
#
#   bash bench/etcd.sh            # about 6 minutes on 2 cores
#   QUICK=1 bash bench/etcd.sh    # a smoke check
#
# What it starts, all on 127.0.0.1, all stopped on exit: Postfix's
# smtp-sink (the smarthost of every host), three etcd members (Debian's
# etcd-server, the flags docs/deploy.md prescribes), one tempalias on bbolt
# and two on the cluster. A workload against "etcd" spreads its
# connections over both etcd hosts (loadgen -addr a,b). CPU per operation
# counts every process that serves it: the tempalias host(s), the etcd
# members, and the sink for relays. Results: bench/out/etcd/ (results.jsonl,
# summary.md).
#
# Knobs: QUICK=1, ROUNDS, DUR, WARM, SMTP_C, HTTP_C, NALIAS, OUT.
{
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
	: "${ROUNDS:=1}" "${DUR:=3s}" "${WARM:=1s}" "${NALIAS:=200}"
fi
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-10s}
WARM=${WARM:-3s}
SMTP_C=${SMTP_C:-50}
HTTP_C=${HTTP_C:-100}
NALIAS=${NALIAS:-2000}
OUT=${OUT:-bench/out/etcd}

say() { printf '\n== %s\n' "$*"; }
die() { echo "etcd.sh: $*" >&2; exit 1; }

for tool in etcd smtp-sink jq; do
	command -v "$tool" >/dev/null || die "$tool is missing (apt-get install etcd-server postfix jq)"
done

TMP=$(mktemp -d /tmp/tempalias-etcd-bench.XXXXXX)
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

say "building tempalias and the load generator"
go build -o "$TMP/tempalias" .
go build -o "$TMP/loadgen" ./bench/loadgen
LG=$TMP/loadgen

# Free ports, asked of the kernel.
mapfile -t P < <("$LG" -mode ports -n 13)
SINK=${P[0]}
E_CLIENT=("${P[1]}" "${P[2]}" "${P[3]}")
E_PEER=("${P[4]}" "${P[5]}" "${P[6]}")
H0=("${P[7]}" "${P[8]}")   # bolt host: http smtp
HA=("${P[9]}" "${P[10]}")  # etcd host A
HB=("${P[11]}" "${P[12]}") # etcd host B

wait_port() { # port [seconds]
	local deadline=$((SECONDS + ${2:-30}))
	until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}
wait_log() { # file pattern seconds
	local deadline=$((SECONDS + $3))
	until grep -q "$2" "$1" 2>/dev/null; do
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}

say "starting smtp-sink on 127.0.0.1:$SINK"
smtp-sink -u nobody -m 1000 "127.0.0.1:$SINK" 1000 >"$TMP/sink.log" 2>&1 &
SINKPID=$!
PIDS+=("$SINKPID")
wait_port "$SINK" || die "smtp-sink did not start"

say "starting a 3-member etcd cluster"
initial=""
for i in 0 1 2; do initial+="${initial:+,}m$i=http://127.0.0.1:${E_PEER[$i]}"; done
EPIDS=()
for i in 0 1 2; do
	etcd --name "m$i" --data-dir "$TMP/etcd$i" \
		--listen-client-urls "http://127.0.0.1:${E_CLIENT[$i]}" --advertise-client-urls "http://127.0.0.1:${E_CLIENT[$i]}" \
		--listen-peer-urls "http://127.0.0.1:${E_PEER[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${E_PEER[$i]}" \
		--initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token bench \
		--auto-compaction-mode periodic --auto-compaction-retention 1h --experimental-enable-lease-checkpoint \
		--logger zap --log-level warn >"$TMP/etcd$i.log" 2>&1 &
	EPIDS+=($!)
	PIDS+=($!)
done
for i in 0 1 2; do wait_port "${E_CLIENT[$i]}" 60 || die "etcd m$i did not start: $(tail -3 "$TMP/etcd$i.log")"; done
ENDPOINTS=$(printf '"127.0.0.1:%s",' "${E_CLIENT[@]}")
ENDPOINTS=${ENDPOINTS%,}

write_conf() { # file data_file http smtp engine
	cat >"$1" <<EOF
data_file = "$2"
domains = ["bench.test"]
[http]
listen = "127.0.0.1:$3"
[smtp]
listen = "127.0.0.1:$4"
hostname = "tempalias-bench.localdomain"
[smarthost]
address = "127.0.0.1:$SINK"
[limits]
max_days = 60
max_usage = 1000000
create_per_minute = 0
[store]
engine = "$5"
[etcd]
endpoints = [$ENDPOINTS]
prefix = "/bench/"
[log]
level = "warn"
[admin]
socket = "$2.sock"
EOF
}
start_ta() { # name http smtp engine; sets TA_PID
	write_conf "$TMP/$1.toml" "$TMP/$1.db" "$2" "$3" "$4"
	"$TMP/tempalias" -config "$TMP/$1.toml" 2>"$TMP/$1.log" &
	TA_PID=$!
	PIDS+=("$TA_PID")
	wait_port "$2" 60 || die "tempalias $1 did not start: $(tail -3 "$TMP/$1.log")"
	wait_port "$3" 10 || die "tempalias $1 has no SMTP listener"
}
say "starting tempalias: bolt, and hosts A and B on the cluster"
start_ta bolt "${H0[0]}" "${H0[1]}" bolt
BOLT=$TA_PID
start_ta a "${HA[0]}" "${HA[1]}" etcd
TA_A=$TA_PID
start_ta b "${HB[0]}" "${HB[1]}" etcd
TA_B=$TA_PID

ETCD_WATCH="etcd0=${EPIDS[0]},etcd1=${EPIDS[1]},etcd2=${EPIDS[2]}"
declare -A HTTP_ADDR=([bolt]="127.0.0.1:${H0[0]}" [etcd]="127.0.0.1:${HA[0]},127.0.0.1:${HB[0]}")
declare -A SMTP_ADDR=([bolt]="127.0.0.1:${H0[1]}" [etcd]="127.0.0.1:${HA[1]},127.0.0.1:${HB[1]}")
declare -A WATCH=([bolt]="ta=$BOLT" [etcd]="ta_a=$TA_A,ta_b=$TA_B,$ETCD_WATCH")

say "creating $NALIAS aliases on each store"
for peer in bolt etcd; do
	"$LG" -mode http-create -addr "${HTTP_ADDR[$peer]}" -c 10 -n "$NALIAS" -d 300s \
		-days 60 -max-usage 1000000 -target rcpt@example.net -out "$TMP/aliases-$peer.txt" -label "setup/$peer" >/dev/null
	[[ $(wc -l <"$TMP/aliases-$peer.txt") == "$NALIAS" ]] || die "created only $(wc -l <"$TMP/aliases-$peer.txt") aliases on $peer"
done

mkdir -p "$OUT"
RES=$OUT/results.jsonl
: >"$RES"
quiet() { "$LG" -mode quiet -d 20s -max-busy 0.3 || true; }
measure() { # label watch loadgen-args...
	local label=$1 watch=$2
	shift 2
	quiet
	"$LG" -label "warmup/$label" -d "$WARM" "$@" >/dev/null 2>&1 || true
	"$LG" -label "$label" -d "$DUR" -watch "$watch" "$@" >>"$RES"
}

for round in $(seq 1 "$ROUNDS"); do
	say "round $round of $ROUNDS"
	# Alternate which store goes first, so that neither always gets the
	# quieter half of a round.
	order=(bolt etcd)
	((round % 2 == 0)) && order=(etcd bolt)
	for peer in "${order[@]}"; do
		measure "create/$peer" "${WATCH[$peer]}" -mode http-create -addr "${HTTP_ADDR[$peer]}" -c "$HTTP_C" \
			-days 60 -max-usage 5 -target many@example.net
		measure "refuse/$peer" "${WATCH[$peer]}" -mode smtp-refuse -addr "${SMTP_ADDR[$peer]}" -c "$SMTP_C"
		measure "relay/$peer" "${WATCH[$peer]},sink=$SINKPID" -mode smtp-relay -addr "${SMTP_ADDR[$peer]}" -c "$SMTP_C" \
			-rcpt-file "$TMP/aliases-$peer.txt" -size 4096
	done
done

say "summary"
{
	echo "| workload | bbolt /s | etcd (2 hosts) /s | etcd / bbolt | CPU µs/op bbolt | CPU µs/op etcd (hosts + members) | errors bbolt / etcd |"
	echo "| --- | --- | --- | --- | --- | --- | --- |"
	for w in create refuse relay; do
		jq -s -r --arg w "$w" '
			def med: sort | if length == 0 then 0 else .[(length - 1) / 2 | floor] end;
			def cpu: [.cpu | to_entries[] | select((.key | endswith("_us_per_op")) and .key != "client_us_per_op") | .value] | add // 0;
			def rows(p): map(select(.label == ($w + "/" + p)));
			(rows("bolt") | map(.throughput) | med) as $b |
			(rows("etcd") | map(.throughput) | med) as $e |
			(rows("bolt") | map(cpu) | med) as $cb |
			(rows("etcd") | map(cpu) | med) as $ce |
			(rows("bolt") | map(.errors) | add) as $xb |
			(rows("etcd") | map(.errors) | add) as $xe |
			"| \($w) | \($b | round) | \($e | round) | \(if $b > 0 then ($e / $b * 100 | round / 100) else 0 end) | \($cb | round) | \($ce | round) | \($xb) / \($xe) |"' "$RES"
	done
	echo
	echo "ROUNDS=$ROUNDS DUR=$DUR SMTP_C=$SMTP_C HTTP_C=$HTTP_C NALIAS=$NALIAS, $(nproc) cores, $(etcd --version | head -1)"
} | tee "$OUT/summary.md"
}
