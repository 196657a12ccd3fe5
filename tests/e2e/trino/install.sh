#!/usr/bin/env bash
# Installs the Trino server that tests/e2e/test_iceberg_trino.py starts, idempotently, from
# Maven Central with Maven (into ~/.m2): io.trino:trino-server-core (tar.gz: the server's lib/,
# no connectors) and io.trino:trino-iceberg (zip: the Iceberg connector). Only lib/ and the one
# plugin are unpacked, under ~/.cache/icestream/trino-<version>; a complete install is marked
# by .complete and then nothing is fetched or unpacked again. Prints the install directory.
#
# 476 is the newest release whose server-core tarball and plugin zips are on Maven Central:
# for 477 and later Trino publishes them elsewhere (483's are 404 there). It runs on Java 24+:
# the tests use $TRINO_JAVA_HOME, else /usr/lib/jvm/temurin-25-jdk-amd64 (see trinokit.py).
set -euo pipefail

VERSION="${TRINO_VERSION:-476}"
CACHE="$HOME/.cache/icestream"
DEST="$CACHE/trino-$VERSION"
if [ -f "$DEST/.complete" ]; then
    echo "$DEST"
    exit 0
fi
command -v mvn >/dev/null 2>&1 || { echo "trino/install.sh: mvn is needed" >&2; exit 1; }
mkdir -p "$CACHE"
work="$(mktemp -d "$CACHE/.trino-$VERSION.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# dependency:copy resolves into ~/.m2 (cached there for the next clean install) and copies
# the archive out; the copies are deleted once unpacked.
for artifact in "io.trino:trino-server-core:$VERSION:tar.gz" \
    "io.trino:trino-iceberg:$VERSION:zip"; do
    echo "trino/install.sh: resolving $artifact" >&2
    mvn -q -B -Dstyle.color=never org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
        -Dartifact="$artifact" -DoutputDirectory="$work/dl" -Dmdep.overWriteReleases=true >&2
done
mkdir -p "$work/trino/plugin"
tar -xzf "$work/dl/trino-server-core-$VERSION.tar.gz" -C "$work/trino" --strip-components=1 \
    "trino-server-core-$VERSION/lib" "trino-server-core-$VERSION/NOTICE"
(cd "$work/trino/plugin" && unzip -q "$work/dl/trino-iceberg-$VERSION.zip" \
    && mv "trino-iceberg-$VERSION" iceberg)
rm -rf "$work/dl"
touch "$work/trino/.complete"
rm -rf "$DEST"
mv "$work/trino" "$DEST"
echo "$DEST"
