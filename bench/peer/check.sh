#!/usr/bin/env bash
# Correctness gate for the authorization-code additions to server.mjs.
#
#   bash bench/peer/check.sh        # from the project root (or from anywhere)
#
# Starts server.mjs with STORE=map on a free 127.0.0.1 port, then for each of
# bench-rs (RS256) and bench-ed (EdDSA):
#   - mints 3 codes with POST /bench/codes?client=C&n=3
#   - exchanges each at POST /token (authorization_code + PKCE): 200 with
#     access_token, id_token, refresh_token; id_token header alg/kid as expected,
#     signature verified against /jwks, iss/aud/sub/nonce checked (no
#     auth_time: the provider adds it only if asked via max_age,
#     require_auth_time or prompt=login)
#   - GET /me with the first access token: 200 with sub=alice and email
#   - refresh_token grant with the first refresh token: 200
#   - second use of the first code: 400 invalid_grant, after which the grant is
#     revoked (the first access token is refused at /me with 401)
# plus the mint route's refusals (bad n, unknown client, non-loopback source,
# GET). Stops the server it started (by PID) on exit. Exit 0 only if all held.
set -euo pipefail

cd "$(dirname "$0")"

VERIFIER='bench-verifier-0123456789-0123456789-0123456789'
REDIRECT_URI_ENC='https%3A%2F%2Frp.example%2Fcb'

command -v curl >/dev/null || { echo "curl is missing" >&2; exit 1; }
if [ ! -d node_modules/oidc-provider ]; then
  echo "# installing node modules (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi

PORT=${PORT:-$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')}
BASE="http://127.0.0.1:${PORT}"
LOG_DIR=$(mktemp -d)
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$LOG_DIR"
}
trap cleanup EXIT

FAILS=0
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; FAILS=$((FAILS + 1)); }

# json FIELD < body   -> prints the field ('' if absent)
json() { node -e 'let d="";process.stdin.on("data",c=>d+=c).on("end",()=>{let v;try{v=JSON.parse(d)[process.argv[1]]}catch{};process.stdout.write(v===undefined?"":String(v))})' "$1"; }

