#!/usr/bin/env bash
# The main job; see README. Filled in by the lab work.
set -euo pipefail
echo "demo: not yet"
