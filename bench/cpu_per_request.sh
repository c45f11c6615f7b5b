#!/bin/bash
# Server CPU per request for device authorizations and pending polls, for comparing two builds
# on this machine (issue 15's before/after): starts BINARY on a fresh data directory at PORT,
# runs wrk -t1 -c32 for 5 s on each endpoint and divides the server's CPU ticks (/proc/PID/stat)
# by the requests. Run two binaries alternately, a few times each; throughput alone is too noisy
# on a shared 2-core VM. Needs wrk, curl, python3 and bench/da.lua beside this script.
#
#   bash bench/cpu_per_request.sh /tmp/latchkey-before 18081
#   bash bench/cpu_per_request.sh target/release/latchkey 18082
BIN=$1; PORT=$2; D=/tmp/ab-$PORT; rm -rf $D; mkdir -p $D
export LATCHKEY_LIMITS__TOKEN_PER_IP_PER_MINUTE=100000000 LATCHKEY_DEVICE__CREATE_PER_IP_PER_MINUTE=100000000 LATCHKEY_DEVICE__CREATE_PER_CLIENT_PER_MINUTE=100000000 LATCHKEY_DEVICE__PENDING_PER_IP=0 LATCHKEY_DEVICE__PENDING_TOTAL=0 LATCHKEY_DEVICE__INTERVAL_SECS=1 LATCHKEY_DEVICE__MAX_SLOW_DOWNS=1000000000
$BIN --data-dir $D serve --listen 127.0.0.1:$PORT >$D/log 2>&1 &
PID=$!
sleep 2
DC=$(curl -s -XPOST -d client_id=latchkey-cli http://127.0.0.1:$PORT/oauth/device_authorization | python3 -c "import json,sys;print(json.load(sys.stdin)['device_code'])")
cat > $D/poll.lua <<EOL
wrk.method = "POST"
wrk.body = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&client_id=latchkey-cli&device_code=$DC"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
EOL
wrk -t1 -c32 -d1s -s $(dirname "$0")/da.lua http://127.0.0.1:$PORT/oauth/device_authorization >/dev/null
cpu() { awk '{print $14+$15}' /proc/$PID/stat; }
C0=$(cpu); DA=$(wrk -t1 -c32 -d5s -s $(dirname "$0")/da.lua http://127.0.0.1:$PORT/oauth/device_authorization | awk '/requests in/ {print $1}'); C1=$(cpu)
PO=$(wrk -t1 -c32 -d5s -s $D/poll.lua http://127.0.0.1:$PORT/oauth/token | awk '/requests in/ {print $1}'); C2=$(cpu)
DA="$DA reqs $(python3 -c "print(round(($C1-$C0)*10000/$DA,1))")us/req"
PO="$PO reqs $(python3 -c "print(round(($C2-$C1)*10000/$PO,1))")us/req"
ST=$(curl -s -XPOST -d "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&client_id=latchkey-cli&device_code=$DC" http://127.0.0.1:$PORT/oauth/token)
echo "$(basename $BIN) device_auth=$DA polls=$PO last=$ST loglines=$(wc -l < $D/log)"
kill $PID; wait $PID 2>/dev/null
