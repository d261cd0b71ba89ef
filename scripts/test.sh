#!/usr/bin/env bash
# `npm test`: bootstrap, static checks, the fast tiers in parallel, the policy pack over the real stack,
# then the integration tier in band (it shares one lab: loop volume, servers, emulator).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/node_modules/.bin:$PATH:/usr/sbin:/sbin"

echo "== static checks: tsc, eslint, prettier"
tsc --noEmit
eslint .
prettier --check . >/dev/null || { prettier --check .; exit 1; }

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
status=0
echo "== unit, infrastructure and policy tests"
jest --selectProjects unit infra policy --passWithNoTests --json --outputFile="$results/fast.json" || status=1
if [ -f policies/run.ts ]; then
  echo "== policy pack over the example stacks"
  tsx policies/run.ts || status=1
fi
echo "== integration tests (real MariaDB, btrfs, fauxqs)"
jest --selectProjects integration --runInBand --passWithNoTests --json --outputFile="$results/integration.json" || status=1

node -e '
  const fs = require("fs");
  let passed = 0, failed = 0, skipped = 0;
  for (const f of process.argv.slice(1)) {
    if (!fs.existsSync(f)) { failed++; continue; }
    const r = JSON.parse(fs.readFileSync(f, "utf8"));
    passed += r.numPassedTests; failed += r.numFailedTests + r.numRuntimeErrorTestSuites;
    skipped += r.numPendingTests + r.numTodoTests;
  }
  console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
' "$results/fast.json" "$results/integration.json"
exit $status
