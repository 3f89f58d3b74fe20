#!/usr/bin/env bash
# bench/run.sh: measure tempalias against the peers self-hosters use today
# and against ceilings written for the measurement, side by side, in one
# run, on this machine.
#
#   bash bench/run.sh                  # every part (about 25 minutes on 2 cores)
#   QUICK=1 bash bench/run.sh          # small counts, a smoke check
#   PARTS="http scale" bash bench/run.sh   # only those parts
#
# Parts (PARTS, space-separated; default all): smtp (refusals and relays
# against Postfix, the sink and the ceilings), http (durable creations and
# static files), big (one 100 MiB message), scale (RCPT over 1M live
# aliases), sweep (RCPT latency while 1M expired aliases are swept), etcd
# (bbolt against two hosts on a 3-member etcd cluster; skipped when etcd is
# not installed). SMTP_ONLY=1 is PARTS=smtp.
#
# What it starts, all on 127.0.0.1 and all stopped again on exit:
#   - Postfix's smtp-sink: the common smarthost of every SMTP peer;
#   - a private Postfix instance (own config, queue and data directories in
#     a temporary directory, its own port) forwarding the same aliases the
#     way self-hosters do it today: virtual_alias_domains +
#     virtual_alias_maps (hash), relayhost = the sink;
#   - tempalias, built from this checkout, relaying to the same sink;
#   - bench/hello: a hello-world Go handler (the HTTP ceiling) and a bare
#     http.FileServer of static/;
#   - bench/ceiling: the ceilings of tempalias's own work, driven by the
#     same load generator: a raw-TCP refuser, a minimal pipelined relay (to
#     the same sink) and a bbolt group-commit writer behind POST /aliases;
#   - for the etcd part: three etcd members and tempalias hosts on them.
# Then it measures each workload on each peer, alternating, and prints
# tables with ratios. Results: bench/out/ (results.jsonl, summary.md, run.log).
#
# Needs root for the smtp part (Postfix's master runs as root) and Debian's
# apt for what is missing (postfix, wrk, jq). Knobs: QUICK=1, PARTS,
# SMTP_ONLY=1, ROUNDS, DUR, WARM, SMTP_C, HTTP_C, NALIAS, SCALE_N, BIG,
# QUIET_WAIT, OUT (where results go), PF_EXTRA (lines added to Postfix's
# main.cf), ETCD_NALIAS, RELAYS_ONLY=1 (of the smtp part only the relay
# workloads), REFUSALS_ONLY=1 (of the smtp part only the refusal
# workloads), TA_BASE=<git revision> (a second tempalias built from that
# revision, "base", joins the refusal and relay rounds as one more peer: a
# before and after in one run, alternating), SWEEP_C and SWEEP_RATE (the
# sweep part's probe sessions per kind, and their RCPTs a second per kind;
# 0, the default: as fast as they go), SWEEP_KEEP=DIR.
set -euo pipefail
# The whole script is one compound command, read before it runs: editing
# this file while it runs cannot change what runs.
{

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
	ROUNDS=${ROUNDS:-1} DUR=${DUR:-2s} WARM=${WARM:-500ms}
	NALIAS=${NALIAS:-200} SCALE_N=${SCALE_N:-20000} LOOKUPS=${LOOKUPS:-20000}
else
	ROUNDS=${ROUNDS:-3} DUR=${DUR:-6s} WARM=${WARM:-1s}
	NALIAS=${NALIAS:-1000} SCALE_N=${SCALE_N:-1000000} LOOKUPS=${LOOKUPS:-200000}
fi
SMTP_C=${SMTP_C:-50}      # concurrent SMTP sessions (issue 3)
HTTP_C=${HTTP_C:-100}     # concurrent HTTP clients (issue 2)
BIG=${BIG:-104857600}     # the one big message: 100 MiB
SMTP_ONLY=${SMTP_ONLY:-0} # 1: PARTS=smtp
if [[ $SMTP_ONLY == 1 ]]; then PARTS=${PARTS:-smtp}; fi
PARTS=" ${PARTS:-smtp http big scale sweep etcd} "
for p in $PARTS; do
	case $p in smtp | http | big | scale | sweep | etcd) ;; *)
		echo "bench: unknown part $p in PARTS (smtp http big scale sweep etcd)" >&2
		exit 2
		;;
	esac
done
has() { [[ $PARTS == *" $1 "* ]]; }
if [[ ${RELAYS_ONLY:-0} == 1 && ${REFUSALS_ONLY:-0} == 1 ]]; then
	echo "bench: RELAYS_ONLY=1 and REFUSALS_ONLY=1 leave no SMTP workload: set one" >&2
	exit 2
fi
if has etcd && ! command -v etcd >/dev/null; then
	echo "bench: etcd is not installed (apt-get install etcd-server): the etcd part is skipped"
	PARTS=${PARTS/ etcd / }
fi
ETCD_NALIAS=${ETCD_NALIAS:-$([[ $QUICK == 1 ]] && echo 200 || echo 2000)}
SWEEP_C=${SWEEP_C:-10}    # sessions per kind probing RCPT during the sweep
SWEEP_RATE=${SWEEP_RATE:-0} # RCPT probes a second per kind during the sweep; 0: as fast as they go (a closed loop, both cores busy)
QUIET_WAIT=${QUIET_WAIT:-$([[ $QUICK == 1 ]] && echo 2s || echo 8s)} # longest wait for a quiet machine before a run
export PATH=$PATH:/usr/sbin:/usr/local/go/bin

OUT=${OUT:-$ROOT/bench/out}
mkdir -p "$OUT"
RES=$OUT/results.jsonl
SUMMARY=$OUT/summary.md
: >"$RES"
exec > >(tee "$OUT/run.log") 2>&1

TMP=$(mktemp -d /tmp/tempalias-bench.XXXXXX)
chmod 755 "$TMP" # Postfix daemons run as user postfix and must reach their queue
PIDS=()
PFCONF=$TMP/postfix/conf
PFQ=$TMP/postfix/queue

say() { printf '\n== %s\n' "$*"; }
die() {
	echo "bench: $*" >&2
	exit 1
}

stop_pid() { # pid: TERM, wait up to 15s, then KILL
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 150; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	forget_pid "$pid"
}

forget_pid() { # pid: no longer ours to stop
	local keep=() p
	for p in "${PIDS[@]}"; do
		if [[ $p != "$1" ]]; then keep+=("$p"); fi
	done
	PIDS=("${keep[@]}")
}

stop_postfix() {
	[[ -f $PFCONF/main.cf ]] || return 0
	local master=""
	if [[ -f $PFQ/pid/master.pid ]]; then master=$(tr -d ' \n' <"$PFQ/pid/master.pid"); fi
	postfix -c "$PFCONF" stop >/dev/null 2>&1 || true
	if [[ -n $master ]]; then
		local i
		for ((i = 0; i < 100; i++)); do
			kill -0 "$master" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$master" 2>/dev/null || true
	fi
	rm -f "$PFCONF/main.cf"
}

cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	stop_postfix
	local p
	for p in "${PIDS[@]}"; do stop_pid "$p"; done
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- what we need ---------------------------------------------------------

