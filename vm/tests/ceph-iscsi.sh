# shellcheck shell=bash
# A Ceph image over iSCSI: scripts/ceph-cluster starts a single-node cluster
# in the guest, tcmu-serve serves an RBD image of it (rbd: backend) as an
# iSCSI target, open-iscsi logs in on 127.0.0.1 and the disk passes the ext4
# and fio checks. Then the OSD is stopped under a direct write: tcmu-serve
# keeps answering (TEST UNIT READY within 10 s), nothing hangs, and once the
# OSD is back the LUN reads and writes again. Clean teardown on SIGTERM.
# Sourced by vm/guest/suite; needs tcmu-serve built with `--features rbd`
# (vm/lib.sh does when librbd-dev and librados-dev are installed).

# shellcheck source=vm/guest/disk-suite.sh
source "$GUEST_DIR/disk-suite.sh"
# shellcheck source=vm/guest/iscsi-initiator.sh
source "$GUEST_DIR/iscsi-initiator.sh"
# shellcheck source=vm/guest/ceph-cluster.sh
source "$GUEST_DIR/ceph-cluster.sh"

CI_IMAGE=rbd/vmdisk
CI_NAME=ceph0
CI_IQN=iqn.2026-11.org.tcmu-rs:ceph0
CI_PORTAL=$ISCSI_PORTAL
CI_PID=""
CI_OUT=""
CI_DEV=""
CI_DD=""

ci_image_create() {
  ceph_need_cluster || return
  # layering only: no exclusive lock to hand over between clients.
  must "rbd create" rbd -c "$CEPH_CONF" create --size 256M --image-feature layering "$CI_IMAGE" || return
  timeout 60 rbd -c "$CEPH_CONF" info "$CI_IMAGE"
}

ci_serve() {
  ceph_need_cluster || return
  CI_OUT=$VM_RUN/tcmu-serve-$CI_NAME
  serve_start "$CI_OUT" --backend "rbd:$CI_IMAGE?conf=$CEPH_CONF&timeout=10" --name "$CI_NAME" \
    --export iscsi --iscsi-no-auth
  local rc=$?
  if [[ -n "$SERVE_PID" ]] && kill -0 "$SERVE_PID" 2> /dev/null; then CI_PID=$SERVE_PID; fi
  ((rc == 0)) || return 1
  [[ "$READY" == "iscsi://$CI_PORTAL/$CI_IQN/0" ]] ||
    fail "ready line names '$READY', want iscsi://$CI_PORTAL/$CI_IQN/0"
}
ci_need_serve() { [[ -n "$CI_PID" ]] || fail "skipped: tcmu-serve is not running"; }

ci_login() {
  ci_need_serve || return
  iscsi_discover "$CI_IQN" || return
  iscsi_login "$CI_IQN" || return
  CI_DEV=$ISCSI_DEV
}
ci_need_dev() { [[ -n "$CI_DEV" ]] || fail "skipped: no iSCSI disk"; }

ci_inquiry() {
  ci_need_dev || return
  iscsi_inquiry "$CI_DEV" 524288
}

# The generic ext4 checks of disk-suite.sh on the iSCSI disk.
ci_as_sk() {
  ci_need_dev || return
  SK_DEV=$CI_DEV SK_NAME=$CI_NAME
  "$@"
}

ci_fio() {
  ci_need_dev || return
  iscsi_fio "$CI_DEV" 32M ceph
}

# ci_turs: TEST UNIT READY answered within 10 s (any status; a hang fails).
ci_turs() {
  local rc=0 t0=$SECONDS
  timeout -k 2 10 sg_turs "$CI_DEV" || rc=$?
  echo "sg_turs exit $rc after $((SECONDS - t0))s"
  ((rc != 124 && rc != 137)) || fail "no TEST UNIT READY answer within 10s"
}

# The OSD stops while a direct write runs: tcmu-serve stays alive and
# answers, the write ends or retries but is bounded.
ci_outage() {
  ci_need_dev || return
  # 4 KiB writes, one at a time: the 16 MiB take long enough to be under
  # way when the OSD goes.
  timeout -k 5 240 dd if=/dev/urandom of="$CI_DEV" bs=4k count=4096 seek=16384 oflag=direct status=none &
  CI_DD=$!
  sleep 1
  kill -0 "$CI_DD" 2> /dev/null || info "ceph-iscsi: the write ended before the OSD was stopped"
  ceph_cluster 120 stop-osd || fail "scripts/ceph-cluster stop-osd failed" || return
  kill -0 "$CI_DD" 2> /dev/null && echo "the write is still running with the OSD down"
  # Beyond the rbd timeout (10 s) and tcmu-serve's own bound (2 x 10 + 1 s):
  # failed requests have come back by then.
  local i
  for i in 1 2 3; do
    kill -0 "$CI_PID" 2> /dev/null || fail "tcmu-serve exited during the outage: $(stderr_tail "$CI_OUT.stderr")" || return
    ci_turs || return
    sleep 8
  done
  if kill -0 "$CI_DD" 2> /dev/null; then echo "write still retrying after ~30s of outage"; fi
}

