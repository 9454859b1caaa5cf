#!/usr/bin/env bash
# wrk.sh measures the example server under load with wrk: GET /v1/models
# with a valid API key, for each store behind the verification cache,
# and prints one markdown table of requests/s and latency percentiles.
#
#   examples/server/bench/wrk.sh            (from any directory)
#
# Stores: -memory, -db (SQLite, a new file) and, when KEYGATE_POSTGRES_DSN
# is set, -postgres (in a new schema, dropped at exit; needs psql). Every
# run starts a fresh server, so the first request of the key misses the
# cache and every later one hits it: the numbers are those of the cached
# request path (plus the server's one access-log line per request,
# written to a file). Needs wrk (Debian/Ubuntu: apt-get install wrk).
#
# Environment:
#   WRK_ARGS              wrk's load options (default "-t2 -c32 -d10s")
#   KEYGATE_POSTGRES_DSN  PostgreSQL to measure too (a URL or key=value DSN)
#   WRK_KEY_LIMIT         the server's -rate-limit-keys (default 1000000, the most:
#                         limits on, never reached)
#
# wrk and the server share the machine: on a 2-core box they compete for
# the CPU, and anything else running skews the numbers. The table's
# footnote gives the machine's core count and load average.
set -euo pipefail

root=$(cd "$(dirname "$0")/../../.." && pwd)
wrk_args=${WRK_ARGS:-"-t2 -c32 -d10s"}
# Rate limits stay on, as they are by default, but the key's budget is far
# above what wrk can send, so that every request is answered 200 and the
# limiter's cost is in the numbers.
key_limit=${WRK_KEY_LIMIT:-1000000}

command -v wrk >/dev/null || { echo "wrk.sh: wrk not found (apt-get install wrk)" >&2; exit 1; }

tmp=$(mktemp -d)
pid=""
schema=""
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	if [ -n "$schema" ]; then psql -q "$KEYGATE_POSTGRES_DSN" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT

echo "building the server…" >&2
(cd "$root" && go build -o "$tmp/server" ./examples/server)

rows=()
load=$(uptime | sed 's/.*load averages*: //')

# measure NAME SERVER-FLAGS…: starts the server with the flags, reads its
# bootstrap key and address, runs wrk against it, stops it and adds a row.
measure() {
	local name=$1
	shift
	local out="$tmp/$name.out" err="$tmp/$name.err" res="$tmp/$name.wrk"
	(cd "$tmp" && exec env KEYGATE_PEPPER= "$tmp/server" -addr 127.0.0.1:0 -rate-limit-keys "$key_limit" "$@") >"$out" 2>"$err" &
	pid=$!
	local addr=""
	for _ in $(seq 1 300); do
		addr=$(sed -n 's|^listening on http://\(.*\)$|\1|p' "$err" | head -n 1)
		[ -n "$addr" ] && break
		kill -0 "$pid" 2>/dev/null || { echo "wrk.sh: the $name server exited:" >&2; cat "$err" >&2; exit 1; }
		sleep 0.1
	done
	[ -n "$addr" ] || { echo "wrk.sh: the $name server did not start" >&2; cat "$err" >&2; exit 1; }
	local key
	key=$(sed -n 's/^API key: //p' "$out")
	[ -n "$key" ] || { echo "wrk.sh: the $name server printed no key" >&2; exit 1; }
	local status
	status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $key" "http://$addr/v1/models" 2>/dev/null || echo "?")
	[ "$status" = 200 ] || { echo "wrk.sh: GET /v1/models on the $name server = $status, want 200" >&2; exit 1; }

	echo "wrk $wrk_args --latency against the $name server…" >&2
	# shellcheck disable=SC2086 # wrk_args is a list of options
	wrk $wrk_args --latency -H "Authorization: Bearer $key" "http://$addr/v1/models" >"$res"
	kill -TERM "$pid"
	wait "$pid" || true
	pid=""

	if grep -q 'Non-2xx or 3xx responses' "$res"; then
		echo "wrk.sh: the $name server answered errors under load:" >&2
		cat "$res" >&2
		exit 1
	fi
	local rps p50 p90 p99
	rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$res")
	p50=$(awk '$1 == "50%" {print $2}' "$res")
	p90=$(awk '$1 == "90%" {print $2}' "$res")
	p99=$(awk '$1 == "99%" {print $2}' "$res")
	rows+=("| $name | $rps | $p50 | $p90 | $p99 |")
}

measure "memory (-memory)" -memory
measure "SQLite (-db)" -db "$tmp/keygate.db"
if [ -n "${KEYGATE_POSTGRES_DSN:-}" ]; then
	command -v psql >/dev/null || { echo "wrk.sh: KEYGATE_POSTGRES_DSN is set but psql is not installed" >&2; exit 1; }
	schema="kg_wrk_$$_$RANDOM"
	psql -q -v ON_ERROR_STOP=1 "$KEYGATE_POSTGRES_DSN" -c "CREATE SCHEMA $schema" >/dev/null
	case $KEYGATE_POSTGRES_DSN in
	postgres://* | postgresql://*)
		case $KEYGATE_POSTGRES_DSN in
		*\?*) dsn="$KEYGATE_POSTGRES_DSN&search_path=$schema" ;;
		*) dsn="$KEYGATE_POSTGRES_DSN?search_path=$schema" ;;
		esac
		;;
	*) dsn="$KEYGATE_POSTGRES_DSN search_path=$schema" ;;
	esac
	measure "PostgreSQL (-postgres)" -postgres "$dsn"
else
	echo "wrk.sh: KEYGATE_POSTGRES_DSN is not set: no PostgreSQL row" >&2
fi

echo
echo "| store, behind the cache | requests/s | p50 | p90 | p99 |"
echo "| --- | ---: | ---: | ---: | ---: |"
printf '%s\n' "${rows[@]}"
echo
echo "GET /v1/models with an API key; wrk $wrk_args; $(nproc) cores shared by wrk and the server; load average before the runs: $load; $(go version | awk '{print $3}')."
