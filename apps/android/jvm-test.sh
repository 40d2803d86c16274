#!/usr/bin/env bash
# The app's platform-free Kotlin (the sources without an Android, AndroidX or ExecuTorch import) and its JUnit 4 tests,
# compiled with Debian's kotlinc and run on the JVM: no Android SDK, no Gradle. Arguments go to `java`, e.g.
# -Dmcq.reference=FILE -Dmcq.sidecars=DIR (see the tests); `--check` only says what is missing.
set -euo pipefail
cd "$(dirname "$0")"
JARS=(/usr/share/java/junit4.jar /usr/share/java/hamcrest-core.jar /usr/share/java/com.android.json.jar)
missing=()
command -v kotlinc >/dev/null || missing+=(kotlinc)
for jar in "${JARS[@]}"; do [ -f "$jar" ] || missing+=("$jar"); done
if [ ${#missing[@]} -gt 0 ]; then
    echo "jvm-test.sh: ${missing[*]} missing (apt-get install kotlin junit4 libandroid-json-java)" >&2
    exit 3
fi
[ "${1:-}" = --check ] && exit 0
CP=$(IFS=:; echo "${JARS[*]}")
SRC=app/src/main/java/dev/mcq/segment
TEST=app/src/test/java/dev/mcq/segment
OUT=build/jvm/classes.jar
if [ ! -f $OUT ] || [ -n "$(find $SRC $TEST jvm-test.sh -newer $OUT)" ]; then
    mapfile -t MAIN < <(grep -L -E '^import (android|androidx|org\.pytorch)\.' $SRC/*.kt)
    mkdir -p build/jvm
    # kotlinc's launcher passes -Xverify:none, which JDK 13+ warns about: not ours
    kotlinc -nowarn -cp "$CP" -d $OUT "${MAIN[@]}" $TEST/*.kt 2>&1 | { grep -v 'Xverify:none' || true; }
fi
mapfile -t TESTS < <(basename -s .kt $TEST/*Test.kt | sed 's/^/dev.mcq.segment./')
CP="$OUT:app/src/test/resources:$CP:/usr/share/java/kotlin-stdlib.jar"
java -cp "$CP" "$@" org.junit.runner.JUnitCore "${TESTS[@]}"
