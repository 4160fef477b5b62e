#!/usr/bin/env bash
# The main job (README's first command, through `make demo`): bring up the
# shop lab, show its live traffic, and take it down again, also on failure.
# Exits non-zero if any step's check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
NANOSEG=${NANOSEG:-./bin/nanoseg}
TOPOLOGY=${TOPOLOGY:-manifests/lab/shop.yaml}
LAB=$(awk '/^name:/{print $2; exit}' "$TOPOLOGY")

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() { printf '\033[31mFAIL: %s\033[0m\n' "$*" >&2; exit 1; }

if [ "$(id -u)" != 0 ]; then
  fail "the demo needs root: it creates network namespaces (run: sudo make demo)"
fi
trap 'step "tearing the lab down"; "$NANOSEG" lab down --name "$LAB" || true' EXIT

step "1. bringing up the $LAB lab from $TOPOLOGY"
"$NANOSEG" lab up -f "$TOPOLOGY"

step "2. letting the lab's clients talk for 5 seconds"
sleep 5
"$NANOSEG" lab status --name "$LAB"
"$NANOSEG" lab status --name "$LAB" --check >/dev/null || fail "not every client reached its server"
echo "every client reached its server"

step "3. the intruder can still reach the database (nothing is enforced yet)"
"$NANOSEG" lab probe --name "$LAB" --from shop/intruder --to shop/db --port 5432
"$NANOSEG" lab probe --name "$LAB" --from shop/intruder --to shop/db --port 5432 --family 6

step "done: the lab works; later steps of the story (observe, propose, audit, enforce) come with the agent"
