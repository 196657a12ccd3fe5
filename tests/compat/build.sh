#!/usr/bin/env bash
# Builds the compatibility suite (tests/compat/README.md), idempotently:
#   java/: resolves kafka-clients, kafka-tools and kafka_2.13 (Apache Kafka itself, the positive
#          control) into ~/.m2 and writes their classpath (only when pom.xml changed), then
#          compiles the one Java program with javac (only when a source changed);
#   debezium/: the same for the Debezium case (Connect 4.3.2 and Debezium's PostgreSQL
#          connector, a classpath of its own);
#   go/:   downloads the Go modules into the module cache and compiles the test binary
#          (go's build cache makes an unchanged rebuild cheap).
# Needs java/javac 17+, mvn and go on PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
HERE="$(pwd)"

# ---------------------------------------------------------------- Java
cd "$HERE/java"
mkdir -p target/classes
stamp="$(sha256sum pom.xml | cut -d' ' -f1)"
if [ ! -s target/classpath.txt ] || [ "$(cat target/pom.sha256 2>/dev/null)" != "$stamp" ]; then
    echo "compat: resolving Maven dependencies"
    mvn -q -B dependency:build-classpath -Dmdep.outputFile=target/classpath.txt
    echo "$stamp" >target/pom.sha256
fi
if [ -z "$(find target/classes -name Compat.class -newer target/classpath.txt 2>/dev/null)" ] \
    || [ -n "$(find src -name '*.java' -newer target/classes/compat/Compat.class)" ]; then
    echo "compat: compiling the Java cases"
    rm -rf target/classes && mkdir -p target/classes
    javac -nowarn -d target/classes -cp "$(cat target/classpath.txt)" $(find src -name '*.java')
fi

# ---------------------------------------------------------------- Debezium (Connect 4.3)
cd "$HERE/debezium"
mkdir -p target/classes
stamp="$(sha256sum pom.xml | cut -d' ' -f1)"
if [ ! -s target/classpath.txt ] || [ "$(cat target/pom.sha256 2>/dev/null)" != "$stamp" ]; then
    echo "compat: resolving Maven dependencies (Debezium)"
    mvn -q -B dependency:build-classpath -Dmdep.outputFile=target/classpath.txt
    echo "$stamp" >target/pom.sha256
    rm -rf target/classes && mkdir -p target/classes
fi
if [ ! -f target/classes/compat/dbz/Debezium.class ] \
    || [ -n "$(find src -name '*.java' -newer target/classes/compat/dbz/Debezium.class)" ]; then
    echo "compat: compiling the Debezium case"
    javac -nowarn -d target/classes -cp "$(cat target/classpath.txt)" $(find src -name '*.java')
fi

# ---------------------------------------------------------------- Go
cd "$HERE/go"
go mod download
go test -c -o "$HERE/go/compat.test" .
