#!/usr/bin/env bash
# bench-http.sh: the HTTP placement benchmark (make bench-http). Builds
# kelpied and the load driver (internal/loadgen), starts 3 voter kelpied
# processes on 127.0.0.21-23 with raft-wal data dirs (fsync on), waits until
# all are ready, runs the driver as a separate process, then stops the nodes
# by PID and removes their data. Records go to $KELPIE_BENCH_OUT (benchrec).
#
# Environment:
#   INFLIGHT  concurrencies (default 1,16,64,256,1024)
#   WINDOW    measured time per concurrency (default 5s)
#   TARGET    leader | all (default leader)
#   PROFILE   1 (default): also take a 4 s CPU profile of the leader while
#             PROFILE_INFLIGHT (default 256) requests are in flight, and
#             print its top entries (kelpied runs with --enable-debug)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
IPS=(127.0.0.21 127.0.0.22 127.0.0.23)
NAMES=(hb1 hb2 hb3)
HTTP_PORT=7500
GOSSIP_PORT=7501

mkdir -p "$ROOT/tmp"
RUN_DIR=$(mktemp -d "$ROOT/tmp/bench-http.XXXXXX")
PIDS=()

# stop_node: SIGTERM (graceful leave), up to 15 s, then SIGKILL; reaps it.
stop_node() {
	kill -TERM "$1" 2>/dev/null || true
	for _ in $(seq 150); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

cleanup() {
	for pid in "${PIDS[@]}"; do stop_node "$pid"; done
	rm -rf "$RUN_DIR"
	rmdir "$ROOT/tmp" 2>/dev/null || true
}
trap cleanup EXIT

go build -o "$RUN_DIR/kelpied" ./cmd/kelpied
go build -o "$RUN_DIR/loadgen" ./internal/loadgen

addrs=()
for i in "${!IPS[@]}"; do
	ip=${IPS[$i]}
	joins=()
	for j in "${!IPS[@]}"; do
		[[ $j != "$i" ]] && joins+=(--join "${IPS[$j]}:$GOSSIP_PORT")
	done
	"$RUN_DIR/kelpied" --node-id "${NAMES[$i]}" --bind "$ip" --server --bootstrap-expect 3 \
		--data-dir "$RUN_DIR/${NAMES[$i]}" --log-level warn --enable-debug "${joins[@]}" \
		>"$RUN_DIR/${NAMES[$i]}.log" 2>&1 &
	PIDS+=($!)
	addrs+=("$ip:$HTTP_PORT")
done

deadline=$((SECONDS + 60))
for ip in "${IPS[@]}"; do
	until curl -fsS "http://$ip:$HTTP_PORT/v1/health/ready" >/dev/null 2>&1; do
		if ((SECONDS > deadline)); then
			echo "bench-http: $ip not ready within 60s; logs:" >&2
			tail -n 20 "$RUN_DIR"/*.log >&2
			exit 1
		fi
		sleep 0.2
	done
done

"$RUN_DIR/loadgen" -addrs "$(IFS=,; echo "${addrs[*]}")" \
	-inflight "${INFLIGHT:-1,16,64,256,1024}" -window "${WINDOW:-5s}" -target "${TARGET:-leader}"

# Where an HTTP placement's time goes: the leader's CPU profile under load.
if [[ "${PROFILE:-1}" == 1 ]]; then
	leader=$(curl -fsS "http://${IPS[0]}:$HTTP_PORT/v1/leader" | tr -d " \n" | sed -n 's/.*"http_addr":"\([^"]*\)".*/\1/p')
	if [[ -n "$leader" ]]; then
		KELPIE_BENCH_OUT= "$RUN_DIR/loadgen" -addrs "$(IFS=,; echo "${addrs[*]}")" \
			-inflight "${PROFILE_INFLIGHT:-256}" -window 6s -target leader -prefix "prof$RANDOM" >/dev/null &
		driver=$!
		sleep 2
		curl -fsS -o "$RUN_DIR/leader.pprof" "http://$leader/debug/pprof/profile?seconds=4"
		wait "$driver"
		echo "bench-http: leader ($leader) CPU profile at ${PROFILE_INFLIGHT:-256} in flight, top entries:"
		go tool pprof -top -cum -nodecount=30 "$RUN_DIR/kelpied" "$RUN_DIR/leader.pprof" 2>/dev/null | sed -n '5,38p'
	fi
fi
