#!/usr/bin/env bash
# The main job on real containers (`make demo-containers`): the shop story
# of `make demo` with Podman containers instead of lab namespaces. The
# agent finds them through Podman's Docker-compatible API (--containers
# podman://...), names them by their Compose labels, observes web -> api
# -> db, proposes, audits, enforces; the unlisted intruder is dropped,
# legitimate traffic keeps flowing, and a container restarted under
# enforce gets its rules back. Tears everything down always (the image,
# localhost/nanoseg-echo:demo, is kept for the next run; DEMO_RMI=1
# removes it too).
set -euo pipefail
cd "$(dirname "$0")/.."
NANOSEG=${NANOSEG:-./bin/nanoseg}
OUT=${OUT:-$PWD/out}
STATE="$OUT/demo-containers"
IMAGE=localhost/nanoseg-echo:demo
NET=nanoseg-demo
P=nanoseg-demo # container name prefix
# 198.18.217.0/24: no test or other demo uses it.
SUBNET=198.18.217.0/24 GW=198.18.217.1
WEB=198.18.217.10 API=198.18.217.11 DB=198.18.217.12 INTRUDER=198.18.217.13
ULIMITS=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
export NANOSEG_SERVER="$STATE/agent.sock"

start=$(date +%s)
step() { printf '\n\033[1m== [%3ss] %s\033[0m\n' "$(( $(date +%s) - start ))" "$*"; }
fail() { printf '\033[31mFAIL: %s\033[0m\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "the demo needs root: rootful Podman and nftables in the containers' namespaces (run: sudo make demo-containers)"
command -v podman >/dev/null || fail "podman is not installed: apt-get install --no-install-recommends podman"

cni_chains() { for t in filter nat; do iptables -t "$t" -S 2>/dev/null | awk -v t="$t" '$1=="-N" && $2 ~ /^CNI-/ {print t "/" $2}'; done | sort; }
chains_before=$(cni_chains)
# iptables-nft makes the host table (ip filter, nat) that holds those chains
# if it was not there: a new table left with no rule goes too.
host_tables() { nft list tables 2>/dev/null | sort; }
tables_before=$(host_tables)

agent_pid="" svc_pid=""
cleanup() {
  rc=$?
  set +e
  step "tearing everything down"
  if [ -n "$agent_pid" ]; then kill "$agent_pid" 2>/dev/null || true; wait "$agent_pid" 2>/dev/null || true; fi
  podman rm -f -t 0 "$P-web-1" "$P-api-1" "$P-db-1" "$P-intruder-1" >/dev/null 2>&1 || true
  podman network rm -f "$NET" >/dev/null 2>&1 || true
  if [ -n "$svc_pid" ]; then kill "$svc_pid" 2>/dev/null || true; wait "$svc_pid" 2>/dev/null || true; fi
  # Podman's CNI firewall plugin leaves its chains in the host's tables:
  # remove those this demo made (jumps to them first).
  for tc in $(comm -13 <(echo "$chains_before") <(cni_chains) | sort -r); do
    t=${tc%%/*} c=${tc#*/}
    iptables -t "$t" -S | grep -E "^-A [A-Z]+ .*-j $c( |$)" | grep -v "^-A $c " | sed 's/^-A //' |
      while read -r rule; do eval "iptables -t $t -D $rule" || true; done
    iptables -t "$t" -F "$c" 2>/dev/null || true
  done
  for tc in $(comm -13 <(echo "$chains_before") <(cni_chains) | sort -r); do iptables -t "${tc%%/*}" -X "${tc#*/}" || true; done
  comm -13 <(echo "$tables_before") <(host_tables) | while read -r _ fam name; do
    nft list table "$fam" "$name" | grep -qvE '^\s*(table |chain |type |}|$)' || nft delete table "$fam" "$name"
  done
  [ "${DEMO_RMI:-0}" = 1 ] && podman rmi -f "$IMAGE" >/dev/null 2>&1
  if [ "$rc" = 0 ]; then printf '\n\033[32mdemo passed in %ss\033[0m\n' "$(( $(date +%s) - start ))"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$STATE" "$OUT/policies-containers"
mkdir -p "$STATE"

# probe FROM TO:PORT: one TCP connection from inside container FROM's
# network namespace (bash's /dev/tcp under nsenter; the image has no shell).
probe() {
  local ns; ns=$(podman inspect -f '{{.NetworkSettings.SandboxKey}}' "$P-$1")
  timeout 2 nsenter --net="$ns" bash -c "exec 3<>/dev/tcp/${2%:*}/${2#*:} && head -c 64 <&3" 2>&1
}

step "1. the image: the project's test server as a one-file image ($IMAGE)"
if ! podman image exists "$IMAGE"; then
  root="$STATE/rootfs"; mkdir -p "$root"
  CGO_ENABLED=0 go build -o "$root/echo" ./internal/ctrtest/echo
  tar -C "$root" -cf "$STATE/rootfs.tar" .
  podman import --change 'ENTRYPOINT ["/echo"]' "$STATE/rootfs.tar" "$IMAGE" >/dev/null
fi
podman image ls "$IMAGE"

step "2. a network of its own ($SUBNET, internal) and Podman's API on $STATE/podman.sock"
podman network create --internal --subnet "$SUBNET" --gateway "$GW" "$NET" >/dev/null
podman system service --time=0 "unix://$STATE/podman.sock" >"$STATE/podman.log" 2>&1 &
svc_pid=$!
for _ in $(seq 50); do [ -S "$STATE/podman.sock" ] && break; sleep 0.1; done

step "3. the shop as a Compose project would label it: web -> api -> db, and an intruder"
# Fixed MACs: a restarted container keeps its MAC, so its peers' ARP
# caches stay right (README "Containers on one host").
run() { # NAME IP LAST-OCTET ECHO-ARGS...
  local name=$1 ip=$2 mac=$3; shift 3
  podman run -d --name "$P-$name-1" "${ULIMITS[@]}" --network "$NET" --ip "$ip" --mac-address "02:00:c6:12:d9:$mac" \
    --label com.docker.compose.project=shop --label "com.docker.compose.service=$name" \
    "$IMAGE" -name "$name" "$@" >/dev/null &
  run_pids+=($!)
}
run_pids=()
run db "$DB" 12 -listen 5432
run api "$API" 11 -listen 9090 -connect "$DB:5432" -every 500ms
run web "$WEB" 10 -listen 8080 -connect "$API:9090" -every 500ms
run intruder "$INTRUDER" 13
wait "${run_pids[@]}"
[ "$(podman ps --filter "name=$P" --format '{{.Names}}' | wc -l)" = 4 ] || fail "not every container started"
podman ps --filter "name=$P" --format '{{.Names}}\t{{.Labels}}'

step "4. start the agent on Podman's containers, in observe mode: nothing is filtered, every connection is recorded"
"$NANOSEG" agent --containers "podman://$STATE/podman.sock" --state-file "$STATE/state.db" --socket "$STATE/agent.sock" \
  --metrics-addr "" >"$STATE/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 50); do [ -S "$STATE/agent.sock" ] && break; sleep 0.2; done
[ -S "$STATE/agent.sock" ] || { cat "$STATE/agent.log"; fail "the agent did not start"; }

step "5. let the containers talk until web -> api and api -> db are observed"
ok=""
# Polled with the graph (read-only): `policy propose` would store a
# revision at every poll, and step 6 would find nothing new.
for _ in $(seq 60); do
  out=$("$NANOSEG" graph -o dot 2>&1 || true)
  if grep -qF '"shop/web" -> "shop/api"' <<<"$out" && grep -qF '"shop/api" -> "shop/db"' <<<"$out"; then ok=1; break; fi
  sleep 0.5
done
[ -n "$ok" ] || { echo "$out"; fail "the edges were not observed"; }
"$NANOSEG" graph -o dot --out "$STATE/graph.dot"
grep -- '->' "$STATE/graph.dot" | sed 's/^/  /'

step "6. propose one nanosegment per workload: $OUT/policies-containers/"
"$NANOSEG" policy propose --out "$OUT/policies-containers"
echo; echo "the proposal for shop/db:"; cat "$OUT/policies-containers/shop_db.yaml"

step "7. promote web, api and db to audit; the intruder tries the database: it gets through, and is recorded as audit-deny"
for w in shop/web shop/api shop/db; do "$NANOSEG" promote "$w" --to audit --reason "demo: review what enforcing would break"; done
sleep 1
probe intruder-1 "$DB:5432" || fail "in audit mode the intruder's connection must pass"
echo
sleep 2.5
"$NANOSEG" verdicts --verdict audit-deny --from shop/intruder --to shop/db --expect || fail "no audit-deny recorded for the intruder"

step "8. promote them to enforce (forced: observed for a few seconds, far below the 1h enforce asks; recorded)"
for w in shop/web shop/api shop/db; do "$NANOSEG" promote "$w" --to enforce --force --reason "demo: audit showed only the intruder would be denied"; done

step "9. the intruder is dropped; web -> api and api -> db still work"
if out=$(probe intruder-1 "$DB:5432"); then fail "the intruder reached the database under enforcement: $out"; fi
echo "intruder -> db: dropped, as it must be"
probe web-1 "$API:9090" >/dev/null || fail "web -> api broke under enforcement"
probe api-1 "$DB:5432" >/dev/null || fail "api -> db broke under enforcement"
echo "web -> api, api -> db: connected"
sleep 2.5
"$NANOSEG" verdicts --verdict deny --from shop/intruder --to shop/db --expect || fail "no deny recorded for the intruder"
"$NANOSEG" status

step "10. restart db under enforce (a new network namespace): its rules follow it"
podman restart -t 0 "$P-db-1" >/dev/null
sleep 1
if out=$(probe intruder-1 "$DB:5432"); then fail "the intruder reached the restarted database: $out"; fi
echo "intruder -> restarted db: dropped"
for _ in $(seq 20); do probe api-1 "$DB:5432" >/dev/null && break; sleep 0.5; done
probe api-1 "$DB:5432" >/dev/null || fail "api -> restarted db does not work"
echo "api -> restarted db: connected"
grep -E "inventory changed|new container netns" "$STATE/agent.log" | tail -3 | sed 's/^/  /'
"$NANOSEG" history

step "done: Podman's containers observed, proposed, audited, enforced; the intruder is denied, nothing legitimate broke, a restart kept its rules"
