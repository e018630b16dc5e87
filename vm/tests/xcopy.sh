# shellcheck shell=bash
# EXTENDED COPY between two LUNs of one process (the two_disks example,
# which shares a CopyRegistry between them): sg_xcopy finds both disks by
# their VPD page 83h NAA designators and the copy runs inside the server.
# Sourced by vm/guest/suite (helpers: vm/guest/lib.sh).

XC_EXAMPLES_DIR=${EXAMPLES_DIR:-$REPO_ROOT/target/release/examples}
XC_TMP=/tmp/xcopy-test
XC_PID=""
XC_A=""
XC_B=""

xc_need() {
  [[ -n "$XC_A" && -n "$XC_B" ]] || fail "skipped: two_disks never became ready"
}

xc_start() {
  local TCMU_SERVE=$XC_EXAMPLES_DIR/two_disks left
  mkdir -p "$XC_TMP"
  left=$(cfs_leftovers)
  [[ -z "$left" ]] || fail "configfs not clean before start: $(tr '\n' ' ' <<< "$left")" || return
  [[ -x "$TCMU_SERVE" ]] || fail "example two_disks not built ($TCMU_SERVE)" || return
  serve_start "$VM_RUN/example-two_disks" || return
  XC_PID=$SERVE_PID
  local devs
  read -ra devs <<< "$READY"
  ((${#devs[@]} == 2)) || fail "expected two disks, got '$READY'" || return
  [[ -b "${devs[0]}" && -b "${devs[1]}" ]] || fail "not block devices: $READY" || return
  [[ "${devs[0]}" != "${devs[1]}" ]] || fail "the same disk twice: $READY" || return
  XC_A=${devs[0]} XC_B=${devs[1]}
}

# xc_3pc DEV: standard INQUIRY data reports 3PC=1.
xc_3pc() {
  local out
  out=$(timeout 60 sg_inq "$1" 2>&1) || fail "sg_inq $1 failed: $out" || return
  grep -q '3PC=1' <<< "$out" || fail "$1 does not report 3PC=1: $(grep -o '3PC=[0-9]' <<< "$out")"
}

xc_inquiry() {
  xc_need || return
  xc_3pc "$XC_A" || return
  xc_3pc "$XC_B"
}

# xc_sg DEV: the sg node of disk DEV (sg_xcopy wants sg devices; without
# udev the node may be missing, so it is made from sysfs).
xc_sg() {
  local sys name
  sys=$(echo /sys/block/"${1#/dev/}"/device/scsi_generic/sg*)
  [[ -d "$sys" ]] || return 1
  name=${sys##*/}
  if [[ ! -c /dev/$name ]]; then
    local mm
    mm=$(< "/sys/class/scsi_generic/$name/dev") || return 1
    mknod "/dev/$name" c "${mm%%:*}" "${mm##*:}" || return 1
  fi
  echo "/dev/$name"
}

# xc_copy BLOCKS SKIP SEEK [ARGS...]: a random pattern at SKIP on the first
# disk, sg_xcopy to SEEK on the second, and the second disk's blocks
# compared with the pattern (direct I/O, no page cache).
xc_copy() {
  local blocks=$1 skip=$2 seek=$3
  shift 3
  xc_need || return
  local sg_a sg_b
  sg_a=$(xc_sg "$XC_A") || fail "no sg device for $XC_A" || return
  sg_b=$(xc_sg "$XC_B") || fail "no sg device for $XC_B" || return
  head -c $((blocks * 512)) /dev/urandom > "$XC_TMP/pattern"
  # Large dd blocks: one 512-byte direct write per block is slow in a VM.
  must "write the pattern" timeout 60 dd if="$XC_TMP/pattern" of="$XC_A" bs=64k \
    seek=$((skip * 512)) oflag=direct,seek_bytes status=none || return
  must "sg_xcopy" timeout 120 sg_xcopy if="$sg_a" of="$sg_b" bs=512 count="$blocks" \
    skip="$skip" seek="$seek" "$@" || return
  must "read the copy" timeout 60 dd if="$XC_B" of="$XC_TMP/copy" bs=64k skip=$((seek * 512)) \
    count=$((blocks * 512)) iflag=direct,skip_bytes,count_bytes status=none || return
  cmp -s "$XC_TMP/pattern" "$XC_TMP/copy" || fail "the copy differs from the pattern"
}

xc_copy_whole() {
  xc_copy 8192 0 0
}

# Offsets, a transfer size that does not divide the count, and the
# command sent to the destination instead of the source.
xc_copy_offsets() {
  xc_copy 1000 1024 20000 bpt=300 --on_dst || return
  # Blocks before the destination range are untouched by the last copy.
  must "read before the copy" timeout 60 dd if="$XC_B" of="$XC_TMP/before" bs=512 skip=19992 \
    count=8 iflag=direct status=none || return
  cmp -s "$XC_TMP/before" <(head -c 4096 /dev/zero) || fail "blocks before the destination changed"
}

# Past the end of the destination: refused, nothing written.
xc_copy_out_of_range() {
  xc_need || return
  local out
  [[ $(xc_list "$XC_A" "$XC_B" 0 | wc -c) == 108 ]] || fail "bad parameter list: NAA '$(xc_naa "$XC_A")'" || return
  if out=$(timeout 60 sg_raw -s 108 "$XC_B" 83 00 00 00 00 00 00 00 00 00 00 00 00 6c 00 00 \
    < <(xc_list "$XC_A" "$XC_B" 131070) 2>&1); then
    fail "EXTENDED COPY past the end succeeded: $out" || return
  fi
  # COPY ABORTED with no additional sense code: the answer libiscsi's
  # conformance suite accepts for a segment beyond a unit's capacity.
  grep -qi 'copy aborted' <<< "$out" || fail "expected COPY ABORTED: $out" || return
  grep -qi 'no additional sense' <<< "$out" || fail "expected NO ADDITIONAL SENSE INFORMATION: $out"
}

# xc_naa DEV: the 8-byte NAA designator of VPD page 83h, as hex pairs.
xc_naa() {
  local b i len
  read -ra b <<< "$(timeout 60 sg_vpd -p di -r "$1" 2> /dev/null | od -An -tx1 -v)"
  for ((i = 4; i + 3 < ${#b[@]}; i += 4 + len)); do
    len=$((16#${b[i + 3]}))
    if [[ ${b[i + 1]} == 03 ]] && ((len == 8)); then
      echo "${b[*]:i+4:8}"
      return
    fi
  done
}

# xc_list SRC DST DST_LBA: an EXTENDED COPY(LID1) parameter list (108
# bytes, binary) copying 4 blocks from LBA 0 of SRC to DST_LBA of DST.
xc_list() {
  local src dst lba
  src=$(xc_naa "$1") dst=$(xc_naa "$2")
  lba=$(printf '%016x' "$3" | sed 's/../& /g')
  {
    echo "00 18 00 40 00 00 00 00 00 00 00 1c 00 00 00 00"
    echo "e4 00 00 00 01 03 00 08 $src 00 00 00 00 00 00 00 00 00 00 00 00 00 00 02 00"
    echo "e4 00 00 00 01 03 00 08 $dst 00 00 00 00 00 00 00 00 00 00 00 00 00 00 02 00"
    echo "02 00 00 18 00 00 00 01 00 00 00 04 00 00 00 00 00 00 00 00 $lba"
  } | xxd -r -p
}

xc_stop() {
  [[ -n "$XC_PID" ]] || return 0
  serve_stop_clean "$XC_PID" "$VM_RUN/example-two_disks.stderr" || fail "two_disks: $STEP_REASON"
}

step xcopy_start xc_start
step xcopy_3pc_bit xc_inquiry
step xcopy_sg_xcopy_4MiB xc_copy_whole
step xcopy_sg_xcopy_offsets xc_copy_offsets
step xcopy_out_of_range xc_copy_out_of_range
step xcopy_stop xc_stop
