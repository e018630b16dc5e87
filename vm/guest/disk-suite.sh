# shellcheck shell=bash
# The disk checks every backend must pass (sourced by test files inside the
# VM; helpers: vm/guest/lib.sh): start tcmu-serve, sg3_utils against the
# LUN, ext4 with checksums, fio with verification, a second instance with
# the same name refused, clean teardown on SIGTERM.
#
# A test file sets SK_NAME, SK_SERVE_ARGS (tcmu-serve arguments but --name),
# SK_BLOCKS (expected 512-byte blocks), then calls `disk_suite PREFIX`; step
# names get PREFIX in front.

SK_NAME=${SK_NAME:-skeleton0}
SK_BLOCKS=${SK_BLOCKS:-1048576}
SK_SERVE_ARGS=(--backend mem --size 512MiB)
SK_MNT=/mnt/disk-suite
SK_DEV=""
SK_PID=""
SK_OUT=""

sk_need_dev() {
  [[ -n "$SK_DEV" ]] || fail "skipped: tcmu-serve never became ready"
}

sk_start() {
  local left
  left=$(cfs_leftovers)
  [[ -z "$left" ]] || fail "configfs not clean before start: $left" || return
  serve_start "$SK_OUT" "${SK_SERVE_ARGS[@]}" --name "$SK_NAME"
  local rc=$?
  # Still running (even if not ready): the teardown step will stop it.
  if [[ -n "$SERVE_PID" ]] && kill -0 "$SERVE_PID" 2> /dev/null; then SK_PID=$SERVE_PID; fi
  ((rc == 0)) || return 1
  [[ "$READY" == /dev/* ]] || fail "ready line names '$READY', not a /dev node" || return
  [[ -b "$READY" ]] || fail "$READY is not a block device" || return
  SK_DEV=$READY
  compgen -G "$CFS/core/user_*/$SK_NAME" > /dev/null ||
    fail "no TCMU backstore $CFS/core/user_*/$SK_NAME" || return
  # The kernel names the ring's UIO device tcm-user/<hba>/<name>/<config>.
  cat /sys/class/uio/uio*/name 2> /dev/null
  grep -qs "^tcm-user/[0-9]*/$SK_NAME/" /sys/class/uio/uio*/name ||
    fail "no TCMU UIO device for $SK_NAME" || return
  ls -l "$SK_DEV"
  cat "/sys/block/${SK_DEV#/dev/}/device/vendor" "/sys/block/${SK_DEV#/dev/}/device/model" 2> /dev/null
}

sk_inquiry() {
  sk_need_dev || return
  local out
  out=$(timeout 60 sg_inq "$SK_DEV" 2>&1) || fail "sg_inq exited $?: $(tail -n1 <<< "$out")" || return
  echo "$out"
  grep -q 'Peripheral device type: disk' <<< "$out" || fail "peripheral device type is not disk"
}

sk_vpd_00() {
  sk_need_dev || return
  local out p
  out=$(timeout 60 sg_inq -p 0x00 "$SK_DEV" 2>&1) || fail "sg_inq -p 0x00 exited $?: $(tail -n1 <<< "$out")" || return
  echo "$out"
  for p in 0x80 0x83; do
    grep -Eq "^[[:space:]]+${p}[[:space:]]" <<< "$out" || fail "page $p not listed as supported" || return
  done
}

sk_vpd_80() {
  sk_need_dev || return
  local out serial
  out=$(timeout 60 sg_inq -p 0x80 "$SK_DEV" 2>&1) || fail "sg_inq -p 0x80 exited $?: $(tail -n1 <<< "$out")" || return
  echo "$out"
  serial=$(sed -n 's/^[[:space:]]*Unit serial number:[[:space:]]*//p' <<< "$out" | head -n1)
  [[ -n "${serial// /}" ]] || fail "empty unit serial number"
}

sk_vpd_83() {
  sk_need_dev || return
  local out
  out=$(timeout 60 sg_inq -p 0x83 "$SK_DEV" 2>&1) || fail "sg_inq -p 0x83 exited $?: $(tail -n1 <<< "$out")" || return
  echo "$out"
  grep -q 'designator_type' <<< "$out" || fail "no designation descriptor"
}

sk_readcap() {
  sk_need_dev || return
  local out
  out=$(timeout 60 sg_readcap --16 "$SK_DEV" 2>&1) || fail "sg_readcap --16 exited $?: $(tail -n1 <<< "$out")" || return
  echo "$out"
  grep -q "Number of logical blocks=$SK_BLOCKS\$" <<< "$out" ||
    fail "want $SK_BLOCKS blocks, got: $(grep -o 'Number of logical blocks=[0-9]*' <<< "$out")" || return
  grep -q 'Logical block length=512 bytes' <<< "$out" ||
    fail "want 512-byte blocks, got: $(grep -o 'Logical block length=.*' <<< "$out")"
}

sk_modes() {
  sk_need_dev || return
  local out
  out=$(timeout 60 sg_modes -a "$SK_DEV" 2>&1) || fail "sg_modes -a exited $?: $(tail -n1 <<< "$out")" || return
  echo "$out"
  out=$(timeout 60 sg_modes -p 0x08 "$SK_DEV" 2>&1) || fail "sg_modes -p 0x08 exited $?: $(tail -n1 <<< "$out")" || return
  echo "$out"
  grep -q 'Caching' <<< "$out" || fail "no caching mode page (0x08)"
}

# Flush the block device's and the page cache so the next read really goes
# through tcmu-serve instead of being served from guest memory.
sk_drop_caches() {
  sync
  timeout 60 blockdev --flushbufs "$SK_DEV" || true
  echo 3 > /proc/sys/vm/drop_caches
}

sk_mkfs() {
  sk_need_dev || return
  if mountpoint -q "$SK_MNT"; then must "umount" umount "$SK_MNT" || return; fi
  must "mkfs.ext4" mkfs.ext4 -F -q "$SK_DEV"
}

# sk_random_file PATH BYTES: a file of random data on the mounted fs.
sk_random_file() {
  timeout 60 head -c "$2" /dev/urandom > "$SK_MNT/$1" || fail "writing $1 failed"
}

sk_write() {
  sk_need_dev || return
  local i
  mkdir -p "$SK_MNT"
  must "mount" mount -t ext4 "$SK_DEV" "$SK_MNT" || return
  # A few MiB of random data in files of awkward sizes.
  mkdir -p "$SK_MNT/dir" || fail "mkdir on the mounted fs failed" || return
  sk_random_file one-mib $((1 << 20)) || return
  sk_random_file three-mib $((3 << 20)) || return
  sk_random_file odd-size 777777 || return
  for i in $(seq 1 16); do
    sk_random_file "dir/small-$i" $((4096 * i + 1)) || return
  done
  (cd "$SK_MNT" && find . -type f ! -path './lost+found/*' -print0 | sort -z | xargs -0 sha256sum) > "/tmp/$SK_NAME.sha256" ||
    fail "sha256sum failed" || return
  echo "$(wc -l < "/tmp/$SK_NAME.sha256") files, $(du -sh "$SK_MNT" | cut -f1)"
  must "umount after write" umount "$SK_MNT" || return
  sk_drop_caches
}

sk_fsck() {
  sk_need_dev || return
  if mountpoint -q "$SK_MNT"; then must "umount" umount "$SK_MNT" || return; fi
  must "e2fsck -fn reports problems" e2fsck -fn "$SK_DEV"
}

sk_verify() {
  sk_need_dev || return
  [[ -s "/tmp/$SK_NAME.sha256" ]] || fail "skipped: no checksums recorded" || return
  mountpoint -q "$SK_MNT" || must "remount" mount -t ext4 "$SK_DEV" "$SK_MNT" || return
  local bad rc=0
  bad=$(cd "$SK_MNT" && timeout 120 sha256sum -c --quiet "/tmp/$SK_NAME.sha256" 2>&1) || rc=$?
  echo "$bad"
  must "umount after verify" umount "$SK_MNT" || return
  ((rc == 0)) || fail "checksum mismatch: $(head -n1 <<< "$bad")"
}

# sk_fio: fio with verification over the first SK_FIO_SIZE (128M) bytes.
sk_fio() {
  sk_need_dev || return
  local report=fio-verify-$SK_NAME.txt
  # verify_fatal: stop at the first bad block; fio then exits non-zero.
  CMD_TIMEOUT=300 must "fio verify failed, see $report" \
    "${FIO_VERIFY[@]}" --name=verify --filename="$SK_DEV" --iodepth=16 --size="${SK_FIO_SIZE:-128M}" \
    --output="$VM_RUN/$report" || return
  cat "$VM_RUN/$report"
  ! grep -qiE 'verify: bad|crc32c: verify failed|err= *[1-9]' "$VM_RUN/$report" ||
    fail "fio reported errors, see $report"
}

# A second instance with the name in use must fail cleanly and must not
# disturb the first one (no teardown of objects it did not create).
sk_name_taken() {
  sk_need_dev || return
  neg_cli "$SK_OUT-dup" 'exist|taken|in use|busy|already' "${SK_SERVE_ARGS[@]}" --name "$SK_NAME" || return
  kill -0 "$SK_PID" 2> /dev/null || fail "first instance died" || return
  compgen -G "$CFS/core/user_*/$SK_NAME" > /dev/null || fail "first instance's backstore is gone" || return
  [[ $(find "$CFS/loopback" -mindepth 1 -maxdepth 1 -type d ! -name discovery_auth | wc -l) == 1 ]] ||
    fail "expected exactly 1 tcm_loop target: $(cfs_leftovers | tr '\n' ' ')" || return
  timeout 60 sg_inq "$SK_DEV" > /dev/null || fail "first instance's disk stopped answering INQUIRY"
}

# Runs whenever tcmu-serve was started, even if its disk never showed up.
sk_sigterm() {
  [[ -n "$SK_PID" ]] || fail "skipped: no tcmu-serve left running by the start step" || return
  if mountpoint -q "$SK_MNT"; then umount "$SK_MNT"; fi
  serve_stop "$SK_PID" TERM 30 || fail "still running 30s after SIGTERM" || return
  ((SERVE_RC == 0)) || fail "exit status $SERVE_RC after SIGTERM: $(stderr_tail "$SK_OUT.stderr")" || return
  local left
  left=$(cfs_leftovers)
  [[ -z "$left" ]] || fail "configfs not clean: $(tr '\n' ' ' <<< "$left")" || return
  if [[ -n "$SK_DEV" ]]; then
    wait_gone "$SK_DEV" 10 || fail "$SK_DEV still exists 10s after exit" || return
  fi
  ! grep -q 'panicked' "$SK_OUT.stderr" || fail "tcmu-serve panicked: $(grep -m1 panicked "$SK_OUT.stderr")"
}

# neg_cli OUT_PREFIX REGEX ARGS...: `tcmu-serve ARGS` must exit non-zero
# within 10 s, print exactly one stderr line matching REGEX (case-insensitive)
# and leave configfs as clean as it found it. $NEG_RUNNER prefixes the
# command (e.g. setpriv).
NEG_RUNNER=()
neg_cli() {
  local out=$1 re=$2 rc=0 before after lines
  shift 2
  [[ -x "$TCMU_SERVE" ]] || fail "no executable $TCMU_SERVE" || return
  before=$(cfs_leftovers)
  echo "+ ${NEG_RUNNER[*]} $TCMU_SERVE $*"
  timeout -k 2 10 "${NEG_RUNNER[@]}" "$TCMU_SERVE" "$@" > "$out.stdout" 2> "$out.stderr" < /dev/null || rc=$?
  echo "exit $rc; stderr:"
  cat "$out.stderr"
  ((rc == 124 || rc == 137)) && { fail "still running after 10s"; return; }
  ((rc != 0)) || fail "exited 0" || return
  lines=$(grep -c '' "$out.stderr")
  ((lines == 1)) || fail "want 1 stderr line, got $lines: $(stderr_tail "$out.stderr")" || return
  grep -Eqi "$re" "$out.stderr" || fail "stderr does not name the problem (/$re/): $(cat "$out.stderr")" || return
  ! grep -q '^ready:' "$out.stdout" || fail "printed a ready line" || return
  after=$(cfs_leftovers)
  [[ "$after" == "$before" ]] || fail "configfs changed: $(tr '\n' ' ' <<< "$after")"
}

# disk_suite PREFIX: every generic step, in order.
disk_suite() {
  local p=$1
  SK_DEV="" SK_PID="" SK_OUT=$VM_RUN/tcmu-serve-$SK_NAME
  step "${p}start" sk_start
  step "${p}inquiry" sk_inquiry
  step "${p}vpd_0x00" sk_vpd_00
  step "${p}vpd_0x80_serial" sk_vpd_80
  step "${p}vpd_0x83" sk_vpd_83
  step "${p}readcap16" sk_readcap
  step "${p}mode_sense" sk_modes
  step "${p}ext4_mkfs" sk_mkfs
  step "${p}ext4_write" sk_write
  step "${p}ext4_fsck_clean" sk_fsck
  step "${p}ext4_remount_verify" sk_verify
  step "${p}fio_randwrite_verify" sk_fio
  step "${p}reject_name_taken" sk_name_taken
  step "${p}sigterm_teardown" sk_sigterm
}
