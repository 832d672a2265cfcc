# Assertions for the namespace test scripts (source this file).
# check NAME COMMAND...: runs COMMAND, records and prints ok/FAIL.
# check_summary NAME: prints "NAME: N passed, N failed"; returns non-zero on
# any failure.
CHECK_PASSED=0
CHECK_FAILED=0

check() {
    local name=$1
    shift
    if "$@"; then
        CHECK_PASSED=$((CHECK_PASSED + 1))
        echo "  ok    $name"
    else
        CHECK_FAILED=$((CHECK_FAILED + 1))
        echo "  FAIL  $name"
    fi
}

check_summary() {
    echo "$1: $CHECK_PASSED passed, $CHECK_FAILED failed"
    [[ $CHECK_FAILED -eq 0 && $CHECK_PASSED -gt 0 ]]
}

# Skips (exit 77, ctest's SKIP_RETURN_CODE) unless root.
require_root() {
    if [[ $EUID -ne 0 ]]; then
        echo "$1: SKIP: needs root (namespaces, BPF)"
        exit 77
    fi
}

# check_eq NAME ACTUAL EXPECTED: check that shows both values.
check_eq() { check "$1 ($2, expected $3)" test "$2" == "$3"; }

# fail NAME WHY: a failure after which the test cannot go on.
fail() {
    CHECK_FAILED=$((CHECK_FAILED + 1))
    echo "$1: FAIL: $2"
    exit 1
}
