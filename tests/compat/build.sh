#!/usr/bin/env bash
# Builds the compatibility suite (tests/compat/README.md), idempotently:
#   java/: resolves kafka-clients, kafka-tools and kafka_2.13 (Apache Kafka itself, the positive
#          control) into ~/.m2 and writes their classpath (only when pom.xml changed), then
#          compiles the one Java program with javac (only when a source changed);
#   debezium/: the same for the Debezium case (Connect 4.3.2 and Debezium's PostgreSQL
#          connector, a classpath of its own);
#   streams/: the same for the transactions and Kafka Streams exactly-once cases
#          (kafka-streams, a classpath of its own);
#   go/:   downloads the Go modules into the module cache and compiles the test binary
#          (go's build cache makes an unchanged rebuild cheap).
# Arguments name the parts to build (java, streams, debezium, go); none builds them all.
# Needs java/javac 17+, mvn and go on PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
HERE="$(pwd)"

PARTS=(java streams debezium go)
WANT=("$@")
[ ${#WANT[@]} -gt 0 ] || WANT=("${PARTS[@]}")
for w in "${WANT[@]}"; do
    case " ${PARTS[*]} " in *" $w "*) ;; *) echo "build.sh: unknown part '$w' (parts: ${PARTS[*]})" >&2; exit 2 ;; esac
done
want() {
    local w
    for w in "${WANT[@]}"; do [ "$w" = "$1" ] && return 0; done
    return 1
}

# ---------------------------------------------------------------- Java
if want java; then
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
fi

# ---------------------------------------------------------------- Transactions and Kafka Streams
if want streams; then
cd "$HERE/streams"
mkdir -p target/classes
stamp="$(sha256sum pom.xml | cut -d' ' -f1)"
if [ ! -s target/classpath.txt ] || [ "$(cat target/pom.sha256 2>/dev/null)" != "$stamp" ]; then
    echo "compat: resolving Maven dependencies (streams)"
    mvn -q -B dependency:build-classpath -Dmdep.outputFile=target/classpath.txt
    echo "$stamp" >target/pom.sha256
    rm -rf target/classes && mkdir -p target/classes
fi
if [ ! -f target/classes/compat/streams/StreamsEos.class ] \
    || [ -n "$(find src -name '*.java' -newer target/classes/compat/streams/StreamsEos.class)" ]; then
    echo "compat: compiling the transactions and Kafka Streams cases"
    rm -rf target/classes && mkdir -p target/classes
    javac -nowarn -d target/classes -cp "$(cat target/classpath.txt)" $(find src -name '*.java')
fi
fi

# ---------------------------------------------------------------- Debezium (Connect 4.3)
if want debezium; then
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
fi

# ---------------------------------------------------------------- Go
if want go; then
cd "$HERE/go"
go mod download
go test -c -o "$HERE/go/compat.test" .
fi