ci_recover() {
  ci_need_dev || return
  ceph_need_cluster || return
  local t0=$SECONDS rc=0
  ceph_cluster 180 start-osd || fail "scripts/ceph-cluster start-osd failed" || return
  echo "OSD back after $((SECONDS - t0))s"
  if [[ -n "$CI_DD" ]]; then
    # The write started before the outage ends (well or with an error)
    # within 120 s of the OSD's return; its own timeout is the hard bound.
    local i
    for ((i = 0; i < 1200; i++)); do
      kill -0 "$CI_DD" 2> /dev/null || break
      sleep 0.1
    done
    kill -0 "$CI_DD" 2> /dev/null && { fail "the outage's write still runs 120s after the OSD is back"; return; }
    wait "$CI_DD" || rc=$?
    CI_DD=""
    echo "the outage's write exited $rc"
    ((rc != 124 && rc != 137)) || fail "the outage's write hung until its timeout" || return
  fi
  # A direct write and read back of 1 MiB succeed within 60 s.
  head -c 1M /dev/urandom > /tmp/ceph-iscsi-pattern
  t0=$SECONDS
  while ((SECONDS - t0 < 60)); do
    if timeout 20 dd if=/tmp/ceph-iscsi-pattern of="$CI_DEV" bs=64k seek=2048 oflag=direct status=none &&
      cmp /tmp/ceph-iscsi-pattern <(timeout 20 dd if="$CI_DEV" bs=64k skip=2048 count=16 iflag=direct status=none); then
      echo "read and write pass $((SECONDS - t0))s after the OSD is back"
      timeout 10 sg_turs "$CI_DEV" || true
      return 0
    fi
    sleep 1
  done
  fail "no successful direct write and read within 60s after the OSD is back"
}

# ci_blocks_wait N: wait until READ CAPACITY reports N blocks (the first
# command after a resize gets the unit attention instead).
ci_blocks_wait() {
  local i out=""
  for ((i = 0; i < 10; i++)); do
    out=$(timeout 60 sg_readcap --16 "$CI_DEV" 2>&1) || true
    grep -q "Number of logical blocks=$1\$" <<< "$out" && return 0
    sleep 1
  done
  fail "want $1 blocks, got: $(grep -o 'Number of logical blocks=[0-9]*' <<< "$out")"
}

ci_resize() {
  ci_need_dev || return
  local dir=$CFS/core/user_0/$CI_NAME new=$((384 << 20)) i
  # A size the image does not have (yet) is refused and written back.
  must "dev_size=$new before rbd resize" sh -c "echo $new > $dir/attrib/dev_size" || return
  for ((i = 0; i < 100; i++)); do
    [[ "$(cat "$dir/attrib/dev_size")" == $((256 << 20)) ]] && break
    sleep 0.1
  done
  [[ "$(cat "$dir/attrib/dev_size")" == $((256 << 20)) ]] || fail "dev_size was not set back" || return
  grep -q "refused dev_size $new: the device cannot take that size" "$CI_OUT.stderr" || fail "no refusal in the log" || return
  ci_blocks_wait 524288 || return
  # Resized in Ceph first, the new size is taken.
  must "rbd resize" rbd -c "$CEPH_CONF" resize --size 384M "$CI_IMAGE" || return
  must "dev_size=$new after rbd resize" sh -c "echo $new > $dir/attrib/dev_size" || return
  ci_blocks_wait $((new / 512))
}

ci_logout() {
  ci_need_serve || return
  iscsi_logout "$CI_IQN" || return
  CI_DEV=""
}

ci_sigterm() {
  ci_need_serve || return
  serve_stop "$CI_PID" TERM 60 || fail "still running 60s after SIGTERM" || return
  CI_PID=""
  ((SERVE_RC == 0)) || fail "exit status $SERVE_RC after SIGTERM: $(stderr_tail "$CI_OUT.stderr")" || return
  [[ ! -d "$CFS/iscsi/$CI_IQN" ]] || fail "iSCSI target $CI_IQN left in configfs" || return
  local left
  left=$(cfs_leftovers)
  [[ -z "$left" ]] || fail "configfs not clean: $(tr '\n' ' ' <<< "$left")" || return
  ! grep -q 'panicked' "$CI_OUT.stderr" || fail "tcmu-serve panicked: $(grep -m1 panicked "$CI_OUT.stderr")"
}

step ceph_iscsi_rbd_support ceph_rbd_support
step ceph_iscsi_cluster_start ceph_cluster_start
step ceph_iscsi_image_create ci_image_create
step ceph_iscsi_iscsid_start iscsid_start "$VM_RUN/iscsid-ceph.log"
step ceph_iscsi_start ci_serve
step ceph_iscsi_login ci_login
step ceph_iscsi_inquiry_readcap ci_inquiry
step ceph_iscsi_ext4_mkfs ci_as_sk sk_mkfs
step ceph_iscsi_ext4_write ci_as_sk sk_write
step ceph_iscsi_ext4_fsck_clean ci_as_sk sk_fsck
step ceph_iscsi_ext4_remount_verify ci_as_sk sk_verify
step ceph_iscsi_fio_randwrite_verify ci_fio
step ceph_iscsi_kernel_log_clean klog_clean
step ceph_iscsi_osd_outage ci_outage
step ceph_iscsi_osd_back_recovers ci_recover
step ceph_iscsi_resize_on_reconfig ci_resize
step ceph_iscsi_logout ci_logout
step ceph_iscsi_sigterm_teardown ci_sigterm
step ceph_iscsi_iscsid_stop iscsid_stop
step ceph_iscsi_cluster_stop ceph_cluster_stop
# The outage makes the initiator and the target log I/O errors on purpose.
klog_mark
# Whatever failed above: nothing of this file outlives it.
if [[ -n "$CI_DD" ]]; then kill -KILL "$CI_DD" 2> /dev/null || true; fi
if [[ -n "$CI_PID" ]]; then kill -KILL "$CI_PID" 2> /dev/null || true; fi
iscsid_kill
ceph_cluster_kill
rm -f /tmp/ceph-iscsi-pattern
