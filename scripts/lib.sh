# Shared by the scripts in this folder: builds the project once (quietly) when any source or POM
# is newer than the last build, then gives the classpath of the tools.
# shellcheck shell=bash
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STAMP="$ROOT/fadam-tf-tests/target/.fadam-built"

fadam_build() {
  if [ -f "$STAMP" ] && [ -z "$(find "$ROOT/pom.xml" "$ROOT/fadam-tf" "$ROOT/fadam-tf-tests" \
        \( -path '*/target' -prune \) -o -type f -newer "$STAMP" -print -quit)" ]; then
    return 0
  fi
  echo "building fadam-tf (once; later runs reuse the build) ..." >&2
  local log
  log="$(mktemp)"
  if ! (cd "$ROOT" && mvn -B -q install -Dmaven.test.skip=true >"$log" 2>&1); then
    cat "$log" >&2
    rm -f "$log"
    echo "build failed" >&2
    return 1
  fi
  rm -f "$log"
  touch "$STAMP"
}

fadam_classpath() {
  echo "$ROOT/fadam-tf-tests/target/classes:$ROOT/fadam-tf/target/classes:$(cat "$ROOT/fadam-tf-tests/target/classpath.txt")"
}

# Runs a main class of fadam-tf-tests with the given arguments.
fadam_run() {
  local main="$1"; shift
  fadam_build || exit 1
  exec java ${FADAM_JAVA_OPTS:-} -cp "$(fadam_classpath)" "$main" "$@"
}
