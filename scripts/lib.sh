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
  if ! (cd "$ROOT" && mvn -B -q install -Dmaven.test.skip=true -Dinvoker.skip=true -Dmaven.javadoc.skip=true -Dmaven.source.skip=true >"$log" 2>&1); then
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

# Drops TensorFlow's absl INFO lines ("I0000 ..." and absl's preamble), which TF_CPP_MIN_LOG_LEVEL
# does not reach, and its "OP_REQUIRES failed at" warnings: the op's error also reaches the caller,
# which reports it in one line (a truncated checkpoint: "... is truncated or corrupt"). A line
# ending in a carriage return (a progress line) passes through at once.
# It ignores SIGINT and SIGTERM: Ctrl-C reaches every process of the terminal's foreground group,
# and the tool, which handles them (the demo writes its outputs, then says how to resume), must
# still be heard; the filter ends when the tool closes its stderr.
fadam_quiet_filter() {
  trap '' INT TERM
  if ! command -v perl >/dev/null 2>&1; then
    exec cat
  fi
  exec perl -e '
    $| = 1;
    my $noise = qr/^(?:WARNING: All log messages before absl::InitializeLog|I\d{4} [\d:.]+ +\d+ \S+:\d+\] |\d{4}-\d\d-\d\d [\d:.]+: I |To enable the following instructions|(?:\d{4}-\d\d-\d\d [\d:.]+: W |W\d{4} [\d:.]+ +\d+ )\S*op_kernel\.cc:\d+\] OP_REQUIRES failed at )/;
    my $buf = "";
    while (sysread(STDIN, my $chunk, 65536)) {
      $buf .= $chunk;
      while ($buf =~ s/\A([^\n]*\n)//) {
        my $line = $1;
        print $line unless $line =~ $noise;
      }
      if ($buf =~ /\A\r/ || $buf =~ /\r\z/) { print $buf; $buf = ""; }
    }
    print $buf;'
}

# Runs a main class of fadam-tf-tests (a tool on org.fadam.tools.Tool) with the given arguments.
# Unless --verbose is among them, TensorFlow's C++ INFO logging is kept out: TF_CPP_MIN_LOG_LEVEL=1
# (read when the native library loads, so it must be in the JVM's environment from the start) and
# the filter above. FADAM_CLASSPATH, when set, is used as is (no build): the tests use it.
fadam_run() {
  local main="$1"; shift
  local cp="${FADAM_CLASSPATH:-}"
  if [ -z "$cp" ]; then
    fadam_build || exit 1
    cp="$(fadam_classpath)"
  fi
  local verbose=0 arg
  for arg in "$@"; do
    [ "$arg" = "--" ] && break
    [ "$arg" = "--verbose" ] && verbose=1
  done
  # The JVM cannot see whether stderr is a terminal (here it may be a pipe into the filter).
  if [ -t 2 ]; then export FADAM_STDERR_TTY=1; else export FADAM_STDERR_TTY=0; fi
  if [ "$verbose" = 1 ]; then
    exec java ${FADAM_JAVA_OPTS:-} -cp "$cp" "$main" "$@"
  fi
  export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-1}"
  # stdout goes straight to where it went; stderr goes through the filter; the status is the
  # JVM's. SIGINT and SIGTERM reach the JVM (the demo handles them: it writes its outputs, then
  # says how to resume) whether they are sent to the process group (Ctrl-C, timeout(1)) or to
  # this script alone (kill PID): the JVM runs as a background job that bash waits for and passes
  # them on to (a signal sent to both arrives twice within a moment, which the JVM takes as one).
  # A background job starts with SIGINT ignored; env --default-signal (GNU coreutils 8.31 or
  # later) restores it. Without that, or without process substitution's $! (bash 4.4), the JVM
  # runs in the foreground: then a signal sent to this script alone waits until it ends.
  set +e
  if env --default-signal=INT true 2>/dev/null && [ "${BASH_VERSINFO[0]}${BASH_VERSINFO[1]}" -ge 44 ]; then
    local filter pid status
    exec 4> >(fadam_quiet_filter >&2)
    filter=$!
    env --default-signal=INT java ${FADAM_JAVA_OPTS:-} -cp "$cp" "$main" "$@" <&0 2>&4 4>&- &
    pid=$!
    exec 4>&-
    local trapped
    trap 'trapped=1; kill -INT "$pid" 2>/dev/null' INT
    trap 'trapped=1; kill -TERM "$pid" 2>/dev/null' TERM
    while :; do
      trapped=0
      wait "$pid"
      status=$?
      # A trapped signal ends the wait, not the JVM: wait again for its status.
      [ "$trapped" = 1 ] && kill -0 "$pid" 2>/dev/null || break
    done
    trap - INT TERM
    # The filter prints the JVM's last lines before the prompt comes back (bash 5.1 waits for a
    # process substitution; older ones return at once).
    wait "$filter" 2>/dev/null
    exit "$status"
  fi
  { java ${FADAM_JAVA_OPTS:-} -cp "$cp" "$main" "$@" 2>&1 1>&3 3>&- \
      | fadam_quiet_filter >&2; } 3>&1
  exit "${PIPESTATUS[0]}"
}

