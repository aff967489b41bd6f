#!/usr/bin/env bash
# run-local.sh: build kelpied and kelpiectl, then run a 3-server cluster in the
# foreground on 127.0.0.11-13 (default ports on each IP). Ctrl-C stops the
# nodes gracefully (a second Ctrl-C forces them) and removes their data.
#
# Used by `make run`. Environment:
#   VERSION   version stamped into the binaries (default: git describe, or dev)
#   LOG_LEVEL kelpied --log-level (default info)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

VERSION=${VERSION:-$(git describe --always --dirty 2>/dev/null || echo dev)}
LOG_LEVEL=${LOG_LEVEL:-info}
IPS=(127.0.0.11 127.0.0.12 127.0.0.13)
NAMES=(s1 s2 s3)
HTTP_PORT=7500
GOSSIP_PORT=7501

echo "building bin/kelpied and bin/kelpiectl (version $VERSION)"
go build -ldflags "-X main.version=$VERSION" -o bin/kelpied ./cmd/kelpied
go build -ldflags "-X main.version=$VERSION" -o bin/kelpiectl ./cmd/kelpiectl

mkdir -p "$ROOT/tmp"
RUN_DIR=$(mktemp -d "$ROOT/tmp/run.XXXXXX")

PIDS=()
stopping=0
failed=0

cleanup() {
	local pid
	# Anything still running at this point (the script failed) is killed.
	for pid in "${PIDS[@]}"; do
		kill -KILL "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$RUN_DIR"
	rmdir "$ROOT/tmp" 2>/dev/null || true
}
trap cleanup EXIT

on_signal() {
	local pid
	if ((stopping)); then
		echo "run-local: second signal: forcing the nodes to close"
	else
		stopping=1
		echo "run-local: stopping the nodes (graceful leave; Ctrl-C again to force)"
	fi
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
}
trap on_signal INT TERM

alive() { kill -0 "$1" 2>/dev/null; }

# prefix writes its input with "[name] " in front of every line. It ignores
# SIGINT so that a Ctrl-C does not cut off the nodes' shutdown logs.
prefix() {
	trap '' INT
	exec sed -u "s/^/[$1] /"
}

for i in "${!IPS[@]}"; do
	name=${NAMES[$i]}
	ip=${IPS[$i]}
	joins=()
	for j in "${!IPS[@]}"; do
		if [[ $j != "$i" ]]; then
			joins+=(--join "${IPS[$j]}:$GOSSIP_PORT")
		fi
	done
	# setsid: the node gets its own session, so the terminal's Ctrl-C reaches
	# only this script, which then stops each node by PID exactly once.
	setsid bin/kelpied --node-id "$name" --bind "$ip" --server --bootstrap-expect 3 \
		--data-dir "$RUN_DIR/$name" --log-level "$LOG_LEVEL" "${joins[@]}" \
		> >(prefix "$name") 2>&1 &
	PIDS+=($!)
done

cat <<EOF

kelpie-cluster: 3 servers running (data in $RUN_DIR)
  s1  HTTP http://${IPS[0]}:$HTTP_PORT   gossip ${IPS[0]}:$GOSSIP_PORT
  s2  HTTP http://${IPS[1]}:$HTTP_PORT   gossip ${IPS[1]}:$GOSSIP_PORT
  s3  HTTP http://${IPS[2]}:$HTTP_PORT   gossip ${IPS[2]}:$GOSSIP_PORT

Try:
  bin/kelpiectl --addr http://${IPS[0]}:$HTTP_PORT members
  bin/kelpiectl --addr http://${IPS[1]}:$HTTP_PORT view --watch

Prometheus scrape targets:
  http://${IPS[0]}:$HTTP_PORT/metrics
  http://${IPS[1]}:$HTTP_PORT/metrics
  http://${IPS[2]}:$HTTP_PORT/metrics

Ctrl-C stops all nodes.

EOF

# Report when the cluster is ready (every node Active and a leader known).
ready_reported=0
deadline=$((SECONDS + 60))

while :; do
	running=0
	for i in "${!PIDS[@]}"; do
		pid=${PIDS[$i]}
		[[ -z $pid ]] && continue
		if alive "$pid"; then
			running=1
		else
			rc=0
			wait "$pid" || rc=$?
			PIDS[i]=""
			if ((!stopping)); then
				echo "run-local: node ${NAMES[$i]} (pid $pid) exited with status $rc"
				if ((!ready_reported)); then
					echo "run-local: a node failed during start-up; stopping the others" >&2
					failed=1
					on_signal
				fi
			fi
		fi
	done
	((running)) || break

	if ((!ready_reported && !stopping)); then
		n=0
		for ip in "${IPS[@]}"; do
			if bin/kelpiectl --addr "http://$ip:$HTTP_PORT" --timeout 1s --format json status 2>/dev/null |
				grep -q '"ready": true'; then
				n=$((n + 1))
			fi
		done
		if ((n == ${#IPS[@]})); then
			ready_reported=1
			echo "run-local: cluster ready: all ${#IPS[@]} servers Active in the committed view"
		elif ((SECONDS > deadline)); then
			ready_reported=1
			echo "run-local: cluster not ready after 60s ($n of ${#IPS[@]} servers ready); see the logs above" >&2
		fi
	fi

	# A signal interrupts this wait at once.
	sleep 0.5 &
	wait $! 2>/dev/null || true
done

PIDS=()
echo "run-local: all nodes stopped"
exit "$failed"