if has smtp; then [[ $(id -u) == 0 ]] || die "run as root: Postfix's master and smtp-sink -u need it"; fi
missing=()
if has smtp; then command -v postfix >/dev/null || missing+=(postfix); fi
command -v smtp-sink >/dev/null || missing+=(postfix)
if has http; then command -v wrk >/dev/null || missing+=(wrk); fi
command -v jq >/dev/null || missing+=(jq)
command -v go >/dev/null || die "go is not installed"
if ((${#missing[@]})); then
	say "installing ${missing[*]}"
	# "No configuration": do not set up or start a system Postfix on :25.
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

say "building"
(cd "$ROOT" && go build -o "$TMP/tempalias" . &&
	go build -o "$TMP/loadgen" ./bench/loadgen &&
	go build -o "$TMP/hello" ./bench/hello &&
	go build -o "$TMP/ceiling" ./bench/ceiling &&
	go build -o "$TMP/fill" ./bench/fill)
LG=$TMP/loadgen
if [[ -n ${TA_BASE:-} ]]; then
	say "building tempalias $TA_BASE as base"
	mkdir -p "$TMP/base-src"
	git -C "$ROOT" archive "$TA_BASE" | tar -x -C "$TMP/base-src"
	(cd "$TMP/base-src" && go build -o "$TMP/tempalias-base" .)
fi

# --- the machine ----------------------------------------------------------

CPU=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
MEM=$(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
PFVER=$(postconf -h mail_version 2>/dev/null || echo none)
GOVER=$(go version | awk '{print $3}')
say "machine"
cat <<EOF | tee "$OUT/machine.txt"
nproc:   $(nproc)
cpu:     $CPU
memory:  $MEM
kernel:  $(uname -sr)
go:      $GOVER
postfix: $PFVER
commit:  $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo " (plus uncommitted changes)")
loadavg: $(cut -d' ' -f1-3 /proc/loadavg) at the start
parts:  $PARTS
mode:    QUICK=$QUICK ROUNDS=$ROUNDS DUR=$DUR WARM=$WARM SMTP_C=$SMTP_C HTTP_C=$HTTP_C NALIAS=$NALIAS SCALE_N=$SCALE_N
EOF

mapfile -t P < <("$LG" -mode ports -n 28)
SINK=${P[0]} PF=${P[1]} TA_HTTP=${P[2]} TA_SMTP=${P[3]} HELLO=${P[4]}
BIG_HTTP=${P[5]} BIG_SMTP=${P[6]} SC_HTTP=${P[7]} SC_SMTP=${P[8]}
C_REFUSE=${P[9]} C_RELAY=${P[10]} C_CREATE=${P[11]}
E_CLIENT=("${P[12]}" "${P[13]}" "${P[14]}") E_PEER=("${P[15]}" "${P[16]}" "${P[17]}")
E_BOLT=("${P[18]}" "${P[19]}") E_A=("${P[20]}" "${P[21]}") E_B=("${P[22]}" "${P[23]}")
BASE_HTTP=${P[26]} BASE_SMTP=${P[27]}

wait_port() { # port [seconds]
	local i
	for ((i = 0; i < ${2:-30} * 10; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

wait_log() { # file pattern seconds pid
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		kill -0 "$4" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

vm() { # pid field (VmHWM, VmRSS) in KiB
	awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"
}

# --- the peers ------------------------------------------------------------

say "starting smtp-sink on 127.0.0.1:$SINK"
smtp-sink -u nobody -m 1000 "127.0.0.1:$SINK" 1000 >"$TMP/sink.log" 2>&1 &
SINKPID=$!
PIDS+=("$SINKPID")
wait_port "$SINK" || die "smtp-sink did not start: $(cat "$TMP/sink.log")"

write_conf() { # file data_file http_port smtp_port sweep_interval
	cat >"$1" <<EOF
data_file = "$2"
domains = ["bench.test"]
[http]
listen = "127.0.0.1:$3"
[smtp]
listen = "127.0.0.1:$4"
hostname = "tempalias-bench.localdomain"
max_message_bytes = 209715200
[smarthost]
address = "127.0.0.1:$SINK"
[limits]
max_days = 60
max_usage = 1000000
create_per_minute = 0
[store]
sweep_interval = "$5"
[admin]
socket = "$2.sock"
${TA_EXTRA:-}
EOF
}

# start_ta name data_file http_port smtp_port sweep_interval [VAR=value...]
# sets TA_PID; the log is $TMP/name.log. TA_BIN: the binary (default this
# checkout's). TA_EXTRA: more config lines, at
# the end (so in a section of their own: start them with one).
start_ta() {
	local name=$1 data=$2 http=$3 smtp=$4 sweep=$5
	shift 5
	mkdir -p "$(dirname "$data")"
	write_conf "$TMP/$name.toml" "$data" "$http" "$smtp" "$sweep"
	env "$@" "${TA_BIN:-$TMP/tempalias}" -config "$TMP/$name.toml" 2>"$TMP/$name.log" &
	TA_PID=$!
	PIDS+=("$TA_PID")
	wait_log "$TMP/$name.log" "tempalias started" 60 "$TA_PID" ||
		die "tempalias ($name) did not start: $(tail -5 "$TMP/$name.log")"
	wait_port "$http" || die "tempalias ($name) HTTP is not listening"
}

TA_SMTP_OK=1 TA= TA_HWM=0 STATIC_OK=0 STATIC_PATHS=/ HELLOPID= PFM=
AL=$TMP/aliases.txt AL_BASE=$TMP/aliases-base.txt BASE=
if has smtp || has http; then
	say "starting tempalias (HTTP 127.0.0.1:$TA_HTTP, SMTP 127.0.0.1:$TA_SMTP)"
	start_ta ta "$TMP/ta/tempalias.db" "$TA_HTTP" "$TA_SMTP" 1m
	TA=$TA_PID
	grep "tempalias started" "$TMP/ta.log"
	if ! grep "tempalias started" "$TMP/ta.log" | grep -q 'smtp=' || ! wait_port "$TA_SMTP" 5; then
		TA_SMTP_OK=0
		echo "tempalias has no SMTP listener in this build: its SMTP workloads are skipped"
	fi
fi

if has smtp; then
	say "creating $NALIAS aliases through tempalias's HTTP API"
	"$LG" -mode http-create -addr "127.0.0.1:$TA_HTTP" -c 10 -n "$NALIAS" -d 300s \
		-days 60 -max-usage 1000000 -target rcpt@example.net -out "$AL" -label setup/create >/dev/null
	[[ $(wc -l <"$AL") == "$NALIAS" ]] || die "created only $(wc -l <"$AL") of $NALIAS aliases"
	head -2 "$AL"
	if [[ -n ${TA_BASE:-} ]]; then
		say "starting tempalias $TA_BASE as base (HTTP 127.0.0.1:$BASE_HTTP, SMTP 127.0.0.1:$BASE_SMTP) and its $NALIAS aliases"
		TA_BIN=$TMP/tempalias-base start_ta base "$TMP/base/tempalias.db" "$BASE_HTTP" "$BASE_SMTP" 1m
		BASE=$TA_PID
		"$LG" -mode http-create -addr "127.0.0.1:$BASE_HTTP" -c 10 -n "$NALIAS" -d 300s \
			-days 60 -max-usage 1000000 -target rcpt@example.net -out "$AL_BASE" -label setup/create-base >/dev/null
		[[ $(wc -l <"$AL_BASE") == "$NALIAS" ]] || die "base: created only $(wc -l <"$AL_BASE") of $NALIAS aliases"
	fi
say "starting Postfix $PFVER on 127.0.0.1:$PF with the same $NALIAS aliases"
mkdir -p "$PFCONF" "$PFQ" "$TMP/postfix/data"
chown postfix "$TMP/postfix/data"
cat >"$PFCONF/main.cf" <<EOF
# A private instance: nothing here touches the system Postfix.
compatibility_level = 3.6
queue_directory = $PFQ
data_directory = $TMP/postfix/data
multi_instance_name = postfix-bench
syslog_name = postfix-bench
maillog_file = $TMP/postfix/maillog
maillog_file_prefixes = $TMP
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix-bench.localdomain
mydomain = localdomain
myorigin = \$myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
biff = no
append_dot_mydomain = no
smtpd_tls_security_level = none
smtp_tls_security_level = none
# How self-hosters forward aliases: a virtual alias domain and a hash map,
# everything handed to a relay host.
virtual_alias_domains = bench.test
virtual_alias_maps = hash:$PFCONF/virtual
relayhost = [127.0.0.1]:$SINK
EOF
# PF_EXTRA: more main.cf lines, e.g. PF_EXTRA='in_flow_delay = 0s'.
if [[ -n ${PF_EXTRA:-} ]]; then printf '%s\n' "$PF_EXTRA" >>"$PFCONF/main.cf"; fi
# Debian's services, minus the ones that need more than this (TLS, pipes),
# none chrooted, and smtpd on our own loopback port instead of :25.
cat >"$PFCONF/master.cf" <<EOF
127.0.0.1:$PF inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
cp "$TMP/aliases.txt" "$PFCONF/virtual"
postmap "$PFCONF/virtual"
postfix -c "$PFCONF" start >/dev/null 2>&1 || die "Postfix did not start: $(tail -5 "$TMP/postfix/maillog" 2>/dev/null)"
wait_port "$PF" || die "Postfix is not listening: $(tail -5 "$TMP/postfix/maillog" 2>/dev/null)"

pf_drain() { # wait (at most 3 minutes) until Postfix delivered its queue to the sink
	local i
	for ((i = 0; i < 1800; i++)); do
		[[ -z $(find "$PFQ/maildrop" "$PFQ/incoming" "$PFQ/active" "$PFQ/deferred" -type f -print -quit 2>/dev/null) ]] && return 0
		sleep 0.1
	done
	echo "warning: Postfix queue not empty after 3 minutes"
}

fi

# start_ceiling name mode port [args...]: one of bench/ceiling's peers;
# sets C_PID
start_ceiling() {
	local name=$1 mode=$2 port=$3
	shift 3
	"$TMP/ceiling" -mode "$mode" -listen "127.0.0.1:$port" "$@" 2>"$TMP/ceiling-$name.log" &
	C_PID=$!
	PIDS+=("$C_PID")
	wait_port "$port" || die "ceiling $name did not start: $(tail -3 "$TMP/ceiling-$name.log")"
}
if has smtp; then
	say "starting the SMTP ceilings: raw refuser on 127.0.0.1:$C_REFUSE, minimal relay on 127.0.0.1:$C_RELAY"
	start_ceiling refuse refuse "$C_REFUSE"
	CREFPID=$C_PID
	start_ceiling relay relay "$C_RELAY" -upstream "127.0.0.1:$SINK"
	CRELPID=$C_PID
fi
if has http; then
	say "starting the creation ceiling (bbolt group commit behind POST /aliases) on 127.0.0.1:$C_CREATE"
	mkdir -p "$TMP/ceiling-data"
	start_ceiling create create "$C_CREATE" -file "$TMP/ceiling-data/create.db"
	CCREPID=$C_PID
	if [[ -f $ROOT/static/index.html ]]; then
		STATIC_OK=1
		say "starting hello (POST /aliases hello-world, http.FileServer of static/) on 127.0.0.1:$HELLO"
		"$TMP/hello" -listen "127.0.0.1:$HELLO" -static "$ROOT/static" 2>"$TMP/hello.log" &
	else
		say "starting hello (POST /aliases hello-world) on 127.0.0.1:$HELLO; no static/ yet"
		"$TMP/hello" -listen "127.0.0.1:$HELLO" 2>"$TMP/hello.log" &
	fi
	HELLOPID=$!
	PIDS+=("$HELLOPID")
	wait_port "$HELLO" || die "hello did not start"
fi

if has smtp; then
	# Smoke: one message through each relay, one refusal from each front end.
	say "smoke test"
	FIRST=$(head -1 "$TMP/aliases.txt" | cut -d' ' -f1)
	"$LG" -mode smtp-relay -addr "127.0.0.1:$PF" -c 1 -n 1 -rcpt "$FIRST" -label smoke/postfix >/dev/null
	"$LG" -mode smtp-refuse -addr "127.0.0.1:$PF" -c 1 -n 1 -label smoke/postfix-refuse >/dev/null
	if ((TA_SMTP_OK)); then
		"$LG" -mode smtp-relay -addr "127.0.0.1:$TA_SMTP" -c 1 -n 1 -rcpt "$FIRST" -label smoke/tempalias >/dev/null
		"$LG" -mode smtp-refuse -addr "127.0.0.1:$TA_SMTP" -c 1 -n 1 -label smoke/tempalias-refuse >/dev/null
	fi
	"$LG" -mode smtp-relay -addr "127.0.0.1:$C_RELAY" -c 1 -n 1 -rcpt "$FIRST" -label smoke/ceiling >/dev/null
	"$LG" -mode smtp-refuse -addr "127.0.0.1:$C_REFUSE" -c 1 -n 1 -label smoke/ceiling-refuse >/dev/null
	pf_drain
fi

# --- measurement helpers --------------------------------------------------

if has smtp; then PFM=$(tr -d ' \n' <"$PFQ/pid/master.pid"); fi
# What each peer's CPU is: the server process (Postfix: its master and all
# the daemons it runs), plus the sink for relays.
W_TA="server=$TA,sink=$SINKPID"
W_BASE="server=$BASE,sink=$SINKPID"
W_PF="server=$PFM+,sink=$SINKPID"
W_SINK="server=$SINKPID"
W_HELLO="server=$HELLOPID"
W_CREF="server=${CREFPID:-}" W_CREL="server=${CRELPID:-},sink=$SINKPID" W_CCRE="server=${CCREPID:-}"

# quiet: wait (at most QUIET_WAIT) for a second in which neighbours use
# less than 0.3 cores, so that measurements fall between their bursts.
quiet() { "$LG" -mode quiet -d "$QUIET_WAIT" -max-busy 0.3; }

# measure label watch loadgen-args...: an unmeasured warm-up run, then one
# measured run, its JSON line to $RES. Postfix's queue is drained before
# the measured run, and after it while its CPU is still counted: Postfix
# delivers after it answered, tempalias before.
measure() {
	local label=$1 watch=$2
	shift 2
	quiet
	if [[ $WARM != 0 && $WARM != 0s ]]; then
		"$LG" -label "warmup/$label" -d "$WARM" "$@" >/dev/null 2>&1 || true
	fi
	if [[ $label == */postfix ]]; then pf_drain; fi
	"$LG" -label "$label" -d "$DUR" -watch "$watch" "$@" >>"$RES"
	if [[ $label == */postfix ]]; then
		local c1 c2 last
		c1=$("$LG" -mode cpu -watch "$watch")
		pf_drain
		c2=$("$LG" -mode cpu -watch "$watch")
		last=$(tail -1 "$RES")
		sed -i '$d' "$RES"
		jq -c --argjson a "$c1" --argjson b "$c2" '
			def per(ms): if .count > 0 then (ms * 10000 / .count | round / 10) else 0 end;
			.cpu.drain_server_ms = ($b.server_ms - $a.server_ms) |
			.cpu.drain_sink_ms = ($b.sink_ms - $a.sink_ms) |
			.cpu.server_ms += .cpu.drain_server_ms | .cpu.sink_ms += .cpu.drain_sink_ms |
			.cpu.server_us_per_op = per(.cpu.server_ms) | .cpu.sink_us_per_op = per(.cpu.sink_ms)' \
			<<<"$last" >>"$RES"
		tail -1 "$RES" | jq -r '"  with the queue drained: server \(.cpu.server_ms)ms (\(.cpu.server_us_per_op)µs/op), sink \(.cpu.sink_ms)ms"' >&2
	fi
}

# wrk_measure label watch url [lua]: one wrk run as a JSON line in $RES
wrk_measure() {
	local label=$1 watch=$2 url=$3 lua=${4:-} out c1 c2
	local args=(-t2 -c"$HTTP_C" -d"$DUR" --latency -H "Accept-Encoding: gzip")
	if [[ -n $lua ]]; then args+=(-s "$lua"); fi
	quiet
	c1=$("$LG" -mode cpu -watch "$watch")
	out=$(wrk "${args[@]}" "$url")
	c2=$("$LG" -mode cpu -watch "$watch")
	awk -v label="$label" '
		function toms(s) {
			if (s ~ /us$/) return substr(s, 1, length(s)-2) / 1000
			if (s ~ /ms$/) return substr(s, 1, length(s)-2) + 0
			if (s ~ /s$/)  return substr(s, 1, length(s)-1) * 1000
			return s + 0
		}
		/^ +50%/ { p50 = toms($2) }
		/^ +99%/ { p99 = toms($2) }
		/requests in/ { count = $1 }
		/Requests\/sec:/ { rps = $2 }
		/Non-2xx or 3xx responses:/ { bad += $NF }
		/Socket errors:/ { gsub(",", ""); bad += $4 + $6 + $8 + $10 }
		END {
			printf "{\"label\":\"%s\",\"mode\":\"wrk\",\"count\":%d,\"errors\":%d,\"throughput\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f}\n",
				label, count, bad, rps, p50, p99
		}' <<<"$out" | jq -c --argjson a "$c1" --argjson b "$c2" '
			.cpu.server_ms = ($b.server_ms - $a.server_ms) |
			.cpu.server_us_per_op = (if .count > 0 then (.cpu.server_ms * 10000 / .count | round / 10) else 0 end)' >>"$RES"
	tail -1 "$RES" | jq -r '"\(.label) (wrk): \(.count) requests, \(.errors) errors, \(.throughput)/s, p50 \(.p50_ms)ms p99 \(.p99_ms)ms; server CPU \(.cpu.server_us_per_op)µs/op"' >&2
}

# The median over a label's rounds of a field (a jq path such as
# .throughput or .cpu.server_us_per_op).
med() {
	jq -r -s --arg l "$1" "[.[] | select(.label == \$l) | $2 | select(. != null)] | sort |
		 if length == 0 then \"-\" else .[(length - 1) / 2 | floor] end" "$RES"
}
errs() { jq -s --arg l "$1" '[.[] | select(.label == $l) | .errors] | add // 0' "$RES"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'; }

e() {
	local n
	n=$(errs "$1")
	if [[ $n != 0 ]]; then echo ", $n errors"; fi
}
# row workload tempalias-label peer-label target: one line of the table;
# none for workloads this run did not measure (RELAYS_ONLY, REFUSALS_ONLY)
row() {
	local w=$1 a=$2 b=$3 target=$4
	local ta tb r verdict ca sa cb oa ob
	ta=$(med "$a" .throughput)
	tb=$(med "$b" .throughput)
	if [[ $ta == - && $tb == - ]]; then return; fi
	r=$(ratio "$ta" "$tb")
	verdict=""
	if [[ -n $target && $r != "-" ]]; then
		verdict="≥ $target: $(awk -v r="$r" -v t="$target" 'BEGIN { print (r >= t ? "met" : "**missed**") }')"
	fi
	ca=$(med "$a" .cpu.server_us_per_op)
	sa=$(med "$a" .cpu.sink_us_per_op)
	cb=$(med "$b" .cpu.server_us_per_op)
	if [[ $sa != "-" && $sa != 0 && $b != */sink ]]; then ca="$ca (+$sa sink)"; fi
	oa=$(med "$a" .cpu.others_cores)
	ob=$(med "$b" .cpu.others_cores)
	printf '| %s | %s/s, p50 %s, p99 %s ms%s | %s | %s/s, p50 %s, p99 %s ms%s | **%s** | %s | %s / %s | %s / %s |\n' \
		"$w" "$ta" "$(med "$a" .p50_ms)" "$(med "$a" .p99_ms)" "$(e "$a")" "${b#*/}" \
		"$tb" "$(med "$b" .p50_ms)" "$(med "$b" .p99_ms)" "$(e "$b")" "$r" "$verdict" "$ca" "$cb" "$oa" "$ob"
}

table_head() {
	echo "Medians of $ROUNDS round(s) of $DUR each (each after a $WARM warm-up run), peers alternating (ABBA)."
	echo "CPU µs/op: server CPU time per successful operation (Postfix: master and all its daemons,"
	echo "queue drained); others: cores busy with processes outside the benchmark (neighbours)."
	echo
	echo "| workload | tempalias | peer | peer | ratio | target | CPU µs/op tempalias / peer | others (cores) |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
}
smtp_rows() {
	row "RCPT refusals, $SMTP_C sessions" refuse/tempalias refuse/postfix 4
	row "RCPT refusals, pipelined, $SMTP_C sessions" refuse-pipe/tempalias refuse-pipe/postfix 4
	row "4 KiB relays, reused connections, $SMTP_C" relay/tempalias relay/postfix 5
	row "4 KiB relays, reused connections, $SMTP_C" relay/tempalias relay/sink 0.5
	row "4 KiB relays, reused connections, pipelined, $SMTP_C" relay-pipe/tempalias relay-pipe/postfix 5
	row "4 KiB relays, reused connections, pipelined, $SMTP_C" relay-pipe/tempalias relay-pipe/sink 0.5
	row "4 KiB relays, session per message, $SMTP_C" relay1/tempalias relay1/postfix 5
	row "4 KiB relays, session per message, $SMTP_C" relay1/tempalias relay1/sink 0.5
	if [[ -n $BASE ]]; then
		row "RCPT refusals, $SMTP_C sessions: against $TA_BASE" refuse/tempalias refuse/base ""
		row "RCPT refusals, pipelined, $SMTP_C sessions: against $TA_BASE" refuse-pipe/tempalias refuse-pipe/base ""
		row "4 KiB relays, reused connections, $SMTP_C: against $TA_BASE" relay/tempalias relay/base ""
		row "4 KiB relays, reused connections, pipelined, $SMTP_C: against $TA_BASE" relay-pipe/tempalias relay-pipe/base ""
		row "4 KiB relays, session per message, $SMTP_C: against $TA_BASE" relay1/tempalias relay1/base ""
		row "$TA_BASE 4 KiB relays, session per message, $SMTP_C" relay1/base relay1/postfix 5
	fi
}

# rounds workload "peer|watch|loadgen-args" ...: $ROUNDS rounds, peers in
# turn, the order reversed every other round (ABBA) so drift hurts nobody.
rounds() {
	local w=$1 r i
	shift
	local peers=("$@")
	for ((r = 1; r <= ROUNDS; r++)); do
		local order=()
		if ((r % 2)); then
			order=("${peers[@]}")
		else
			for ((i = ${#peers[@]} - 1; i >= 0; i--)); do order+=("${peers[i]}"); done
		fi
		local p
		for p in "${order[@]}"; do
			local name=${p%%|*} rest=${p#*|}
			local watch=${rest%%|*} args=${rest#*|}
			# shellcheck disable=SC2086 # args are word lists on purpose
			measure "$w/$name" "$watch" $args
		done
	done
}

# --- SMTP -----------------------------------------------------------------

TA_S="127.0.0.1:$TA_SMTP" PF_S="127.0.0.1:$PF" SINK_S="127.0.0.1:$SINK"
CREF_S="127.0.0.1:$C_REFUSE" CREL_S="127.0.0.1:$C_RELAY"
ta_peer() { if ((TA_SMTP_OK)); then echo "tempalias|$W_TA|$*"; fi; }
# base_peer loadgen-args...: the TA_BASE build, on its own port and aliases
base_peer() { if [[ -n $BASE ]]; then echo "base|$W_BASE|$* -addr 127.0.0.1:$BASE_SMTP -rcpt-file $AL_BASE"; fi; }

if has smtp && [[ ${RELAYS_ONLY:-0} != 1 ]]; then
	say "RCPT refusals: sessions of EHLO, MAIL, RCPT to an unknown alias (550), QUIT; $SMTP_C concurrent"
	mapfile -t peers < <(ta_peer -mode smtp-refuse -addr "$TA_S" -c "$SMTP_C"
		echo "postfix|$W_PF|-mode smtp-refuse -addr $PF_S -c $SMTP_C"
		echo "ceiling|$W_CREF|-mode smtp-refuse -addr $CREF_S -c $SMTP_C"
		base_peer -mode smtp-refuse -c "$SMTP_C")
	rounds refuse "${peers[@]}"

	say "RCPT refusals, pipelined as a sending MTA does (rfc 2920): EHLO, then MAIL+RCPT+QUIT in one write; $SMTP_C concurrent"
	mapfile -t peers < <(ta_peer -mode smtp-refuse -pipeline -addr "$TA_S" -c "$SMTP_C"
		echo "postfix|$W_PF|-mode smtp-refuse -pipeline -addr $PF_S -c $SMTP_C"
		echo "ceiling|$W_CREF|-mode smtp-refuse -pipeline -addr $CREF_S -c $SMTP_C"
		base_peer -mode smtp-refuse -pipeline -c "$SMTP_C")
	rounds refuse-pipe "${peers[@]}"
fi
if has smtp && [[ ${REFUSALS_ONLY:-0} != 1 ]]; then

	say "4 KiB relays, connections reused with RSET; $SMTP_C concurrent"
	mapfile -t peers < <(ta_peer -mode smtp-relay -addr "$TA_S" -c "$SMTP_C" -rcpt-file "$AL"
		echo "postfix|$W_PF|-mode smtp-relay -addr $PF_S -c $SMTP_C -rcpt-file $AL"
		echo "sink|$W_SINK|-mode smtp-relay -addr $SINK_S -c $SMTP_C -rcpt-file $AL -rcpt-col 2"
		echo "ceiling|$W_CREL|-mode smtp-relay -addr $CREL_S -c $SMTP_C -rcpt-file $AL"
		base_peer -mode smtp-relay -c "$SMTP_C")
	rounds relay "${peers[@]}"

	say "4 KiB relays, connections reused, MAIL+RCPT+DATA pipelined (rfc 2920); $SMTP_C concurrent"
	mapfile -t peers < <(ta_peer -mode smtp-relay -pipeline -addr "$TA_S" -c "$SMTP_C" -rcpt-file "$AL"
		echo "postfix|$W_PF|-mode smtp-relay -pipeline -addr $PF_S -c $SMTP_C -rcpt-file $AL"
		echo "sink|$W_SINK|-mode smtp-relay -pipeline -addr $SINK_S -c $SMTP_C -rcpt-file $AL -rcpt-col 2"
		echo "ceiling|$W_CREL|-mode smtp-relay -pipeline -addr $CREL_S -c $SMTP_C -rcpt-file $AL"
		base_peer -mode smtp-relay -pipeline -c "$SMTP_C")
	rounds relay-pipe "${peers[@]}"

	say "4 KiB relays, one session per message; $SMTP_C concurrent"
	mapfile -t peers < <(ta_peer -mode smtp-relay -per-session -addr "$TA_S" -c "$SMTP_C" -rcpt-file "$AL"
		echo "postfix|$W_PF|-mode smtp-relay -per-session -addr $PF_S -c $SMTP_C -rcpt-file $AL"
		echo "sink|$W_SINK|-mode smtp-relay -per-session -addr $SINK_S -c $SMTP_C -rcpt-file $AL -rcpt-col 2"
		echo "ceiling|$W_CREL|-mode smtp-relay -per-session -addr $CREL_S -c $SMTP_C -rcpt-file $AL"
		base_peer -mode smtp-relay -per-session -c "$SMTP_C")
	rounds relay1 "${peers[@]}"
fi
if has smtp; then stop_postfix; fi

# --- HTTP -----------------------------------------------------------------

# wrk_rounds workload "peer|watch|url[|lua]" ...: like rounds, with wrk
wrk_rounds() {
	local w=$1 r i
	shift
	local peers=("$@")
	for ((r = 1; r <= ROUNDS; r++)); do
		local order=()
		if ((r % 2)); then
			order=("${peers[@]}")
		else
			for ((i = ${#peers[@]} - 1; i >= 0; i--)); do order+=("${peers[i]}"); done
		fi
		local p name watch url lua
		for p in "${order[@]}"; do
			IFS='|' read -r name watch url lua <<<"$p"
			wrk_measure "$w/$name" "$watch" "$url" "$lua"
		done
	done
}

if has http; then
	say "durable alias creation over HTTP keep-alive; $HTTP_C concurrent"
	rounds create "tempalias|$W_TA|-mode http-create -addr 127.0.0.1:$TA_HTTP -c $HTTP_C -max-usage 5" \
		"hello|$W_HELLO|-mode http-create -addr 127.0.0.1:$HELLO -c $HTTP_C -max-usage 5" \
		"ceiling|$W_CCRE|-mode http-create -addr 127.0.0.1:$C_CREATE -c $HTTP_C -max-usage 5"
	cat >"$TMP/create.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"target":"rcpt@example.net","days":3,"max-usage":5}'
wrk.headers["Content-Type"] = "application/json"
EOF
	wrk_rounds create-wrk "tempalias|$W_TA|http://127.0.0.1:$TA_HTTP/aliases|$TMP/create.lua" \
		"hello|$W_HELLO|http://127.0.0.1:$HELLO/aliases|$TMP/create.lua" \
		"ceiling|$W_CCRE|http://127.0.0.1:$C_CREATE/aliases|$TMP/create.lua"

	if ((STATIC_OK)); then
		code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$TA_HTTP/")
		if [[ $code != 200 ]]; then
			echo "tempalias answers $code for /: static workload skipped"
			STATIC_OK=0
		else
			for f in app.js style.css; do
				if [[ -f $ROOT/static/$f && $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$TA_HTTP/$f") == 200 ]]; then
					STATIC_PATHS+=",/$f"
				fi
			done
		fi
	fi
	if ((STATIC_OK)); then
		say "static files ($STATIC_PATHS) with Accept-Encoding: gzip; $HTTP_C concurrent"
		rounds static "tempalias|$W_TA|-mode http-get -addr 127.0.0.1:$TA_HTTP -c $HTTP_C -paths $STATIC_PATHS" \
			"fileserver|$W_HELLO|-mode http-get -addr 127.0.0.1:$HELLO -c $HTTP_C -paths $STATIC_PATHS"
		wrk_rounds static-wrk "fileserver|$W_HELLO|http://127.0.0.1:$HELLO/" "tempalias|$W_TA|http://127.0.0.1:$TA_HTTP/"
	else
		say "static files: skipped (no static/index.html served yet)"
	fi
fi
if [[ -n $TA ]]; then
	TA_HWM=$(vm "$TA" VmHWM)
	TA_ALIASES=$(jq -s '[.[] | select(.label | startswith("create/tempalias") or startswith("create-wrk/tempalias")) | .count] | add // 0' "$RES")
	echo "tempalias peak RSS over all of the above: $((TA_HWM / 1024)) MiB (VmHWM); its store took $TA_ALIASES creations"
	stop_pid "$TA"
fi

# --- one 100 MiB message --------------------------------------------------

# gcstats FILE FROM: over the gctrace lines of FILE after the first FROM,
# print "max-heap-at-GC-start last-live last-goal count" (MB).
gcstats() {
	grep '^gc ' "$1" | tail -n +"$(($2 + 1))" |
		sed -n 's/.* \([0-9.]*\)->\([0-9.]*\)->\([0-9.]*\) MB, \([0-9.]*\) MB goal.*/\1 \3 \4/p' |
		awk 'BEGIN { m = 0; live = 0; goal = 0; n = 0 } { if ($1 > m) m = $1; live = $2; goal = $3; n++ } END { print m, live, goal, n }'
}

BIG_MIB=$((BIG / 1048576))
if has big && ((TA_SMTP_OK)); then
	say "one $BIG_MIB MiB message through a fresh tempalias (GODEBUG=gctrace=1 for heap sizes)"
	start_ta big "$TMP/big/tempalias.db" "$BIG_HTTP" "$BIG_SMTP" 1m GODEBUG=gctrace=1
	BIGPID=$TA_PID
	"$LG" -mode http-create -addr "127.0.0.1:$BIG_HTTP" -c 1 -n 1 -days 1 -max-usage 5 -out "$TMP/big.txt" -label setup/big >/dev/null
	sleep 2 # let start-up settle, then take the baseline
	BIG_BEFORE=$(vm "$BIGPID" VmHWM)
	BIG_RSS0=$(vm "$BIGPID" VmRSS)
	gc0=$(grep -c '^gc ' "$TMP/big.log" || true)
	read -r _ BIG_LIVE0 BIG_GOAL0 _ < <(gcstats "$TMP/big.log" 0)
	"$LG" -label big/tempalias -mode smtp-relay -addr "127.0.0.1:$BIG_SMTP" -c 1 -n 1 -d 600s -timeout 600s \
		-size "$BIG" -rcpt-file "$TMP/big.txt" -watch "server=$BIGPID,sink=$SINKPID" >>"$RES"
	BIG_AFTER=$(vm "$BIGPID" VmHWM)
	read -r BIG_HEAPMAX _ _ BIG_GCS < <(gcstats "$TMP/big.log" "$gc0")
	"$LG" -label big/sink -mode smtp-relay -addr "$SINK_S" -c 1 -n 1 -d 600s -timeout 600s \
		-size "$BIG" -rcpt rcpt@example.net -watch "server=$SINKPID" >>"$RES"
	if ((BIG_GCS == 0 && gc0 == 0)); then
		# No GC at all in the process: there is no heap figure to read, and
		# the heap stayed under the first goal (4 MB x GOGC/100). Peak RSS
		# (which holds the heap) is the measure then.
		BIG_HEAP_GROWTH=$(((BIG_AFTER - BIG_BEFORE + 1023) / 1024))
		BIG_HEAP_TEXT="no GC ran in the process at all (gctrace printed nothing), so the heap figure is the peak RSS, which holds it: growth ${BIG_HEAP_GROWTH} MiB"
	elif ((BIG_GCS > 0)); then
		BIG_HEAP_GROWTH=$(awk -v a="$BIG_HEAPMAX" -v b="$BIG_LIVE0" 'BEGIN { printf "%.0f", (a > b ? a - b : 0) }')
		BIG_HEAP_TEXT="Go heap at most ${BIG_HEAPMAX} MB during the message over $BIG_GCS GCs, live ${BIG_LIVE0} MB before: growth ${BIG_HEAP_GROWTH} MB"
	else
		BIG_HEAP_GROWTH=$(awk -v a="$BIG_GOAL0" -v b="$BIG_LIVE0" 'BEGIN { printf "%.0f", a - b }')
		BIG_HEAP_TEXT="no GC was triggered during the message, so the Go heap stayed under the ${BIG_GOAL0} MB goal of the last GC (live ${BIG_LIVE0} MB): growth under ${BIG_HEAP_GROWTH} MB"
	fi
	echo "VmRSS before $((BIG_RSS0 / 1024)) MiB; VmHWM before $((BIG_BEFORE / 1024)) MiB, after $((BIG_AFTER / 1024)) MiB; $BIG_HEAP_TEXT"
	stop_pid "$BIGPID"
fi

# --- scale: a million aliases ---------------------------------------------

if has scale; then
	say "scale: $SCALE_N live aliases written through store.Create, then store.Get timed in process"
	mkdir -p "$TMP/scale"
	"$TMP/fill" -file "$TMP/scale/live.db" -n "$SCALE_N" -lookups "$LOOKUPS" -sample 1000 \
		-sample-out "$TMP/scale/live.txt" >"$TMP/scale/live.json"
	jq -c '. + {label: "scale/fill-live"}' "$TMP/scale/live.json" >>"$RES"
	if ((TA_SMTP_OK)); then
		say "scale: RCPT latency of tempalias over the $SCALE_N-alias store ($SMTP_C concurrent)"
		start_ta scale "$TMP/scale/live.db" "$SC_HTTP" "$SC_SMTP" 1h
		SCPID=$TA_PID
		measure scale/refuse "server=$SCPID" -mode smtp-refuse -addr "127.0.0.1:$SC_SMTP" -c "$SMTP_C"
		measure scale/relay "server=$SCPID,sink=$SINKPID" -mode smtp-relay -addr "127.0.0.1:$SC_SMTP" -c "$SMTP_C" \
			-rcpt-file "$TMP/scale/live.txt"
		stop_pid "$SCPID"
	fi
	rm -f "$TMP/scale/live.db"
fi

SWEEP_SECS="-" SWEPT="-" SWEEP_HWM=0 SWEEP_FROM=0 SWEEP_TO=0
if has sweep; then
	say "scale: $SCALE_N expired aliases, then the sweeper deletes them while RCPTs are timed"
	mkdir -p "$TMP/scale"
	# SWEEP_KEEP=DIR: keep the filled store there and copy it on the next run
	# instead of filling again (for repeated runs of this part alone).
	if [[ -n ${SWEEP_KEEP:-} && -f $SWEEP_KEEP/sweep-$SCALE_N.db ]]; then
		cp "$SWEEP_KEEP/sweep-$SCALE_N.db" "$TMP/scale/sweep.db"
		cp "$SWEEP_KEEP/sweep-$SCALE_N.txt" "$TMP/scale/sweep-live.txt"
		cp "$SWEEP_KEEP/sweep-$SCALE_N.json" "$TMP/scale/sweep.json"
	else
		"$TMP/fill" -file "$TMP/scale/sweep.db" -n "$SCALE_N" -expired -live 200 \
			-sample-out "$TMP/scale/sweep-live.txt" >"$TMP/scale/sweep.json"
		if [[ -n ${SWEEP_KEEP:-} ]]; then
			mkdir -p "$SWEEP_KEEP"
			cp "$TMP/scale/sweep.db" "$SWEEP_KEEP/sweep-$SCALE_N.db"
			cp "$TMP/scale/sweep-live.txt" "$SWEEP_KEEP/sweep-$SCALE_N.txt"
			cp "$TMP/scale/sweep.json" "$SWEEP_KEEP/sweep-$SCALE_N.json"
		fi
	fi
	jq -c '. + {label: "scale/fill-expired"}' "$TMP/scale/sweep.json" >>"$RES"
	if ((TA_SMTP_OK)); then
		# The first tick comes after SWEEP_INTERVAL: the probes' first seconds
		# are the no-sweep baseline on the same store and the same machine.
		SWEEP_INTERVAL=$([[ $QUICK == 1 ]] && echo 5 || echo 15)
		quiet
		start_ta sweep "$TMP/scale/sweep.db" "$SC_HTTP" "$SC_SMTP" "${SWEEP_INTERVAL}s"
		SWPID=$TA_PID
		# Both probes run from before the first sweep until the sweep is done.
		"$LG" -label sweep/refuse -rate "$SWEEP_RATE" -mode smtp-refuse -addr "127.0.0.1:$SC_SMTP" -c "$SWEEP_C" -d 600s \
			-stop-file "$TMP/sweep.log" -stop-pattern "swept dead aliases" -watch "server=$SWPID" >>"$RES" &
		lg1=$!
		PIDS+=("$lg1")
		"$LG" -label sweep/relay -rate "$SWEEP_RATE" -mode smtp-relay -addr "127.0.0.1:$SC_SMTP" -c "$SWEEP_C" -d 600s \
			-rcpt-file "$TMP/scale/sweep-live.txt" \
			-stop-file "$TMP/sweep.log" -stop-pattern "swept dead aliases" >>"$RES" &
		lg2=$!
		PIDS+=("$lg2")
		if wait_log "$TMP/sweep.log" "swept dead aliases" 600 "$SWPID"; then
			SWEPT=$(grep -m1 "swept dead aliases" "$TMP/sweep.log" | sed -n 's/.*count=\([0-9]*\).*/\1/p')
			# The sweep's window on the wall clock, from tempalias's own log:
			# the first tick (start + interval) to the "swept" line.
			logtime() { date -d "$(grep -m1 "$1" "$TMP/sweep.log" | sed -n 's/^time=\([^ ]*\).*/\1/p')" +%s.%N; }
			SWEEP_FROM=$(awk -v t="$(logtime "tempalias started")" -v i="$SWEEP_INTERVAL" 'BEGIN { printf "%.3f", t + i }')
			SWEEP_TO=$(logtime "swept dead aliases")
			SWEEP_SECS=$(awk -v a="$SWEEP_FROM" -v b="$SWEEP_TO" 'BEGIN { printf "%.1f", b - a }')
		else
			echo "warning: no 'swept dead aliases' line within 10 minutes"
		fi
		wait "$lg1" "$lg2" || true
		forget_pid "$lg1"
		forget_pid "$lg2"
		SWEEP_HWM=$(vm "$SWPID" VmHWM)
		echo "swept ${SWEPT} aliases in about ${SWEEP_SECS}s (from the first tick, ${SWEEP_INTERVAL}s after start, to the log line); tempalias VmHWM $((SWEEP_HWM / 1024)) MiB"
		stop_pid "$SWPID"
	fi
	rm -f "$TMP/scale/sweep.db"
fi

# --- etcd: two hosts on a 3-member cluster against bbolt -------------------

# The same workloads as the tempalias rows above (durable creations, RCPT
# refusals, 4 KiB relays of limited aliases), on a fresh bbolt host and on
# two hosts sharing one 3-member etcd cluster (Debian's etcd-server, the
# flags docs/deploy.md prescribes), alternating. Against "etcd" the load
# generator spreads its connections over both hosts (loadgen -addr a,b).
# CPU per operation counts every process that serves it: the host(s), the
# members, and the sink for relays.
if has etcd; then
	say "etcd: starting a 3-member cluster"
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

	say "etcd: starting tempalias on bbolt, and hosts A and B on the cluster"
	# start_ta_engine name http smtp engine: a host on bbolt or on the cluster;
	# sets TA_PID
	start_ta_engine() {
		local name=$1 http=$2 smtp=$3 engine=$4
		write_conf "$TMP/$name.toml" "$TMP/$name/tempalias.db" "$http" "$smtp" 1h
		mkdir -p "$TMP/$name"
		# One [store] and one [log] section: fold ours into the file's.
		awk -v engine="$engine" -v eps="$ENDPOINTS" '
			/^\[store\]$/ { print; print "engine = \"" engine "\""; next }
			{ print }
			END { print "[etcd]"; print "endpoints = [" eps "]"; print "prefix = \"/bench/\""; print "[log]"; print "level = \"warn\"" }' \
			"$TMP/$name.toml" >"$TMP/$name.toml.new"
		mv "$TMP/$name.toml.new" "$TMP/$name.toml"
		"$TMP/tempalias" -config "$TMP/$name.toml" 2>"$TMP/$name.log" &
		TA_PID=$!
		PIDS+=("$TA_PID")
		wait_port "$http" 60 || die "tempalias $name did not start: $(tail -3 "$TMP/$name.log")"
		wait_port "$smtp" 10 || die "tempalias $name has no SMTP listener"
	}
	start_ta_engine ebolt "${E_BOLT[0]}" "${E_BOLT[1]}" bolt
	EBOLT=$TA_PID
	start_ta_engine ea "${E_A[0]}" "${E_A[1]}" etcd
	EA=$TA_PID
	start_ta_engine eb "${E_B[0]}" "${E_B[1]}" etcd
	EB=$TA_PID
	ETCD_WATCH="etcd0=${EPIDS[0]},etcd1=${EPIDS[1]},etcd2=${EPIDS[2]}"
	declare -A E_HTTP=([bolt]="127.0.0.1:${E_BOLT[0]}" [etcd]="127.0.0.1:${E_A[0]},127.0.0.1:${E_B[0]}")
	declare -A E_SMTP=([bolt]="127.0.0.1:${E_BOLT[1]}" [etcd]="127.0.0.1:${E_A[1]},127.0.0.1:${E_B[1]}")
	declare -A E_W=([bolt]="ta=$EBOLT" [etcd]="ta_a=$EA,ta_b=$EB,$ETCD_WATCH")

	say "etcd: creating $ETCD_NALIAS aliases on each store"
	for peer in bolt etcd; do
		"$LG" -mode http-create -addr "${E_HTTP[$peer]}" -c 10 -n "$ETCD_NALIAS" -d 300s \
			-days 60 -max-usage 1000000 -target rcpt@example.net -out "$TMP/aliases-$peer.txt" -label "setup/etcd-$peer" >/dev/null
		[[ $(wc -l <"$TMP/aliases-$peer.txt") == "$ETCD_NALIAS" ]] ||
			die "created only $(wc -l <"$TMP/aliases-$peer.txt") aliases on $peer"
	done
	for w in create refuse relay; do
		case $w in
		create) say "etcd: durable creations, $HTTP_C concurrent" ;;
		refuse) say "etcd: RCPT refusals, $SMTP_C sessions" ;;
		relay) say "etcd: 4 KiB relays of limited aliases, $SMTP_C sessions" ;;
		esac
		peers=()
		for peer in bolt etcd; do
			case $w in
			create) peers+=("$peer|${E_W[$peer]}|-mode http-create -addr ${E_HTTP[$peer]} -c $HTTP_C -days 60 -max-usage 5 -target many@example.net") ;;
			refuse) peers+=("$peer|${E_W[$peer]}|-mode smtp-refuse -addr ${E_SMTP[$peer]} -c $SMTP_C") ;;
			relay) peers+=("$peer|${E_W[$peer]},sink=$SINKPID|-mode smtp-relay -addr ${E_SMTP[$peer]} -c $SMTP_C -rcpt-file $TMP/aliases-$peer.txt -size 4096") ;;
			esac
		done
		rounds "etcd-$w" "${peers[@]}"
	done
	for p in "$EBOLT" "$EA" "$EB" "${EPIDS[@]}"; do stop_pid "$p"; done
fi

# --- the table ------------------------------------------------------------

# crow workload tempalias-label ceiling-label cpu|tput target: a line of
# the ceilings table. cpu: the target is tempalias's CPU per operation at
# most target × the ceiling's; tput: its throughput at least target × the
# ceiling's. Like row, none for workloads this run did not measure.
crow() {
	local w=$1 a=$2 b=$3 kind=$4 target=$5
	local ta tb ca cb r m verdict
	ta=$(med "$a" .throughput)
	tb=$(med "$b" .throughput)
	if [[ $ta == - && $tb == - ]]; then return; fi
	ca=$(med "$a" .cpu.server_us_per_op)
	cb=$(med "$b" .cpu.server_us_per_op)
	r=$(ratio "$ta" "$tb")
	m=$(ratio "$ca" "$cb")
	if [[ $kind == cpu ]]; then
		verdict="CPU ≤ ${target}×: $(awk -v r="$m" -v t="$target" 'BEGIN { print (r != "-" && r <= t ? "met" : "**missed**") }')"
	else
		verdict="≥ $target of it: $(awk -v r="$r" -v t="$target" 'BEGIN { print (r != "-" && r >= t ? "met" : "**missed**") }')"
	fi
	printf '| %s | %s/s%s | %s/s%s | **%s** | %s / %s | **%s×** | %s |\n' \
		"$w" "$ta" "$(e "$a")" "$tb" "$(e "$b")" "$r" "$ca" "$cb" "$m" "$verdict"
}

say "results"
{
	if has smtp || has http; then
		table_head
		if has smtp; then
			if ((TA_SMTP_OK)); then
				smtp_rows
			else
				echo "| SMTP workloads | not measured: no SMTP listener in this build | | | | | | |"
				row "Postfix refusals alone, $SMTP_C sessions" refuse/postfix refuse/postfix ""
				row "Postfix 4 KiB relays alone, $SMTP_C" relay/postfix relay/sink ""
			fi
		fi
		if has http; then
			row "durable creations, $HTTP_C clients (loadgen)" create/tempalias create/hello 0.2
			row "durable creations, $HTTP_C clients (wrk)" create-wrk/tempalias create-wrk/hello 0.2
			if ((STATIC_OK)); then
				row "static $STATIC_PATHS, $HTTP_C clients (loadgen)" static/tempalias static/fileserver 0.8
				row "static /, $HTTP_C clients (wrk)" static-wrk/tempalias static-wrk/fileserver 0.8
			fi
		fi
		echo
		echo "tempalias peak RSS (VmHWM) after all of the SMTP and HTTP workloads above: $((TA_HWM / 1024)) MiB"
		echo
		echo "The same tempalias figures as a fraction of their ceilings (bench/ceiling, measured in the same rounds):"
		echo "a raw refuser, a minimal pipelined relay to the same sink, a bbolt group-commit writer. CPU: the"
		echo "server alone (for relays without the sink, which both feed)."
		echo
		echo "| workload | tempalias | ceiling | tempalias / ceiling | CPU µs/op tempalias / ceiling | CPU multiple | target (issue 14) |"
		echo "| --- | --- | --- | --- | --- | --- | --- |"
		if has smtp && ((TA_SMTP_OK)); then
			crow "RCPT refusals, $SMTP_C sessions (raw refuser)" refuse/tempalias refuse/ceiling cpu 1.5
			crow "RCPT refusals, pipelined (raw refuser)" refuse-pipe/tempalias refuse-pipe/ceiling cpu 1.5
			if [[ -n $BASE ]]; then
				crow "$TA_BASE RCPT refusals, $SMTP_C sessions (raw refuser)" refuse/base refuse/ceiling cpu 1.5
				crow "$TA_BASE RCPT refusals, pipelined (raw refuser)" refuse-pipe/base refuse-pipe/ceiling cpu 1.5
			fi
			crow "4 KiB relays, reused connections (minimal relay)" relay/tempalias relay/ceiling cpu 2
			crow "4 KiB relays, pipelined (minimal relay)" relay-pipe/tempalias relay-pipe/ceiling cpu 2
			crow "4 KiB relays, session per message (minimal relay)" relay1/tempalias relay1/ceiling cpu 2
		fi
		if has http; then
			crow "durable creations, loadgen (bbolt group commit)" create/tempalias create/ceiling tput 0.5
			crow "durable creations, wrk (bbolt group commit)" create-wrk/tempalias create-wrk/ceiling tput 0.5
		fi
	fi
	if has big && ((TA_SMTP_OK)); then
		verdict=$(awk -v g="$BIG_HEAP_GROWTH" 'BEGIN { print (g < 16 ? "met" : "**missed**") }')
		echo
		echo "One $BIG_MIB MiB message: $(med big/tempalias .p50_ms) ms through tempalias" \
			"(straight to smtp-sink: $(med big/sink .p50_ms) ms);"
		echo "tempalias VmHWM $((BIG_BEFORE / 1024)) → $((BIG_AFTER / 1024)) MiB (+$(((BIG_AFTER - BIG_BEFORE) / 1024)) MiB);"
		echo "$BIG_HEAP_TEXT; target < 16 MiB heap growth: $verdict"
	fi
	if has scale; then
		echo
		jq -r -s '.[] | select(.label == "scale/fill-live") |
			"Scale, \(.aliases) live aliases: file \((.file_bytes / 1048576 * 10 | floor) / 10) MiB (\(.bytes_per_alias) bytes/alias), written at \(.fill_per_s)/s;\n" +
			"store.Get in process (\(.lookups) each): existing p50 \(.get_hit_p50_us) µs, p99 \(.get_hit_p99_us) µs, max \(.get_hit_max_us) µs; " +
			"unknown p50 \(.get_miss_p50_us) µs, p99 \(.get_miss_p99_us) µs, max \(.get_miss_max_us) µs; target p99 < 1 ms: " +
			(if .get_hit_p99_us < 1000 and .get_miss_p99_us < 1000 then "met" else "**missed**" end)' "$RES"
		if ((TA_SMTP_OK)); then
			echo "RCPT over SMTP on that store ($SMTP_C sessions): refusals $(med scale/refuse .throughput)/s," \
				"RCPT p50 $(med scale/refuse .rcpt_p50_ms) ms, p99 $(med scale/refuse .rcpt_p99_ms) ms;" \
				"relays $(med scale/relay .throughput)/s, RCPT (a reservation: a durable write) p50 $(med scale/relay .rcpt_p50_ms) ms, p99 $(med scale/relay .rcpt_p99_ms) ms"
		fi
	fi
	if has sweep && ((TA_SMTP_OK)); then
		echo
		echo "Sweep of ${SWEPT} expired aliases (of $SCALE_N, in batches of store.sweep_batch) took about ${SWEEP_SECS} s;" \
			"tempalias VmHWM $((SWEEP_HWM / 1024)) MiB. RCPT latency meanwhile ($SWEEP_C sessions each, $( ((SWEEP_RATE > 0)) && echo "paced at $SWEEP_RATE RCPTs a second each" || echo "as fast as they go"), from before the sweep to its end):"
		for k in refuse relay; do
			jq -r -s --arg l "sweep/$k" --argjson a "$SWEEP_FROM" --argjson b "$SWEEP_TO" '.[] | select(.label == $l) | . as $r |
				[range(0; .rcpt_max_by_sec | length) | {s: ($r.start_unix + .), v: $r.rcpt_max_by_sec[.], n: ((($r.rcpt_slow_by_sec // [])[.]) // 0)}] as $tl |
				([$tl[] | select(.s + 1 > $a and .s < $b) | .v] | max // 0) as $in |
				([$tl[] | select(.s + 1 > $a and .s < $b) | .n] | add // 0) as $nin |
				([$tl[] | select(.s + 1 <= $a or .s >= $b) | .v] | max // 0) as $out |
				"  \($l): \(.count) ops in \(.seconds) s, \(.errors) errors; RCPT p50 \(.rcpt_p50_ms) ms, p99 \(.rcpt_p99_ms) ms; " +
				"slowest RCPT in the seconds overlapping the sweep \($in) ms, in the other seconds \($out) ms; " +
				"\($nin) RCPTs over \(.slow_ms) ms in the seconds overlapping the sweep, \(.rcpt_slow) in all; " +
				"target no RCPT stall over 50 ms during the sweep: " + (if $in <= 50 then "met" else "**missed**" end)' "$RES"
		done
	fi
	if has etcd; then
		echo
		echo "etcd engine: two hosts on one 3-member cluster against one host on bbolt, alternating, same run"
		echo "(CPU µs/op: every process serving the operation, hosts and members, the sink for relays)."
		echo
		echo "| workload | bbolt /s | etcd (2 hosts) /s | etcd / bbolt | target (issue 13) | CPU µs/op bbolt | CPU µs/op etcd | errors bbolt / etcd |"
		echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
		for w in create refuse relay; do
			t=0.25
			if [[ $w == refuse ]]; then t=0.5; fi
			jq -s -r --arg w "etcd-$w" --argjson t "$t" '
				def med: sort | if length == 0 then 0 else .[(length - 1) / 2 | floor] end;
				def cpu: [.cpu | to_entries[] | select((.key | endswith("_us_per_op")) and .key != "client_us_per_op") | .value] | add // 0;
				def rows(p): map(select(.label == ($w + "/" + p)));
				(rows("bolt") | map(.throughput) | med) as $b |
				(rows("etcd") | map(.throughput) | med) as $e |
				(rows("bolt") | map(cpu) | med) as $cb |
				(rows("etcd") | map(cpu) | med) as $ce |
				(rows("bolt") | map(.errors) | add) as $xb |
				(rows("etcd") | map(.errors) | add) as $xe |
				(if $b > 0 then ($e / $b * 100 | round / 100) else 0 end) as $r |
				"| \($w | ltrimstr("etcd-")) | \($b | round) | \($e | round) | **\($r)** | ≥ \($t): \(if $r >= $t then "met" else "**missed**" end) | \($cb | round) | \($ce | round) | \($xb) / \($xe) |"' "$RES"
		done
		echo
		echo "$(etcd --version | head -1), ETCD_NALIAS=$ETCD_NALIAS"
	fi
	echo
	echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$SUMMARY"
echo
echo "raw results: $RES; this table: $SUMMARY"
exit
}
