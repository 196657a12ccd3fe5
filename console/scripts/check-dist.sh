#!/bin/sh
# Rebuilds the console from source into a temporary directory and fails if the result differs
# from the committed dist/ (which the broker embeds): run `npm run build` and commit dist/.
set -eu
cd "$(dirname "$0")/.."
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
npx tsc --noEmit
npx vite build --outDir "$out" --emptyOutDir --logLevel warn
if ! diff -r dist "$out"; then
    echo "console/dist is not what the sources build: run 'cd console && npm ci && npm run build' and commit console/dist" >&2
    exit 1
fi
echo "console/dist matches its sources"
