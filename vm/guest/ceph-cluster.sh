# shellcheck shell=bash
# The single-node Ceph cluster (scripts/ceph-cluster) for the test files
# that serve RBD images: check that tcmu-serve links librbd, start and stop
# the cluster, bounded. Sourced by those files (helpers: vm/guest/lib.sh).

CEPH_DIR=/tmp/ceph
CEPH_CONF=$CEPH_DIR/ceph.conf
CEPH_SCRIPT=$REPO_ROOT/scripts/ceph-cluster
CEPH_RBD=0
CEPH_UP=0

# ceph_cluster LIMIT ARGS...: scripts/ceph-cluster ARGS --dir $CEPH_DIR,
# killed after LIMIT s. Under TCG a start takes far longer than on a host.
ceph_cluster() {
  local limit=$1
  shift
  echo "+ scripts/ceph-cluster $* --dir $CEPH_DIR"
  timeout -k 5 "$limit" "$CEPH_SCRIPT" "$@" --dir "$CEPH_DIR"
}

# ceph_rbd_support: tcmu-serve was built with the rbd feature.
ceph_rbd_support() {
  [[ -x "$TCMU_SERVE" ]] || fail "no executable $TCMU_SERVE" || return
  # The rbd feature links librbd; without it the rbd: backend only says so.
  local libs
  libs=$(ldd "$TCMU_SERVE" 2>&1 | grep -E 'librbd|librados')
  echo "$libs"
  grep -q 'librbd\.so' <<< "$libs" ||
    fail "tcmu-serve built without the rbd feature: install librbd-dev librados-dev" || return
  CEPH_RBD=1
}
ceph_need_rbd() { ((CEPH_RBD)) || fail "skipped: tcmu-serve has no rbd support"; }

ceph_cluster_start() {
  ceph_need_rbd || return
  local out rc=0
  out=$(ceph_cluster 300 start 2>&1) || rc=$?
  echo "$out"
  ((rc != 124 && rc != 137)) || fail "scripts/ceph-cluster start did not finish within 300s" || return
  ((rc == 0)) || fail "scripts/ceph-cluster start exited $rc: $(tail -n1 <<< "$out")" || return
  CEPH_UP=1
  grep -qx "ready: $CEPH_CONF" <<< "$out" || fail "no 'ready: $CEPH_CONF' line"
}
ceph_need_cluster() { ((CEPH_UP)) || fail "skipped: no Ceph cluster"; }

ceph_cluster_stop() {
  ((CEPH_UP)) || fail "skipped: no Ceph cluster" || return
  ceph_cluster 60 stop || fail "scripts/ceph-cluster stop failed" || return
  CEPH_UP=0
}

# ceph_cluster_kill: stop the cluster if it runs, whatever failed before.
ceph_cluster_kill() {
  if ((CEPH_UP)); then ceph_cluster 60 stop > /dev/null 2>&1 || true; fi
  CEPH_UP=0
}
