#!/usr/bin/env bash
# The main job (README's first command, through `make demo`): the whole
# nanoseg story on the shop lab. Observe, graph, propose, audit, catch the
# intruder, enforce, prove every legitimate edge still works, tear down.
# Exits non-zero as soon as any step's check fails; tears down always.
set -euo pipefail
cd "$(dirname "$0")/.."
NANOSEG=${NANOSEG:-./bin/nanoseg}
UISHOTS=${UISHOTS:-./bin/uishots}
TOPOLOGY=${TOPOLOGY:-manifests/lab/shop.yaml}
OUT=${OUT:-$PWD/out}
LAB=$(awk '/^name:/{print $2; exit}' "$TOPOLOGY")
STATE="$OUT/demo"
export NANOSEG_SERVER="$STATE/agent.sock"

start=$(date +%s)
step() { printf '\n\033[1m== [%3ss] %s\033[0m\n' "$(( $(date +%s) - start ))" "$*"; }
fail() { printf '\033[31mFAIL: %s\033[0m\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "the demo needs root: it creates network namespaces and nftables tables (run: sudo make demo)"

# free_port prints a TCP port of 127.0.0.1 that no socket of the host uses
# now (read from /proc/net/tcp{,6}), for the agent's web page listener.
free_port() {
  local p
  for _ in $(seq 50); do
    p=$(( 20000 + RANDOM % 40000 ))
    grep -qE "^ *[0-9]+: [0-9A-F]+:$(printf '%04X' "$p") " /proc/net/tcp /proc/net/tcp6 2>/dev/null || { echo "$p"; return 0; }
  done
  return 1
}

agent_pid=""
shots_pid=""
cleanup() {
  rc=$?
  step "tearing everything down"
  # uishots ends its Chromium and removes its profile on SIGTERM; the
  # profile's parent goes in any case.
  if [ -n "$shots_pid" ]; then kill "$shots_pid" 2>/dev/null || true; wait "$shots_pid" 2>/dev/null || true; fi
  rm -rf "$STATE/chromium"
  if [ -n "$agent_pid" ]; then kill "$agent_pid" 2>/dev/null || true; wait "$agent_pid" 2>/dev/null || true; fi
  "$NANOSEG" lab down --name "$LAB" || true
  if [ "$rc" = 0 ]; then printf '\n\033[32mdemo passed in %ss\033[0m\n' "$(( $(date +%s) - start ))"; fi
}
trap cleanup EXIT

rm -rf "$STATE" "$OUT/policies" "$OUT/graph.html" "$OUT/graph.dot" "$OUT/evidence" "$OUT/evidence.tar.gz" \
  "$OUT/ui-graph.png" "$OUT/ui-workload.png"
mkdir -p "$STATE"
# The web page's listener: 127.0.0.1 only, with an operator token made for
# this run (the page asks for it once; uishots logs in with it).
UI_PORT=${UI_PORT:-$(free_port)} || fail "no free TCP port on 127.0.0.1 for the web page"
UI_URL="http://127.0.0.1:$UI_PORT"
(umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$STATE/token")

step "1. bring up the $LAB lab ($TOPOLOGY): one network namespace per replica, real servers and clients"
"$NANOSEG" lab up -f "$TOPOLOGY"

step "2. start the agent in observe mode: nothing is filtered, every connection is recorded; the web page on $UI_URL (token: $STATE/token)"
"$NANOSEG" agent --lab "$LAB" --state-file "$STATE/state.db" --socket "$STATE/agent.sock" \
  --listen "127.0.0.1:$UI_PORT" --token-file "$STATE/token" \
  --metrics-addr "" >"$STATE/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 50); do [ -S "$STATE/agent.sock" ] && break; sleep 0.2; done
[ -S "$STATE/agent.sock" ] || { cat "$STATE/agent.log"; fail "the agent did not start"; }

step "3. let the lab's traffic run until every declared edge is observed"
"$NANOSEG" lab edges --name "$LAB" --wait 40s || fail "not every declared edge was observed"

step "4. write the communication graph for review: $OUT/graph.html and $OUT/graph.dot"
"$NANOSEG" graph -o html --out "$OUT/graph.html"
"$NANOSEG" graph -o dot --out "$OUT/graph.dot"
[ -s "$OUT/graph.html" ] && [ -s "$OUT/graph.dot" ] || fail "graph files are empty"
echo "wrote $OUT/graph.html ($(wc -c <"$OUT/graph.html") bytes) and $OUT/graph.dot ($(grep -c -- '->' "$OUT/graph.dot") edges)"

step "5. propose one nanosegment per workload from the observed graph: $OUT/policies/"
"$NANOSEG" policy propose --out "$OUT/policies"
echo; echo "the proposal for shop/db:"; cat "$OUT/policies/shop_db.yaml"

step "6. promote every workload to audit: would-be-denied connections are logged, not dropped"
"$NANOSEG" promote --all --to audit --reason "demo: review what enforcing would break"

step "7. the intruder tries lateral movement to the database: it gets through, and is recorded as audit-deny"
"$NANOSEG" lab probe --name "$LAB" --from shop/intruder --to shop/db --no-dns --port 5432 || fail "in audit mode the intruder's connection must pass"
sleep 2.5
"$NANOSEG" verdicts --verdict audit-deny --from shop/intruder --to shop/db --expect || fail "no audit-deny recorded for the intruder"
"$NANOSEG" status
"$NANOSEG" lab check --name "$LAB" >/dev/null || fail "audit mode broke a declared connection"

step "8. promote every workload to enforce (forced: the lab ran for a minute, below the 1h of observation enforce asks; the reasons are recorded)"
"$NANOSEG" promote --all --to enforce --force --reason "demo: audit showed only the intruder would be denied"

step "9. the intruder is dropped; every legitimate edge still works, over IPv4 and IPv6"
if probe=$("$NANOSEG" lab probe --name "$LAB" --from shop/intruder --to shop/db --no-dns --port 5432 --timeout 1s 2>&1); then
  fail "the intruder reached the database under enforcement: $probe"
fi
echo "dropped, as it must be: ${probe%%$'\n'*}"
sleep 2.5
"$NANOSEG" verdicts --verdict deny --from shop/intruder --to shop/db --expect || fail "no deny recorded for the intruder"
"$NANOSEG" lab check --name "$LAB" || fail "enforcement broke a declared connection"
"$NANOSEG" status
"$NANOSEG" history

step "10. screenshots of the live web page in headless Chromium: $OUT/ui-graph.png and $OUT/ui-workload.png (shop/db's details)"
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  echo "screenshots skipped: no chromium on PATH (apt-get install chromium, then run the demo again)"
else
  mkdir -p "$STATE/chromium"
  "$UISHOTS" --url "$UI_URL" --token-file "$STATE/token" --out "$OUT" --workload shop/db \
    --profile-dir "$STATE/chromium" --timeout 30s &
  shots_pid=$!
  shots_rc=0; wait "$shots_pid" || shots_rc=$?
  shots_pid=""
  rm -rf "$STATE/chromium"
  case $shots_rc in
    0) ;;
    3) echo "screenshots skipped: no chromium on PATH (apt-get install chromium, then run the demo again)" ;;
    *) fail "the web page did not show the graph and shop/db's details (uishots exited $shots_rc)" ;;
  esac
fi

step "11. live verification: probe every allowed and denied path from inside the endpoints"
"$NANOSEG" verify || fail "a live probe disagrees with the active policies"

step "12. export signed segmentation evidence: $OUT/evidence/"
"$NANOSEG" evidence export --out "$OUT/evidence" --window 1h --tar --replace || fail "evidence export failed"

step "13. check the bundle: every digest, the signature pinned to the agent's key, the promotion history chain"
"$NANOSEG" evidence verify "$OUT/evidence" --public-key "$STATE/evidence/signing.key.pub" || fail "the evidence bundle does not verify"

step "done: observed, proposed, audited, enforced, verified, evidenced; the intruder is denied and nothing legitimate broke"
