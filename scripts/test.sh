#!/usr/bin/env bash
# Runs kumo's whole test suite: unit tests (cmocka), then every tests/*/test_*.{sh,py} script
# (differential CPU tests, bare-metal guests, bad input, Debian guest boots). Every test program
# speaks TAP-style lines: "ok - NAME" or "not ok - NAME: why". A program that exits non-zero
# without printing a "not ok" line counts as one failure. Ends with "N passed, N failed".
#
# Environment: KUMO_TEST_FILTER=REGEX runs only programs whose path matches.
set -uo pipefail
cd "$(dirname "$0")/.."

export KUMO_ROOT=$PWD
export KUMO_BIN=${KUMO_BIN:-$PWD/build/kumo}
export CMOCKA_MESSAGE_OUTPUT=TAP
log_dir=build/test-logs
mkdir -p "$log_dir"

echo "== building"
if ! make -s -j"$(nproc)" all >"$log_dir/build.log" 2>&1; then
	cat "$log_dir/build.log"
	echo "not ok - build"
	echo "0 passed, 1 failed"
	exit 1
fi
make -s -j"$(nproc)" test-programs >>"$log_dir/build.log" 2>&1 || true

passed=0
failed=0
failed_names=()

run_one() { # path, command...
	local name=$1; shift
	local log="$log_dir/$(echo "$name" | tr '/' '_').log"
	local start=$SECONDS
	"$@" >"$log" 2>&1 </dev/null
	local rc=$?
	local p f
	p=$(grep -cE '^ok ' "$log")
	f=$(grep -cE '^not ok ' "$log")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "not ok - $name: exited with status $rc" >>"$log"
		f=1
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	printf '%-48s %4d passed %4d failed  (%ds)\n' "$name" "$p" "$f" $((SECONDS - start))
	if [ "$f" -gt 0 ]; then
		failed_names+=("$name")
		grep -E '^not ok ' "$log" | sed 's/^/    /' | head -20
		echo "    (log: $log)"
	fi
}

filter=${KUMO_TEST_FILTER:-.}
echo "== unit tests"
for t in build/tests/unit/test_*; do
	[ -x "$t" ] || continue
	[[ "$t" =~ $filter ]] || continue
	run_one "unit/$(basename "$t")" "$t"
done
for t in $(ls tests/*/test_*.sh tests/*/test_*.py 2>/dev/null | sort); do
	[[ "$t" =~ $filter ]] || continue
	case "$t" in
	*.py) run_one "${t#tests/}" python3 "$t" ;;
	*.sh) run_one "${t#tests/}" bash "$t" ;;
	esac
done

echo
if [ "${#failed_names[@]}" -gt 0 ]; then
	echo "failed: ${failed_names[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
