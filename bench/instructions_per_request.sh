#!/bin/bash
# Instructions the server executes per request (valgrind's callgrind), for comparing two builds
# where CPU time is too noisy: this VM has no hardware counters, and its CPU time per request
# varies by ±15% between repeats, while callgrind's instruction counts repeat to within about 1%.
# Starts BINARY under callgrind on a fresh data directory at PORT, warms up, zeroes the counters,
# runs wrk -t1 -c2 for 10 s on POST /oauth/device_authorization and then on one pending poll,
# dumping the counters after each, and prints user-space instructions per request. Kernel time
# (syscalls) is not in these counts. The dumps stay in /tmp/ir-PORT/ for callgrind_annotate:
#
#   bash bench/instructions_per_request.sh /tmp/latchkey-before 18081
#   bash bench/instructions_per_request.sh target/release/latchkey 18082
#   callgrind_annotate /tmp/ir-18082/cg.out.da | head -60
#
# Needs valgrind, wrk, curl and python3, and bench/da.lua beside this script.
set -e
BIN=$1; PORT=$2; D=/tmp/ir-$PORT; rm -rf $D; mkdir -p $D
export LATCHKEY_LIMITS__TOKEN_PER_IP_PER_MINUTE=100000000 LATCHKEY_DEVICE__CREATE_PER_IP_PER_MINUTE=100000000 LATCHKEY_DEVICE__CREATE_PER_CLIENT_PER_MINUTE=100000000 LATCHKEY_DEVICE__PENDING_PER_IP=0 LATCHKEY_DEVICE__PENDING_TOTAL=0 LATCHKEY_DEVICE__INTERVAL_SECS=1 LATCHKEY_DEVICE__MAX_SLOW_DOWNS=1000000000
valgrind --tool=callgrind --callgrind-out-file=$D/cg.out.%p --dump-instr=no "$BIN" --data-dir $D serve --listen 127.0.0.1:$PORT >$D/log 2>&1 &
PID=$!
URL=http://127.0.0.1:$PORT
for _ in $(seq 120); do curl -sf $URL/healthz >/dev/null && break; sleep 1; done
DC=$(curl -s -XPOST -d client_id=latchkey-cli $URL/oauth/device_authorization | python3 -c "import json,sys;print(json.load(sys.stdin)['device_code'])")
cat > $D/poll.lua <<EOL
wrk.method = "POST"
wrk.body = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&client_id=latchkey-cli&device_code=$DC"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
EOL
S=$(dirname "$0")
# Warm-up: caches, prepared statements, the first pages of the tables.
wrk -t1 -c2 -d5s -s $S/da.lua $URL/oauth/device_authorization >/dev/null
wrk -t1 -c2 -d3s -s $D/poll.lua $URL/oauth/token >/dev/null
# Ir of all threads together (one dump file, threads not separated), from its summary line.
ir() { callgrind_control -d "$1" $PID >/dev/null; sleep 1; f=$(ls -t $D/cg.out.$PID.* | head -1); awk '/^summary:/ {s=$2} /^totals:/ {t=$2} END {print (s ? s : t)}' $f; }
callgrind_control -z $PID >/dev/null
N=$(wrk -t1 -c2 -d10s -s $S/da.lua $URL/oauth/device_authorization | awk '/requests in/ {print $1}')
IR=$(ir da)
callgrind_control -z $PID >/dev/null
M=$(wrk -t1 -c2 -d10s -s $D/poll.lua $URL/oauth/token | awk '/requests in/ {print $1}')
IP=$(ir poll)
echo "$(basename $BIN) device_auth: $N reqs, $((IR / N)) instructions/req; polls: $M reqs, $((IP / M)) instructions/req"
kill $PID; wait $PID 2>/dev/null || true