# The project's one Python environment: .venv at the repo root (git-ignored), created from the
# pinned tpu-configs/requirements.txt plus any further requirement files given as arguments (a
# suite that needs more packages passes its own file; everything is resolved together), and
# reused while those files and the interpreter are unchanged (a hash of them is kept in .venv).
# Prints the environment's python on stdout; quiet unless it fails. FADAM_PYTHON picks the base
# interpreter (default python3): 3.11 or 3.12, what every pin allows (tensorflow-cpu 2.18 has
# wheels up to 3.12, jax 0.10 needs 3.11 or later).
fadam_venv() {
  local venv="$ROOT/.venv" base="${FADAM_PYTHON:-python3}" files=("$ROOT/tpu-configs/requirements.txt" "$@")
  local f
  for f in "${files[@]}"; do
    [ -f "$f" ] || { echo "fadam_venv: no requirements file $f" >&2; return 1; }
  done
  if ! command -v "$base" >/dev/null 2>&1; then
    echo "the Python tests and tools need Python 3.11 or 3.12 ('$base' is not on PATH; set FADAM_PYTHON)" >&2
    return 1
  fi
  local version
  version="$("$base" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" || return 1
  case "$version" in
    3.11|3.12) ;;
    *) echo "$base is Python $version; the pinned packages need 3.11 or 3.12 (tensorflow-cpu 2.18: at most 3.12; jax 0.10: at least 3.11); set FADAM_PYTHON to one" >&2
       return 1 ;;
  esac
  local want
  want="$( { "$base" -c 'import sys; print(sys.version)'; cat "${files[@]}"; } | sha256sum | cut -d' ' -f1)"
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.fadam-requirements" 2>/dev/null)" = "$want" ]; then
    echo "$venv/bin/python"
    return 0
  fi
  # One creator at a time (two scripts, or Maven and a script, may start together).
  exec 9>"$ROOT/.venv.lock"
  flock 9
  if ! [ -x "$venv/bin/python" ] || [ "$(cat "$venv/.fadam-requirements" 2>/dev/null)" != "$want" ]; then
    echo "creating the Python environment .venv from ${files[*]#"$ROOT/"} (once: a few minutes, about 2 GB; later runs reuse it) ..." >&2
    local log req=()
    log="$(mktemp)"
    for f in "${files[@]}"; do req+=(-r "$f"); done
    rm -rf "$venv"
    if ! "$base" -m venv "$venv" >"$log" 2>&1 \
        || ! "$venv/bin/python" -m pip install -q --disable-pip-version-check "${req[@]}" >>"$log" 2>&1; then
      tail -n 30 "$log" >&2
      rm -f "$log"
      rm -rf "$venv"
      echo "could not create .venv with $base (Python $version) from ${files[*]#"$ROOT/"}: see the lines above (needs the venv module and access to PyPI)" >&2
      exec 9>&-
      return 1
    fi
    rm -f "$log"
    echo "$want" >"$venv/.fadam-requirements"
  fi
  exec 9>&-
  echo "$venv/bin/python"
}