# http METHOD URL [curl args...]  -> sets STATUS and BODY
http() {
  local method=$1 url=$2; shift 2
  local out
  out=$(curl -s -S -X "$method" -w '\n%{http_code}' "$@" "$url")
  STATUS=${out##*$'\n'}
  BODY=${out%$'\n'*}
}

PORT=$PORT STORE=map node server.mjs >"$LOG_DIR/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
  grep -q ' ready$' "$LOG_DIR/server.log" && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$LOG_DIR/server.log" >&2; exit 1; }
  sleep 0.1
done
READY=$(grep ' ready$' "$LOG_DIR/server.log" || true)
[ -n "$READY" ] || { echo "server did not start" >&2; cat "$LOG_DIR/server.log" >&2; exit 1; }
echo "# $READY"

http GET "$BASE/.well-known/openid-configuration"
USERINFO=$(json userinfo_endpoint <<<"$BODY")
TOKEN_EP=$(json token_endpoint <<<"$BODY")
[ "$USERINFO" = "$BASE/me" ] && [ "$TOKEN_EP" = "$BASE/token" ] \
  && ok "discovery: token_endpoint=$TOKEN_EP userinfo_endpoint=$USERINFO" \
  || fail "discovery: token_endpoint=$TOKEN_EP userinfo_endpoint=$USERINFO"
http GET "$BASE/jwks"
JWKS=$BODY

# verify_id_token ID_TOKEN CLIENT ALG KID -> prints a summary, exit 1 on mismatch
verify_id_token() {
  JWKS="$JWKS" ISSUER="$BASE" node --input-type=module -e '
    import * as jose from "jose";
    const [token, client, alg, kid] = process.argv.slice(1);
    const header = jose.decodeProtectedHeader(token);
    if (header.alg !== alg || header.kid !== kid) {
      console.log(`header ${JSON.stringify(header)}, expected alg=${alg} kid=${kid}`); process.exit(1);
    }
    const keys = jose.createLocalJWKSet(JSON.parse(process.env.JWKS));
    const { payload } = await jose.jwtVerify(token, keys, {
      issuer: process.env.ISSUER, audience: client, algorithms: [alg],
    });
    if (payload.sub !== "alice" || payload.nonce !== "bench-nonce") {
      console.log(`claims ${JSON.stringify(payload)}`); process.exit(1);
    }
    console.log(`header alg=${header.alg} kid=${header.kid}, signature ok, sub=${payload.sub} aud=${payload.aud} nonce=${payload.nonce}`);
  ' "$@"
}

exchange() { # CODE CLIENT -> STATUS, BODY
  http POST "$BASE/token" -H 'content-type: application/x-www-form-urlencoded' \
    --data "grant_type=authorization_code&code=$1&redirect_uri=$REDIRECT_URI_ENC&client_id=$2&code_verifier=$VERIFIER"
}

for pair in bench-rs:RS256:bench-rs256 bench-ed:EdDSA:bench-eddsa; do
  IFS=: read -r CLIENT ALG KID <<<"$pair"
  echo "# client $CLIENT (expect id_token $ALG)"

  http POST "$BASE/bench/codes?client=$CLIENT&n=3"
  mapfile -t CODES <<<"${BODY%$'\n'}"  # body ends with a newline
  if [ "$STATUS" = 200 ] && [ "${#CODES[@]}" = 3 ] && [ -n "${CODES[2]}" ]; then
    ok "mint: POST /bench/codes?client=$CLIENT&n=3 -> 200, 3 codes (${#CODES[0]} chars each)"
  else
    fail "mint: $STATUS $BODY"; continue
  fi

  AT1= RT1=
  for i in 0 1 2; do
    exchange "${CODES[$i]}" "$CLIENT"
    AT=$(json access_token <<<"$BODY"); IDT=$(json id_token <<<"$BODY")
    RT=$(json refresh_token <<<"$BODY"); TT=$(json token_type <<<"$BODY")
    if [ "$STATUS" = 200 ] && [ -n "$AT" ] && [ -n "$IDT" ] && [ -n "$RT" ] && [ "$TT" = Bearer ]; then
      if SUMMARY=$(verify_id_token "$IDT" "$CLIENT" "$ALG" "$KID" 2>&1); then
        ok "token #$((i + 1)): 200 access_token refresh_token id_token ($SUMMARY) scope=\"$(json scope <<<"$BODY")\""
      else
        fail "token #$((i + 1)): id_token: $SUMMARY"
      fi
    else
      fail "token #$((i + 1)): $STATUS $BODY"
    fi
    [ "$i" = 0 ] && { AT1=$AT; RT1=$RT; }
  done

  http GET "$BASE/me" -H "authorization: Bearer $AT1"
  if [ "$STATUS" = 200 ] && [ "$(json sub <<<"$BODY")" = alice ] && [ "$(json email <<<"$BODY")" = alice@example.com ]; then
    ok "userinfo: GET /me -> 200 $BODY"
  else
    fail "userinfo: $STATUS $BODY"
  fi

  http POST "$BASE/token" -H 'content-type: application/x-www-form-urlencoded' \
    --data "grant_type=refresh_token&refresh_token=$RT1&client_id=$CLIENT"
  [ "$STATUS" = 200 ] && [ -n "$(json access_token <<<"$BODY")" ] \
    && ok "refresh: 200 new access_token" || fail "refresh: $STATUS $BODY"

  exchange "${CODES[0]}" "$CLIENT"
  if [ "$STATUS" = 400 ] && [ "$(json error <<<"$BODY")" = invalid_grant ]; then
    ok "code reuse: 400 $BODY"
  else
    fail "code reuse: expected 400 invalid_grant, got $STATUS $BODY"
  fi

  http GET "$BASE/me" -H "authorization: Bearer $AT1"
  [ "$STATUS" = 401 ] && ok "after reuse the grant is revoked: GET /me with token #1 -> 401 $(json error <<<"$BODY")" \
    || fail "after reuse: GET /me expected 401, got $STATUS $BODY"
done

echo "# mint route refusals"
http POST "$BASE/bench/codes?client=bench-rs&n=0"
[ "$STATUS" = 400 ] && ok "n=0 -> 400 $BODY" || fail "n=0 -> $STATUS $BODY"
http POST "$BASE/bench/codes?client=bench-rs&n=100001"
[ "$STATUS" = 400 ] && ok "n=100001 -> 400 $BODY" || fail "n=100001 -> $STATUS $BODY"
http POST "$BASE/bench/codes?client=bench-device&n=1"
[ "$STATUS" = 400 ] && ok "client=bench-device -> 400 $BODY" || fail "client=bench-device -> $STATUS $BODY"
http GET "$BASE/bench/codes?client=bench-rs&n=1"
[ "$STATUS" = 405 ] && ok "GET -> 405" || fail "GET -> $STATUS $BODY"
# The server binds 127.0.0.1, but Linux routes all of 127/8 to lo: a
# connection from 127.0.0.2 reaches it with a source that is not 127.0.0.1.
if http POST "$BASE/bench/codes?client=bench-rs&n=1" --interface 127.0.0.2 2>/dev/null; then
  [ "$STATUS" = 403 ] && ok "from 127.0.0.2 -> 403 $BODY" || fail "from 127.0.0.2 -> $STATUS $BODY"
else
  echo "skip from 127.0.0.2 (cannot bind that source address here)"
fi

if grep -q 'server_error' "$LOG_DIR/server.log"; then
  fail "server log has server_error:"; grep -A5 server_error "$LOG_DIR/server.log" >&2
fi

if [ "$FAILS" = 0 ]; then
  echo "OK authorization-code peer checks passed"
else
  echo "FAILED: $FAILS check(s)"; exit 1
fi
