# shellcheck shell=bash
# File backend tests: tcmu-serve serves a 256 MiB sparse image file (created
# by --create in the guest's /tmp) through the kernel's TCMU ring, exported
# through tcm_loop. The same basic checks as skeleton.sh, then what only a
# file backend can show: the data lands in the file at the right offsets,
# UNMAP punches holes that GET LBA STATUS reports, the file is reopened
# with its own size, --read-only and --inject-fault reach the initiator,
# and a block device can be the backing store too. The kernel errors the
# injected fault causes are checked, then left out of later klog_clean
# steps. Sourced by vm/guest/suite (helpers: vm/guest/lib.sh); the checks
# every disk gets come from vm/guest/disk-suite.sh.

# shellcheck source=vm/guest/disk-suite.sh
source "$GUEST_DIR/disk-suite.sh"

FB_IMG=/tmp/lun.img
FB_SIZE=$((256 << 20))
FB_BLOCKS=$((FB_SIZE / 512))
FB_NAME=filelun0
FB_OUT=$VM_RUN/tcmu-serve-file
FB_MNT=/mnt/file-backend
FB_PATTERN=/tmp/fb-pattern
# The known pattern lives at 200 MiB, clear of what mkfs and fio touch.
FB_PATTERN_MIB=200
FB_PATTERN_LEN=$((4 << 20))
# Blocks the fault-injection instance fails to read.
FB_BAD_LBA=1000
# Kernel log lines (warning or worse) that the injected read fault causes.
FB_FAULT_LOG_RE="medium error|unrecovered read error|sector $FB_BAD_LBA |tag#[0-9]+ (FAILED|Sense Key|Add\. Sense|CDB)"
FB_DEV=""
FB_PID=""
# Output prefix of the running instance (for failure reasons).
FB_CUR=""

fb_need_dev() {
  [[ -n "$FB_DEV" ]] || fail "skipped: tcmu-serve never became ready"
}

