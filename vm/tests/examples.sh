# shellcheck shell=bash
# The library's example devices (tcmu-target/examples) served for real:
# each prints `ready: /dev/sdX`, behaves as its source says, and removes
# everything on SIGTERM. Sourced by vm/guest/suite.

EXAMPLES_DIR=${EXAMPLES_DIR:-$REPO_ROOT/target/release/examples}

# ex_start NAME: run example NAME like tcmu-serve; sets EX_PID and EX_DEV.
ex_start() {
  local TCMU_SERVE=$EXAMPLES_DIR/$1
  EX_PID="" EX_DEV=""
  [[ -x "$TCMU_SERVE" ]] || fail "example $1 not built ($TCMU_SERVE)" || return
  serve_start "$VM_RUN/example-$1" || return
  EX_PID=$SERVE_PID EX_DEV=$READY
  [[ -b "$EX_DEV" ]] || fail "$EX_DEV is not a block device"
}

# ex_stop NAME: SIGTERM, exit 0, configfs clean.
ex_stop() {
  [[ -n "$EX_PID" ]] || return 0
  serve_stop "$EX_PID" TERM 30 || fail "$1 still running 30s after SIGTERM" || return
  ((SERVE_RC == 0)) || fail "$1 exited $SERVE_RC: $(stderr_tail "$VM_RUN/example-$1.stderr")" || return
  local left
  left=$(cfs_leftovers)
  [[ -z "$left" ]] || fail "configfs not clean after $1: $(tr '\n' ' ' <<< "$left")"
}

ex_xor() {
  ex_start xor_disk || return
  head -c 4M /dev/urandom > /tmp/xor-pattern
  must "write" dd if=/tmp/xor-pattern of="$EX_DEV" bs=1M oflag=direct status=none || return
  must "read back" dd if="$EX_DEV" of=/tmp/xor-readback bs=1M count=4 iflag=direct status=none || return
  cmp -s /tmp/xor-pattern /tmp/xor-readback || fail "data read back differs" || return
  must "mkfs.ext4" mkfs.ext4 -F -q "$EX_DEV" || return
  must "e2fsck" e2fsck -fn "$EX_DEV" || return
  ex_stop xor_disk
}

ex_read_only() {
  ex_start read_only_disk || return
  [[ $(blockdev --getro "$EX_DEV") == 1 ]] || fail "the disk is not read-only" || return
  local text
  text=$(dd if="$EX_DEV" bs=512 skip=5 count=1 iflag=direct status=none | tr -d '.')
  [[ "$text" == "block 5" ]] || fail "block 5 reads '$text'" || return
  if timeout 60 dd if=/dev/zero of="$EX_DEV" bs=512 count=1 oflag=direct status=none 2> /dev/null; then
    fail "a write succeeded" || return
  fi
  ex_stop read_only_disk
}

ex_btree() {
  ex_start btree_disk || return
  head -c 1M /dev/urandom > /tmp/btree-pattern
  must "write" dd if=/tmp/btree-pattern of="$EX_DEV" bs=64k seek=16 oflag=direct status=none || return
  must "read back" dd if="$EX_DEV" of=/tmp/btree-readback bs=64k skip=16 count=16 iflag=direct status=none || return
  cmp -s /tmp/btree-pattern /tmp/btree-readback || fail "data read back differs" || return
  must "blkdiscard (the device advertises UNMAP)" blkdiscard "$EX_DEV" || return
  must "read after discard" dd if="$EX_DEV" of=/tmp/btree-readback bs=64k skip=16 count=16 iflag=direct status=none || return
  cmp -s /tmp/btree-readback <(head -c 1M /dev/zero) || fail "discarded blocks do not read as zeros" || return
  ex_stop btree_disk
}

# ex_iops QD: 4k random reads of $EX_DEV for 4 s at queue depth QD; the
# rate in EX_IOPS.
ex_iops() {
  local out=$VM_RUN/slow-disk-qd$1.json
  EX_IOPS=0
  CMD_TIMEOUT=60 must "fio at queue depth $1" fio --name="qd$1" --filename="$EX_DEV" --direct=1 \
    --ioengine=libaio --rw=randread --bs=4k --iodepth="$1" --runtime=4 --time_based --size=64M \
    --output-format=json --output="$out" --eta=never || return
  EX_IOPS=$(python3 -c 'import json, sys; print(int(json.load(open(sys.argv[1]))["jobs"][0]["read"]["iops"]))' "$out") ||
    fail "no IOPS in $out"
}

# The asynchronous example: every request waits 2 ms, yet requests in
# flight hold no thread, so queue depth 32 moves far more than depth 1.
# With a thread per request the 4 workers would cap it at 4x depth 1; the
# check asks for 6x (measured under TCG: 8x, both vCPUs busy with the
# kernel's, fio's and the handler's share of every command).
# Data written at depth 32 verifies.
ex_slow() {
  ex_start slow_disk || return
  ex_iops 1 || return
  local qd1=$EX_IOPS
  ex_iops 32 || return
  local qd32=$EX_IOPS
  echo "slow_disk, 2 ms per request: QD1 $qd1 IOPS, QD32 $qd32 IOPS ($((qd32 / (qd1 > 0 ? qd1 : 1)))x)"
  ((qd1 > 0 && qd32 >= 6 * qd1)) ||
    fail "QD32 $qd32 IOPS is not 6x QD1 $qd1 IOPS: requests in flight wait for threads" || return
  local report=fio-verify-slow-disk.txt
  CMD_TIMEOUT=300 must "fio verify failed, see $report" \
    "${FIO_VERIFY[@]}" --name=verify --filename="$EX_DEV" --iodepth=32 --size=32M \
    --output="$VM_RUN/$report" || return
  ! grep -qiE 'verify: bad|crc32c: verify failed|err= *[1-9]' "$VM_RUN/$report" ||
    fail "fio reported errors, see $report" || return
  ex_stop slow_disk
}

step example_xor_disk ex_xor
step example_read_only_disk ex_read_only
step example_btree_disk ex_btree
step example_slow_disk_async ex_slow
# The write refused by the read-only example is logged by the kernel on purpose.
klog_mark
