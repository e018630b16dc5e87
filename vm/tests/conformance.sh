# shellcheck shell=bash
# SCSI conformance: libiscsi's iscsi-test-cu (`-t ALL`, destructive and
# SANITIZE tests allowed) against tcmu-serve's memory backend exported by LIO iSCSI on
# 127.0.0.1. The run's verdicts are checked against
# vm/tests/conformance-accepted.txt (vm/guest/cunit-verdicts.py): any failure
# not listed fails the step, and so does a listed test that passes, so the
# list only shrinks. The passed/failed/skipped counts are printed.
# Sourced by vm/guest/suite (helpers: vm/guest/lib.sh).

CF_NAME=conformance0
CF_PID=""
CF_OUT=""
CF_URL=""
CF_ACCEPTED=$REPO_ROOT/vm/tests/conformance-accepted.txt
CF_RESULTS=$VM_RUN/conformance

cf_start() {
  CF_OUT=$VM_RUN/tcmu-serve-$CF_NAME
  command -v iscsi-test-cu > /dev/null || fail "iscsi-test-cu is not installed (libiscsi-bin)" || return
  serve_start "$CF_OUT" --backend mem --size 256MiB --name "$CF_NAME" --export iscsi --iscsi-no-auth || return
  CF_PID=$SERVE_PID
  [[ "$READY" == iscsi://*/0 ]] || fail "ready line names '$READY', not an iSCSI LUN" || return
  CF_URL=$READY
}

cf_suite() {
  [[ -n "$CF_URL" ]] || fail "skipped: the target did not start" || return
  mkdir -p "$CF_RESULTS" || return
  local rc=0 t0=$SECONDS
  # The suite takes about three minutes under TCG; 20 bounds a hang. Its
  # exit status is non-zero whenever any test failed: the verdicts decide.
  (cd "$CF_RESULTS" && timeout -k 10 1200 iscsi-test-cu -d -S -t ALL "$CF_URL") > "$CF_RESULTS/iscsi-test-cu.txt" 2>&1 || rc=$?
  info "iscsi-test-cu exited $rc after $((SECONDS - t0))s"
  ((rc != 124 && rc != 137)) || fail "iscsi-test-cu did not finish within 1200s" || return
  python3 "$GUEST_DIR/cunit-verdicts.py" "$CF_RESULTS/iscsi-test-cu.txt" "$CF_ACCEPTED" > "$CF_RESULTS/verdicts.txt"
  rc=$?
  cat "$CF_RESULTS/verdicts.txt"
  info "$(head -n 1 "$CF_RESULTS/verdicts.txt")"
  ((rc == 0)) || fail "$(grep -m1 -E '^(new failure|listed)' "$CF_RESULTS/verdicts.txt" || echo 'no verdicts parsed') (see conformance/verdicts.txt)"
}

cf_stop() {
  [[ -n "$CF_PID" ]] || fail "skipped: no tcmu-serve left running" || return
  serve_stop_clean "$CF_PID" "$CF_OUT.stderr" || return
  CF_PID=""
}

step conformance_start cf_start
step conformance_iscsi_test_cu cf_suite
step conformance_stop cf_stop
# The suite provokes target-side errors on purpose (bad DataSN, aborted
# tasks, resets): the kernel log check starts afresh after it.
klog_mark
if [[ -n "$CF_PID" ]]; then kill -KILL "$CF_PID" 2> /dev/null || true; fi