# fb_serve OUT_SUFFIX ARGS...: start tcmu-serve ARGS with a clean configfs;
# sets FB_DEV and FB_PID.
fb_serve() {
  local suffix=$1 left
  shift
  fb_kill_leftover
  FB_DEV="" FB_PID="" FB_CUR=$FB_OUT-$suffix
  left=$(cfs_leftovers)
  [[ -z "$left" ]] || fail "configfs not clean before start: $(tr '\n' ' ' <<< "$left")" || return
  serve_start "$FB_CUR" "$@" || return
  FB_PID=$SERVE_PID
  [[ "$READY" == /dev/* && -b "$READY" ]] || fail "ready line names '$READY', not a block device" || return
  FB_DEV=$READY
}

# fb_kill_leftover: stop an instance a failed step left running, keeping
# that step's reason.
fb_kill_leftover() {
  [[ -n "$FB_PID" ]] || return 0
  local reason=$STEP_REASON
  if mountpoint -q "$FB_MNT"; then umount "$FB_MNT"; fi
  serve_stop "$FB_PID" TERM 30 || kill -KILL "$FB_PID" 2> /dev/null || true
  FB_PID="" FB_DEV=""
  STEP_REASON=$reason
}

# fb_stop: SIGTERM the running instance; it must exit 0 and clean up.
fb_stop() {
  [[ -n "$FB_PID" ]] || fail "skipped: no tcmu-serve running" || return
  local pid=$FB_PID dev=$FB_DEV left
  FB_PID="" FB_DEV=""
  if mountpoint -q "$FB_MNT"; then umount "$FB_MNT"; fi
  serve_stop "$pid" TERM 30 || fail "still running 30s after SIGTERM" || return
  ((SERVE_RC == 0)) || fail "exit status $SERVE_RC after SIGTERM: $(stderr_tail "$FB_CUR.stderr")" || return
  ! grep -q 'panicked' "$FB_CUR.stderr" || fail "tcmu-serve panicked: $(grep -m1 panicked "$FB_CUR.stderr")" || return
  left=$(cfs_leftovers)
  [[ -z "$left" ]] || fail "configfs not clean: $(tr '\n' ' ' <<< "$left")" || return
  wait_gone "$dev" 10 || fail "$dev still exists 10s after exit"
}

# fb_allocated FILE: allocated bytes (st_blocks is in 512-byte units).
fb_allocated() {
  echo $(($(stat -c %b "$1") * 512))
}

# fb_as_sk FUNCTION...: disk-suite checks (vm/guest/disk-suite.sh) on the
# file backend's disk; SK_BLOCKS defaults to the image's blocks.
fb_as_sk() {
  fb_need_dev || return
  local SK_DEV=$FB_DEV SK_NAME=$FB_NAME SK_MNT=$FB_MNT SK_BLOCKS=${SK_BLOCKS_WANT:-$FB_BLOCKS}
  local check
  for check in "$@"; do
    "$check" || return
  done
}

fb_start() {
  rm -f "$FB_IMG"
  fb_serve create --backend "file:$FB_IMG" --create --size 256MiB --name "$FB_NAME" || return
  compgen -G "$CFS/core/*/$FB_NAME" > /dev/null || fail "no backstore $FB_NAME under $CFS/core" || return
  [[ -f "$FB_IMG" ]] || fail "$FB_IMG was not created" || return
  local size alloc
  size=$(stat -c %s "$FB_IMG")
  ((size == FB_SIZE)) || fail "$FB_IMG is $size bytes, want $FB_SIZE" || return
  alloc=$(fb_allocated "$FB_IMG")
  echo "$FB_IMG: $size bytes, $alloc allocated"
  # The kernel's partition scan may write nothing; reads allocate nothing.
  ((alloc < (1 << 20))) || fail "new image not sparse: $alloc bytes allocated"
}

fb_inquiry() { fb_as_sk sk_inquiry sk_vpd_00 sk_vpd_80 sk_vpd_83; }

# fb_readcap BLOCKS: READ CAPACITY(16) reports BLOCKS 512-byte blocks.
fb_readcap() { SK_BLOCKS_WANT=$1 fb_as_sk sk_readcap; }

fb_modes() {
  fb_as_sk sk_modes || return
  # The page cache is a volatile cache: the file backend reports WCE, and
  # the kernel must then send SYNCHRONIZE CACHE.
  local cache
  cache=$(cat /sys/block/"${FB_DEV#/dev/}"/device/scsi_disk/*/cache_type 2> /dev/null)
  echo "cache_type: $cache"
  [[ "$cache" == "write back" ]] || fail "kernel sees cache_type '$cache', want 'write back' (WCE)"
}

fb_ext4() { fb_as_sk sk_mkfs sk_write sk_fsck sk_verify; }

fb_fio() { SK_FIO_SIZE=64M fb_as_sk sk_fio; }

fb_write_pattern() {
  fb_need_dev || return
  timeout 60 head -c "$FB_PATTERN_LEN" /dev/urandom > "$FB_PATTERN" || fail "cannot make the pattern" || return
  must "dd of the pattern to the LUN" dd if="$FB_PATTERN" of="$FB_DEV" bs=1M seek="$FB_PATTERN_MIB" \
    oflag=direct conv=fsync status=none || return
  # Read back through the LUN, bypassing the guest's caches.
  timeout 60 dd if="$FB_DEV" bs=1M skip="$FB_PATTERN_MIB" count=$((FB_PATTERN_LEN >> 20)) \
    iflag=direct status=none | cmp - "$FB_PATTERN" || fail "the LUN reads back something else"
}

# UNMAP through the whole stack: the kernel must see a LUN that supports
# discard (VPD B0/B2, READ CAPACITY(16) LBPME), and the file must shrink.
fb_discard() {
  fb_need_dev || return
  local d=${FB_DEV#/dev/} max mode before after off=$((160 << 20)) len=$((32 << 20))
  max=$(cat "/sys/block/$d/queue/discard_max_bytes" 2> /dev/null || echo "?")
  mode=$(cat /sys/block/"$d"/device/scsi_disk/*/provisioning_mode 2> /dev/null || echo "?")
  echo "discard_max_bytes=$max provisioning_mode=$mode"
  [[ "$max" =~ ^[1-9][0-9]*$ ]] ||
    fail "the LUN does not advertise unmap: discard_max_bytes=$max, provisioning_mode=$mode (needs LBPME in READ CAPACITY(16) and VPD B0/B2)" || return
  must "dd of 32 MiB at 160 MiB" dd if=/dev/urandom of="$FB_DEV" bs=1M seek=$((off >> 20)) \
    count=$((len >> 20)) oflag=direct conv=fsync status=none || return
  before=$(fb_allocated "$FB_IMG")
  must "blkdiscard" blkdiscard -o "$off" -l "$len" "$FB_DEV" || return
  after=$(fb_allocated "$FB_IMG")
  echo "allocated: $before -> $after bytes"
  ((after <= before - len * 3 / 4)) ||
    fail "discarding $len bytes freed only $((before - after)) bytes ($before -> $after)" || return
  timeout 60 dd if="$FB_DEV" bs=1M skip=$((off >> 20)) count=$((len >> 20)) iflag=direct status=none |
    cmp -n "$len" - /dev/zero || fail "discarded blocks do not read as zeros" || return
  # The pattern next to it is intact.
  timeout 60 dd if="$FB_DEV" bs=1M skip="$FB_PATTERN_MIB" count=$((FB_PATTERN_LEN >> 20)) \
    iflag=direct status=none | cmp - "$FB_PATTERN" || fail "blkdiscard damaged data outside its range"
}

# GET LBA STATUS follows the file's holes: the discarded range is
# deallocated, the pattern mapped.
fb_lba_status() {
  fb_need_dev || return
  local lba status
  for lba in $(((160 << 20) / 512)):1 $(((FB_PATTERN_MIB << 20) / 512)):0; do
    status=$(timeout 60 sg_get_lba_status -bb --lba="${lba%:*}" "$FB_DEV" 2>&1) ||
      fail "sg_get_lba_status --lba=${lba%:*} exited $?: $(tail -n1 <<< "$status")" || return
    echo "LBA ${lba%:*}: provisioning status $status"
    [[ "$status" == "${lba#*:}" ]] ||
      fail "LBA ${lba%:*}: provisioning status '$status', want ${lba#*:} (0 mapped, 1 deallocated)" || return
  done
}

# After tcmu-serve has stopped, the file holds exactly what was written.
fb_file_holds_data() {
  [[ -s "$FB_PATTERN" ]] || fail "skipped: no pattern written" || return
  local size
  size=$(stat -c %s "$FB_IMG")
  ((size == FB_SIZE)) || fail "$FB_IMG is now $size bytes, want $FB_SIZE" || return
  cmp -n "$FB_PATTERN_LEN" -i "0:$((FB_PATTERN_MIB << 20))" "$FB_PATTERN" "$FB_IMG" ||
    fail "the pattern is not at byte $((FB_PATTERN_MIB << 20)) of $FB_IMG"
}

# Without --create and --size: the existing file, at its own size.
fb_reopen() {
  [[ -s "$FB_PATTERN" ]] || fail "skipped: no pattern written" || return
  fb_serve reopen --backend "file:$FB_IMG" --name "$FB_NAME" || return
  fb_readcap "$FB_BLOCKS" || return
  timeout 60 dd if="$FB_DEV" bs=1M skip="$FB_PATTERN_MIB" count=$((FB_PATTERN_LEN >> 20)) \
    iflag=direct status=none | cmp - "$FB_PATTERN" || fail "the reopened LUN lost the pattern" || return
  fb_stop
}

fb_read_only() {
  [[ -s "$FB_PATTERN" ]] || fail "skipped: no pattern written" || return
  fb_serve ro --backend "file:$FB_IMG" --read-only --name "$FB_NAME" || return
  local ro out sg lba=$(((FB_PATTERN_MIB << 20) / 512)) cdb
  ro=$(timeout 30 blockdev --getro "$FB_DEV") || fail "blockdev --getro failed" || return
  [[ "$ro" == 1 ]] || fail "the kernel sees the LUN writable (blockdev --getro = $ro)" || return
  if timeout 60 dd if=/dev/zero of="$FB_DEV" bs=1M seek="$FB_PATTERN_MIB" count=1 oflag=direct status=none; then
    fail "dd to the read-only LUN succeeded"
    return
  fi
  # Past the kernel's own check (through the SCSI generic node, which
  # ignores the disk's read-only flag): a raw WRITE(10) of one block must
  # get DATA PROTECT from the LUN itself.
  for sg in /sys/block/"${FB_DEV#/dev/}"/device/scsi_generic/*; do sg=${sg##*/}; done
  [[ -c "/dev/$sg" ]] || fail "no SCSI generic node for $FB_DEV" || return
  read -ra cdb <<< "2a 00 $(printf '%02x %02x %02x %02x' $((lba >> 24 & 255)) $((lba >> 16 & 255)) \
    $((lba >> 8 & 255)) $((lba & 255))) 00 00 01 00"
  out=$(timeout 60 sg_raw -v -s 512 -i /dev/zero "/dev/$sg" "${cdb[@]}" 2>&1)
  echo "sg_raw WRITE(10) on /dev/$sg: $out"
  grep -qi 'data protect' <<< "$out" || fail "WRITE(10) was not refused with DATA PROTECT: $(tail -n1 <<< "$out")" || return
  timeout 60 dd if="$FB_DEV" bs=1M skip="$FB_PATTERN_MIB" count=$((FB_PATTERN_LEN >> 20)) \
    iflag=direct status=none | cmp - "$FB_PATTERN" || fail "reads of the read-only LUN are wrong" || return
  fb_stop || return
  cmp -n "$FB_PATTERN_LEN" -i "0:$((FB_PATTERN_MIB << 20))" "$FB_PATTERN" "$FB_IMG" ||
    fail "the read-only LUN changed the file"
}

fb_fault() {
  [[ -f "$FB_IMG" ]] || fail "skipped: no image" || return
  fb_serve fault --backend "file:$FB_IMG" --inject-fault "read:$FB_BAD_LBA" --name "$FB_NAME" || return
  local lines new problems unexpected
  lines=$(dmesg | wc -l)
  problems=$(klog_problems | wc -l)
  if timeout 60 dd if="$FB_DEV" of=/dev/null bs=512 skip="$FB_BAD_LBA" count=1 iflag=direct status=none; then
    fail "reading the faulty LBA $FB_BAD_LBA succeeded"
    return
  fi
  new=$(dmesg | tail -n +$((lines + 1)))
  echo "$new"
  grep -qi 'medium error' <<< "$new" || fail "no MEDIUM ERROR sense in dmesg: $(tail -n1 <<< "$new")" || return
  # The LUN stays usable: its neighbours and the rest of the disk read fine.
  must "read of LBA $((FB_BAD_LBA - 1))" dd if="$FB_DEV" of=/dev/null bs=512 skip=$((FB_BAD_LBA - 1)) \
    count=1 iflag=direct status=none || return
  must "read of LBA $((FB_BAD_LBA + 1))" dd if="$FB_DEV" of=/dev/null bs=512 skip=$((FB_BAD_LBA + 1)) \
    count=1 iflag=direct status=none || return
  timeout 60 dd if="$FB_DEV" bs=1M skip="$FB_PATTERN_MIB" count=$((FB_PATTERN_LEN >> 20)) \
    iflag=direct status=none | cmp - "$FB_PATTERN" || fail "reads after the fault are wrong" || return
  timeout 60 sg_inq "$FB_DEV" > /dev/null || fail "no INQUIRY answer after the fault" || return
  fb_stop || return
  # The fault's own errors are expected; anything else is a problem.
  unexpected=$(klog_problems | tail -n +$((problems + 1)) | grep -Eiv "$FB_FAULT_LOG_RE")
  [[ -z "$unexpected" ]] || fail "unexpected kernel warnings/errors: $(head -n1 <<< "$unexpected")" || return
  # Earlier problems were reported by the step before this one.
  # shellcheck disable=SC2034 # lib.sh's klog_clean reads it
  KLOG_BASE=$(klog_problems | wc -l)
}

# fb_neg REGEX ARGS...: disk-suite's neg_cli (one stderr line matching
# REGEX, no ready line, configfs untouched), numbering the outputs.
FB_NEG=0
fb_neg() {
  FB_NEG=$((FB_NEG + 1))
  neg_cli "$VM_RUN/tcmu-serve-file-neg$FB_NEG" "$@"
}

fb_reject() {
  fb_neg 'does not exist.*--create' --backend file:/tmp/fb-missing.img --name neg-f1 || return
  [[ ! -e /tmp/fb-missing.img ]] || fail "a missing file was created without --create" || return
  fb_neg 'mismatch.*268435456.*536870912' --backend "file:$FB_IMG" --size 512MiB --name neg-f2 || return
  fb_neg 'needs a path' --backend file: --size 1MiB --name neg-f3 || return
  fb_neg 'unknown backend "x"' --backend x --size 1MiB --name neg-f4 || return
  fb_neg 'create needs --size' --backend file:/tmp/fb-missing.img --create --name neg-f5 || return
  fb_neg 'inject-fault' --backend "file:$FB_IMG" --inject-fault "trim:1" --name neg-f6 || return
  fb_neg 'beyond the end' --backend "file:$FB_IMG" --inject-fault "read:$FB_BLOCKS" --name neg-f7 || return
  local size
  size=$(stat -c %s "$FB_IMG")
  ((size == FB_SIZE)) || fail "a refused start changed $FB_IMG to $size bytes"
}

# A block device as the backing store, with O_DIRECT: a loop device over a
# file in /dev/shm (a real tmpfs).
fb_block_device() {
  local img=/dev/shm/fb-loop.img pat=/dev/shm/fb-loop-pattern loop rc=0
  modprobe loop 2> /dev/null || true
  rm -f "$img"
  truncate -s 64M "$img" || fail "truncate failed" || return
  timeout 60 head -c $((1 << 20)) /dev/urandom > "$pat" || fail "cannot make the pattern" || return
  loop=$(timeout 30 losetup --find --show "$img") || fail "losetup failed" || return
  echo "loop device $loop"
  fb_block_device_check "$loop" "$pat" || rc=1
  fb_kill_leftover
  losetup -d "$loop"
  rm -f "$img" "$pat"
  return "$rc"
}

fb_block_device_check() {
  local loop=$1 pat=$2
  fb_serve blockdev --backend "file:$loop" --direct --name "$FB_NAME" || return
  fb_readcap $((64 << 20 >> 9)) || return
  must "dd to the LUN" dd if="$pat" of="$FB_DEV" bs=1M seek=8 oflag=direct conv=fsync status=none || return
  # Served devices are held exclusively: a second server is refused.
  fb_neg 'busy' --backend "file:$loop" --name neg-b1 || return
  fb_stop || return
  cmp -n $((1 << 20)) -i "0:$((8 << 20))" "$pat" "$loop" || fail "the loop device does not hold the pattern at 8 MiB"
}

fb_cleanup() {
  fb_kill_leftover
  rm -f "$FB_IMG" "$FB_PATTERN" "/tmp/$FB_NAME.sha256"
  return 0
}

step file_start_create fb_start
step file_inquiry_vpd fb_inquiry
step file_readcap16_256MiB fb_readcap "$FB_BLOCKS"
step file_mode_sense_wce fb_modes
step file_ext4_write_fsck_verify fb_ext4
step file_fio_randwrite_verify fb_fio
step file_write_pattern_direct fb_write_pattern
step file_blkdiscard_punches_holes fb_discard
step file_get_lba_status fb_lba_status
step file_sigterm_teardown fb_stop
step file_holds_written_data fb_file_holds_data
step file_reopen_without_size fb_reopen
step file_read_only fb_read_only
step file_kernel_log_clean_before_fault klog_clean
step file_inject_read_fault fb_fault
step file_reject_bad_specs fb_reject
step file_block_device_backend fb_block_device
step file_kernel_log_clean klog_clean
step file_cleanup fb_cleanup
