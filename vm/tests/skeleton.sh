# shellcheck shell=bash
# Walking-skeleton tests: tcmu-serve serves a 512 MiB RAM disk through the
# kernel's TCMU ring, exported as a local SCSI disk through tcm_loop.
# Sourced by vm/guest/suite inside the VM (helpers: vm/guest/lib.sh).

# shellcheck source=vm/guest/disk-suite.sh
source "$GUEST_DIR/disk-suite.sh"

SK_NAME=skeleton0
SK_BLOCKS=1048576 # 512 MiB in 512-byte blocks
SK_SERVE_ARGS=(--backend mem --size 512MiB)

sk_reject_size_0() { neg_cli "$VM_RUN/neg-size-0" 'size' --backend mem --size 0 --name neg0; }
sk_reject_size_unaligned() {
  neg_cli "$VM_RUN/neg-size-12345" 'multiple|block|align' --backend mem --size 12345 --name neg1
}
sk_reject_block_size() {
  neg_cli "$VM_RUN/neg-block-size-777" 'block' --backend mem --size 512MiB --block-size 777 --name neg2
}
sk_reject_size_banana() { neg_cli "$VM_RUN/neg-size-banana" 'size|banana' --backend mem --size banana --name neg3; }
sk_reject_non_root() {
  # A private copy in the guest's tmpfs: the unprivileged user may not be
  # able to reach the build directory.
  install -m 0755 "$TCMU_SERVE" /tmp/tcmu-serve-nonroot || fail "copy binary" || return
  local TCMU_SERVE=/tmp/tcmu-serve-nonroot
  NEG_RUNNER=(setpriv --reuid=65534 --regid=65534 --clear-groups)
  neg_cli "$VM_RUN/neg-non-root" 'root|permission|privilege|denied|EPERM|EACCES' \
    --backend mem --size 512MiB --name neg4
  local rc=$?
  NEG_RUNNER=()
  return "$rc"
}

# A data area of 8 MiB and a 2 MiB ring: the kernel takes the sizes, and 16
# MiB of 1 MiB writes in flight (more than the data area holds) wait for
# room and complete, verified.
sk_small_data_area() {
  local out=$VM_RUN/small-data-area dev dir rc=0
  serve_start "$out" --backend mem --size 64MiB --name sk-small --data-area 8MiB --ring-size 2MiB ||
    return
  dev=$READY
  dir=$(compgen -G "$CFS/core/user_*/sk-small" | head -n 1)
  [[ "$(cat "$dir/attrib/max_data_area_mb")" == 8 ]] ||
    fail "max_data_area_mb is $(cat "$dir/attrib/max_data_area_mb"), not 8" || rc=1
  [[ "$(cat "$dir/attrib/cmd_ring_size_mb")" == 2 ]] ||
    fail "cmd_ring_size_mb is $(cat "$dir/attrib/cmd_ring_size_mb"), not 2" || rc=1
  ((rc == 0)) && { must "fio 1 MiB writes at QD16 with verification" "${FIO_VERIFY[@]}" \
    --name=small-area --filename="$dev" --rw=write --bs=1M --iodepth=16 --size=64M || rc=1; }
  serve_stop "$SERVE_PID" TERM 30 || rc=1
  ((rc == 0 && SERVE_RC == 0)) || fail "tcmu-serve exited ${SERVE_RC:-?}"
}
sk_reject_ring_size() {
  neg_cli "$VM_RUN/neg-ring-size" 'ring-size' --backend mem --size 64MiB --ring-size 9MiB --name neg5
}

disk_suite ""
step reject_size_0 sk_reject_size_0
step reject_size_unaligned sk_reject_size_unaligned
step reject_block_size_777 sk_reject_block_size
step reject_size_banana sk_reject_size_banana
step reject_non_root sk_reject_non_root
step small_data_area sk_small_data_area
step reject_ring_size_9mib sk_reject_ring_size
step kernel_log_clean klog_clean
