#!/usr/bin/env bash
# Resolves the jars Spark needs for tests/e2e/test_iceberg_spark.py (pom.xml: Iceberg's Spark
# runtime and AWS bundle) into ~/.m2 and writes their classpath to target/classpath.txt, which
# tests/e2e/sparkkit.py passes to Spark as spark.jars. Idempotent: Maven runs only when pom.xml
# changed (or a jar it listed is gone). Needs mvn and Java 17+ on PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
mkdir -p target
stamp="$(sha256sum pom.xml | cut -d' ' -f1)"
present() {
    local jar
    [ -s target/classpath.txt ] || return 1
    for jar in $(tr ':' ' ' <target/classpath.txt); do [ -f "$jar" ] || return 1; done
}
if ! present || [ "$(cat target/pom.sha256 2>/dev/null)" != "$stamp" ]; then
    echo "spark: resolving the Iceberg jars with Maven"
    mvn -q -B dependency:build-classpath -Dmdep.outputFile=target/classpath.txt
    echo "$stamp" >target/pom.sha256
fi
