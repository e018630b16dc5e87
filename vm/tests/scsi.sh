# shellcheck shell=bash
# SCSI conformance tests: the commands beyond plain READ/WRITE, driven with
# sg3-utils through the real kernel (TCMU ring, tcm_loop, sd/sg) against a
# 256 MiB RAM disk. VPD pages and their decoding, READ CAPACITY(16),
# MODE SENSE/SELECT (WCE and D_SENSE), REPORT SUPPORTED OPERATION CODES and
# task management functions, UNMAP, WRITE SAME, COMPARE AND WRITE, VERIFY,
# SYNCHRONIZE CACHE, START STOP UNIT and discard. Thin provisioning steps
# follow what the LUN advertises in VPD page B2h: with LBPU they check that
# unmapped blocks read as zeros, without it that UNMAP is refused.
# Sourced by vm/guest/suite (helpers: vm/guest/lib.sh).

SC_NAME=scsi
SC_BLOCKS=524288 # 256 MiB in 512-byte blocks
SC_OUT=$VM_RUN/tcmu-serve-scsi
SC_TMP=/tmp/scsi-test
SC_DEV=""
SC_DISK=""
SC_PID=""
# dmesg lines before this disk attached.
SC_DMESG_FROM=0
# From VPD page B2h: UNMAP supported, unmapped blocks read as zeros.
SC_LBPU=0
SC_LBPRZ=0

sc_need_dev() {
  [[ -n "$SC_DEV" ]] || fail "skipped: tcmu-serve never became ready"
}

# sc_bytes LEN CDB...: the data-in of one raw CDB as hex bytes, one line.
sc_bytes() {
  local len=$1
  shift
  timeout 60 sg_raw -b -r "$len" "$SC_DEV" "$@" 2> /dev/null | od -An -tx1 -v | tr -s ' \n' ' ' | sed 's/^ //; s/ $//'
}

# sc_byte N LEN CDB...: byte N (from 0) of that data-in, in hex.
sc_byte() {
  local n=$1 bytes
  shift
  read -ra bytes <<< "$(sc_bytes "$@")"
  echo "${bytes[$n]:-none}"
}

# sc_sense LEN CDB...: run a CDB (LEN bytes of data-in, 0 for none) that
# should fail; prints what sg_raw says about the status and sense data.
sc_sense() {
  local len=$1 r=()
  shift
  ((len == 0)) || r=(-r "$len")
  timeout 60 sg_raw "${r[@]}" "$SC_DEV" "$@" 2>&1 || true
}

# sc_write_file FILE LBA: write FILE (whole blocks) at LBA, bypassing the
# page cache.
sc_write_file() {
  timeout 60 dd if="$1" of="$SC_DEV" bs=512 seek="$2" oflag=direct status=none
}

# sc_read_file FILE LBA COUNT: read COUNT blocks at LBA into FILE.
sc_read_file() {
  timeout 60 dd if="$SC_DEV" of="$1" bs=512 skip="$2" count="$3" iflag=direct status=none
}

# sc_pattern FILE BLOCKS: BLOCKS blocks of random data.
sc_pattern() {
  head -c $(($2 * 512)) /dev/urandom > "$1"
}

# sc_expect_zeros LBA COUNT: the blocks read back as zeros.
sc_expect_zeros() {
  sc_read_file "$SC_TMP/zeros-check" "$1" "$2" || fail "reading LBA $1 failed" || return
  cmp -s "$SC_TMP/zeros-check" <(head -c $(($2 * 512)) /dev/zero) ||
    fail "LBA $1 +$2 does not read as zeros: $(od -An -tx1 -N16 "$SC_TMP/zeros-check")"
}

sc_start() {
  local left
  mkdir -p "$SC_TMP"
  left=$(cfs_leftovers)
  [[ -z "$left" ]] || fail "configfs not clean before start: $(tr '\n' ' ' <<< "$left")" || return
  # Only the messages from here on are checked.
  SC_DMESG_FROM=$(dmesg | wc -l)
  serve_start "$SC_OUT" --backend mem --size 256MiB --name "$SC_NAME" || return
  SC_PID=$SERVE_PID
  [[ "$READY" == /dev/* && -b "$READY" ]] || fail "ready line names '$READY', not a block device" || return
  SC_DEV=$READY
  SC_DISK=${SC_DEV#/dev/}
}

# The kernel's sd driver accepted everything it read while attaching the
# disk: no warning or error about it.
sc_attach_clean() {
  sc_need_dev || return
  local lines="" bad i
  # The probe may still be logging when the node appears.
  for ((i = 0; i < 100; i++)); do
    lines=$(dmesg -x | tail -n +$((SC_DMESG_FROM + 1)) | grep -F "[$SC_DISK]")
    grep -q 'Attached SCSI disk' <<< "$lines" && break
    sleep 0.1
  done
  echo "$lines"
  grep -q 'Attached SCSI disk' <<< "$lines" || fail "no 'Attached SCSI disk' for $SC_DISK in dmesg" || return
  bad=$(grep -E '^[a-z]+ *:(emerg|alert|crit|err|warn) *:' <<< "$lines")
  [[ -z "$bad" ]] || fail "sd warned: $(head -n1 <<< "$bad")" || return
  bad=$(grep -Ei 'fail|invalid|unsupported|not a multiple|PAGE_SIZE|assuming|sense key|unaligned|disabling|error' <<< "$lines")
  [[ -z "$bad" ]] || fail "sd complained: $(head -n1 <<< "$bad")"
}

sc_vpd_pages() {
  sc_need_dev || return
  local out p
  out=$(timeout 60 sg_inq -p 0x00 "$SC_DEV" 2>&1) || fail "sg_inq -p 0x00 exited $?" || return
  echo "$out"
  for p in 0x80 0x83 0x86 0xb0 0xb1 0xb2; do
    grep -Eiq "^[[:space:]]+${p}[[:space:]]" <<< "$out" || fail "page $p not listed as supported" || return
  done
  # Every page answers through both tools.
  for p in 0x00 0x80 0x83 0x86 0xb0 0xb1 0xb2; do
    out=$(timeout 60 sg_inq -p "$p" "$SC_DEV" 2>&1) || fail "sg_inq -p $p exited $?: $(tail -n1 <<< "$out")" || return
    echo "$out"
    out=$(timeout 60 sg_vpd -p "$p" "$SC_DEV" 2>&1) || fail "sg_vpd -p $p exited $?: $(tail -n1 <<< "$out")" || return
    echo "$out"
  done
  # The raw page list, in ascending order.
  out=$(sc_bytes 64 12 01 00 00 40 00)
  echo "page 00h: $out"
  [[ "$out" == "00 00 00 07 00 80 83 86 b0 b1 b2" ]] || fail "page 00h is '$out'"
}

sc_vpd_extended_inquiry() {
  sc_need_dev || return
  local out
  out=$(timeout 60 sg_vpd -p ei "$SC_DEV" 2>&1) || fail "sg_vpd -p ei exited $?" || return
  echo "$out"
  grep -Eq 'HEADSUP\)?[=:][[:space:]]*1' <<< "$out" || fail "HEADSUP not set" || return
  grep -Eq 'SIMPSUP\)?[=:][[:space:]]*1' <<< "$out" || fail "SIMPSUP not set" || return
  grep -Eq 'SPT\)?[=:][[:space:]]*0' <<< "$out" || fail "SPT not 0 (protection claimed)" || return
  grep -Eq '(^|[^_])V_SUP\)?[=:][[:space:]]*1' <<< "$out" || fail "V_SUP not set"
}

sc_vpd_block_limits() {
  sc_need_dev || return
  local out
  out=$(timeout 60 sg_vpd -p bl "$SC_DEV" 2>&1) || fail "sg_vpd -p bl exited $?" || return
  echo "$out"
  grep -Eiq 'maximum transfer length[^0-9]*2048' <<< "$out" || fail "maximum transfer length is not 2048 blocks (1 MiB)" || return
  grep -Eiq 'maximum compare and write length[^0-9]*16' <<< "$out" || fail "maximum compare and write length is not 16" || return
  grep -Eiq 'maximum write same length[^0-9]*0x[0-9a-f]*[1-9a-f]|maximum write same length[^0-9]*[1-9]' <<< "$out" ||
    fail "no maximum write same length" || return
  if ((SC_LBPU)); then
    grep -Eiq 'maximum unmap lba count[^0-9]*[1-9]' <<< "$out" || fail "LBPU but no maximum unmap LBA count"
  else
    grep -Eiq 'maximum unmap lba count[^0-9]*0' <<< "$out" || fail "no LBPU but a maximum unmap LBA count"
  fi
}

sc_vpd_characteristics() {
  sc_need_dev || return
  local out
  out=$(timeout 60 sg_vpd -p bdc "$SC_DEV" 2>&1) || fail "sg_vpd -p bdc exited $?" || return
  echo "$out"
  grep -qi 'non-rotating' <<< "$out" || fail "not reported as non-rotating" || return
  [[ "$(cat "/sys/block/$SC_DISK/queue/rotational")" == 0 ]] || fail "the kernel thinks the disk rotates"
}

sc_vpd_provisioning() {
  sc_need_dev || return
  local out b5
  out=$(timeout 60 sg_vpd -p lbpv "$SC_DEV" 2>&1) || fail "sg_vpd -p lbpv exited $?" || return
  echo "$out"
  b5=$(sc_byte 5 64 12 01 b2 00 40 00)
  SC_LBPU=$(((0x$b5 >> 7) & 1))
  SC_LBPRZ=$(((0x$b5 >> 2) & 1))
  info "scsi: LBPU=$SC_LBPU LBPRZ=$SC_LBPRZ"
  grep -Eq "LBPU\)?[=:][[:space:]]*$SC_LBPU" <<< "$out" || fail "sg_vpd decodes LBPU differently from byte 5 ($b5)" || return
  if ((SC_LBPU)); then
    grep -Eq 'LBPWS\)?[=:][[:space:]]*1' <<< "$out" || fail "LBPU without LBPWS" || return
    grep -Eiq 'provisioning type[^0-9]*2' <<< "$out" || fail "LBPU but not thin provisioned"
  else
    grep -Eiq 'provisioning type[^0-9]*0' <<< "$out" || fail "no LBPU but not fully provisioned"
  fi
}

sc_readcap_long() {
  sc_need_dev || return
  local out
  out=$(timeout 60 sg_readcap -l "$SC_DEV" 2>&1) || fail "sg_readcap -l exited $?" || return
  echo "$out"
  grep -q "Number of logical blocks=$SC_BLOCKS\$" <<< "$out" || fail "not $SC_BLOCKS blocks" || return
  # LBPME and LBPRZ agree with VPD page B2h.
  grep -q "lbpme=$SC_LBPU" <<< "$out" || fail "lbpme differs from LBPU=$SC_LBPU" || return
  grep -q "lbprz=$SC_LBPRZ" <<< "$out" || fail "lbprz differs from LBPRZ=$SC_LBPRZ"
}

sc_mode_pages() {
  sc_need_dev || return
  local out b
  out=$(timeout 60 sg_modes -a "$SC_DEV" 2>&1) || fail "sg_modes -a exited $?" || return
  echo "$out"
  grep -qi 'caching' <<< "$out" || fail "no caching page" || return
  grep -qi 'control' <<< "$out" || fail "no control page" || return
  out=$(timeout 60 sg_modes -c 1 -p 8 "$SC_DEV" 2>&1) || fail "sg_modes -c 1 -p 8 exited $?" || return
  echo "$out"
  # Changeable values: WCE (caching byte 2) and D_SENSE (control byte 2).
  b=$(sc_byte 6 64 1a 08 48 00 40 00)
  [[ "$b" == 04 ]] || fail "caching page changeable byte 2 is $b, want 04 (WCE)" || return
  b=$(sc_byte 6 64 1a 08 4a 00 40 00)
  [[ "$b" == 04 ]] || fail "control page changeable byte 2 is $b, want 04 (D_SENSE)"
}

# Caching page byte 2 (current) through MODE SENSE(6) with DBD.
sc_wce_byte() { sc_byte 6 64 1a 08 08 00 40 00; }

# sg_wr_mode takes bytes past the end of --mask from --contents (zeros), so
# the mask covers the whole page: only byte 2 bit 2 (WCE or D_SENSE) comes
# from the contents.
SC_MASK_CACHING=0,0,4$(printf ',0%.0s' {1..17})
SC_MASK_CONTROL=0,0,4$(printf ',0%.0s' {1..9})

sc_wce_toggle() {
  sc_need_dev || return
  local before after want
  before=$(sc_wce_byte)
  [[ "$before" == 0[04] ]] || fail "caching byte 2 is '$before'" || return
  if [[ "$before" == 04 ]]; then want=00; else want=04; fi
  must "sg_wr_mode WCE=$want" sg_wr_mode -p 8 -c "0,0,$want" -m "$SC_MASK_CACHING" "$SC_DEV" || return
  after=$(sc_wce_byte)
  [[ "$after" == "$want" ]] || fail "WCE byte is $after after writing $want" || return
  timeout 60 sg_modes -p 8 "$SC_DEV"
  # The 6-byte forms too, back to the original value.
  must "sg_wr_mode -6 WCE=$before" sg_wr_mode -6 -p 8 -c "0,0,$before" -m "$SC_MASK_CACHING" "$SC_DEV" || return
  after=$(sc_wce_byte)
  [[ "$after" == "$before" ]] || fail "WCE byte is $after after restoring $before" || return
  # Saving is not supported: MODE SELECT(6) with SP=1 is refused, pointing
  # at the SP bit (sg_wr_mode --save refuses by itself, as PS is 0).
  local out
  {
    printf '\x00\x00\x00\x00\x08\x12'
    printf '%b' "\\x$before"
  } > "$SC_TMP/caching"
  head -c 17 /dev/zero >> "$SC_TMP/caching"
  out=$(timeout 60 sg_raw -s 24 -i "$SC_TMP/caching" "$SC_DEV" 15 11 00 00 18 00 2>&1)
  echo "$out"
  grep -qi 'byte 1 bit 0' <<< "$out" || fail "MODE SELECT with SP=1 not refused at byte 1 bit 0" || return
  # The same list without SP is fine.
  must "MODE SELECT(6) without SP" sg_raw -s 24 -i "$SC_TMP/caching" "$SC_DEV" 15 10 00 00 18 00
}

sc_d_sense() {
  sc_need_dev || return
  local out
  # INQUIRY of VPD page 42h: INVALID FIELD IN CDB at byte 2 bit 7.
  out=$(sc_sense 255 12 01 42 00 ff 00)
  echo "$out"
  grep -qi 'fixed format' <<< "$out" || fail "sense is not in fixed format by default" || return
  grep -Eqi 'byte 2 bit 7' <<< "$out" || fail "no field pointer to byte 2 bit 7" || return
  must "sg_wr_mode D_SENSE=1" sg_wr_mode -v -p a -c 0,0,4 -m "$SC_MASK_CONTROL" "$SC_DEV" || return
  out=$(sc_sense 255 12 01 42 00 ff 00)
  echo "$out"
  grep -qi 'descriptor format' <<< "$out" || fail "D_SENSE=1 but sense not in descriptor format" || return
  grep -Eqi 'byte 2 bit 7' <<< "$out" || fail "no field pointer in descriptor sense" || return
  # A bit that is not changeable (QAM, byte 3) is refused, pointed at.
  out=$(timeout 60 sg_wr_mode -v -p a -c 0,0,0 -m 0,0,4 "$SC_DEV" 2>&1) && { fail "QAM change accepted"; return; }
  echo "$out"
  grep -Eqi 'invalid field in param' <<< "$out" || fail "QAM change: $(tail -n1 <<< "$out")" || return
  # Header 8 + block descriptor 8 + control page byte 3, QAM's top bit.
  grep -Eqi 'byte 19 bit 4' <<< "$out" || fail "QAM change not pointed at byte 19 bit 4" || return
  must "sg_wr_mode D_SENSE=0" sg_wr_mode -v -p a -c 0,0,0 -m "$SC_MASK_CONTROL" "$SC_DEV" || return
  out=$(sc_sense 255 12 01 42 00 ff 00)
  grep -qi 'fixed format' <<< "$out" || fail "D_SENSE=0 again but sense not in fixed format" || return
  # REQUEST SENSE follows its DESC bit.
  out=$(sc_bytes 252 03 01 00 00 fc 00)
  [[ "$out" == "72 00 00 00 00 00 00 00" ]] || fail "REQUEST SENSE DESC=1 returned '$out'" || return
  out=$(sc_bytes 252 03 00 00 00 fc 00)
  [[ "$out" == 70* ]] || fail "REQUEST SENSE DESC=0 returned '$out'"
}

sc_opcodes_all() {
  sc_need_dev || return
  local out name
  out=$(timeout 60 sg_opcodes "$SC_DEV" 2>&1) || fail "sg_opcodes exited $?: $(tail -n1 <<< "$out")" || return
  echo "$out"
  for name in 'compare and write' 'write same\(16\)' 'write same\(10\)' 'verify\(10\)' 'verify\(16\)' \
    'write and verify\(16\)' 'mode select\(10\)' 'start stop unit' 'synchronize cache\(16\)' \
    'read capacity\(16\)' 'report supported operation codes' 'report supported task management'; do
    grep -Eqi "$name" <<< "$out" || fail "'$name' not listed" || return
  done
  if ((SC_LBPU)); then
    grep -Eqi '^[[:space:]]*42[[:space:]]' <<< "$out" || fail "LBPU but UNMAP (42h) not listed"
  else
    ! grep -Eqi '^[[:space:]]*42[[:space:]]' <<< "$out" || fail "UNMAP listed without LBPU"
  fi
  out=$(timeout 60 sg_opcodes --rctd "$SC_DEV" 2>&1) || fail "sg_opcodes --rctd exited $?" || return
  echo "$out"
}

sc_opcodes_one() {
  sc_need_dev || return
  local out name
  out=$(timeout 60 sg_opcodes -o 0x89 "$SC_DEV" 2>&1) || fail "sg_opcodes -o 0x89 exited $?" || return
  echo "$out"
  grep -qi 'supported' <<< "$out" || fail "COMPARE AND WRITE not reported supported" || return
  grep -Eqi '89 f8 ff ff ff ff ff ff ff ff 00 00 00 ff 00 04' <<< "$out" || fail "unexpected usage data" || return
  out=$(timeout 60 sg_opcodes -o 0x9e,0x10 "$SC_DEV" 2>&1) || fail "sg_opcodes -o 0x9e,0x10 exited $?" || return
  echo "$out"
  grep -Eqi '9e 1f' <<< "$out" || fail "READ CAPACITY(16) usage data missing" || return
  out=$(timeout 60 sg_opcodes -o 0x04 "$SC_DEV" 2>&1) || true
  echo "$out"
  grep -qi 'not supported' <<< "$out" || fail "FORMAT UNIT not reported as not supported" || return
  out=$(timeout 60 sg_opcodes --tmf "$SC_DEV" 2>&1) || fail "sg_opcodes --tmf exited $?" || return
  echo "$out"
  for name in 'abort task$' 'abort task set' 'clear task set' 'logical unit reset'; do
    grep -Eqi "$name" <<< "$out" || fail "TMF '$name' not listed" || return
  done
}

# GET LBA STATUS is listed exactly when it works.
sc_get_lba_status() {
  sc_need_dev || return
  local listed=0 rc=0
  timeout 60 sg_opcodes -o 0x9e,0x12 "$SC_DEV" 2>&1 | grep -qi 'not supported' || listed=1
  timeout 60 sg_get_lba_status "$SC_DEV" || rc=$?
  info "scsi: GET LBA STATUS listed=$listed exit=$rc"
  if ((listed)); then
    ((rc == 0)) || fail "listed but sg_get_lba_status exited $rc"
  else
    ((rc != 0)) || fail "not listed but sg_get_lba_status succeeded"
  fi
}

sc_unmap() {
  sc_need_dev || return
  local out
  sc_pattern "$SC_TMP/p64" 64 || fail "pattern" || return
  sc_write_file "$SC_TMP/p64" 1000 || fail "writing the pattern failed" || return
  if ((SC_LBPU)); then
    must "sg_unmap" sg_unmap --force --lba=1000,1040 --num=20,24 "$SC_DEV" || return
    if ((SC_LBPRZ)); then
      sc_expect_zeros 1000 20 || return
      sc_expect_zeros 1040 24 || return
    fi
    # Blocks 1020..1039 were not unmapped.
    sc_read_file "$SC_TMP/back" 1020 20 || fail "read back failed" || return
    cmp -s "$SC_TMP/back" <(tail -c +$((20 * 512 + 1)) "$SC_TMP/p64" | head -c $((20 * 512))) ||
      fail "blocks between the unmapped ranges changed" || return
    # Beyond the end: LBA OUT OF RANGE.
    if out=$(timeout 60 sg_unmap --force --lba=$((SC_BLOCKS - 1)) --num=2 "$SC_DEV" 2>&1); then
      fail "unmap past the end succeeded"
      return
    fi
    echo "$out"
    grep -qi 'out of range' <<< "$out" || fail "unmap past the end: $(tail -n1 <<< "$out")"
  else
    if out=$(timeout 60 sg_unmap --force --lba=1000 --num=8 "$SC_DEV" 2>&1); then
      fail "UNMAP accepted without LBPU"
      return
    fi
    echo "$out"
    grep -qi 'operation code\|not supported' <<< "$out" || fail "UNMAP refused oddly: $(tail -n1 <<< "$out")"
  fi
}

sc_write_same() {
  sc_need_dev || return
  sc_pattern "$SC_TMP/one" 1 || fail "pattern" || return
  must "sg_write_same(10)" sg_write_same --10 --in="$SC_TMP/one" --lba=2000 --num=100 "$SC_DEV" || return
  sc_read_file "$SC_TMP/back" 2000 100 || fail "read back failed" || return
  local i
  for ((i = 0; i < 100; i++)); do
    cmp -s "$SC_TMP/one" <(tail -c +$((i * 512 + 1)) "$SC_TMP/back" | head -c 512) ||
      fail "block $((2000 + i)) does not hold the pattern" || return
  done
  must "sg_write_same(16)" sg_write_same --16 --in="$SC_TMP/one" --lba=2100 --num=3000 "$SC_DEV" || return
  sc_read_file "$SC_TMP/back" 5099 1 || fail "read back failed" || return
  cmp -s "$SC_TMP/one" "$SC_TMP/back" || fail "last block of WRITE SAME(16) does not hold the pattern" || return
  # Zeros with UNMAP (unmapped or written, either way zeros), and NDOB.
  must "sg_write_same --unmap" sg_write_same --16 --unmap --lba=2000 --num=50 "$SC_DEV" || return
  sc_expect_zeros 2000 50 || return
  must "sg_write_same --ndob" sg_write_same --16 --ndob --lba=2050 --num=50 "$SC_DEV" || return
  sc_expect_zeros 2050 50 || return
  # Zero blocks is refused (WSNZ).
  ! timeout 60 sg_write_same --16 --in="$SC_TMP/one" --lba=0 --num=0 "$SC_DEV" || fail "WRITE SAME of 0 blocks accepted"
}

sc_compare_and_write() {
  sc_need_dev || return
  local rc=0
  sc_pattern "$SC_TMP/old" 1 || fail "pattern" || return
  sc_pattern "$SC_TMP/new" 1 || fail "pattern" || return
  cat "$SC_TMP/old" "$SC_TMP/new" > "$SC_TMP/caw"
  sc_write_file "$SC_TMP/old" 3000 || fail "writing the old block failed" || return
  must "sg_compare_and_write (match)" sg_compare_and_write --in="$SC_TMP/caw" --lba=3000 --num=1 "$SC_DEV" || return
  sc_read_file "$SC_TMP/back" 3000 1 || fail "read back failed" || return
  cmp -s "$SC_TMP/new" "$SC_TMP/back" || fail "block 3000 not written after a match" || return
  # Same command again: the medium no longer matches.
  timeout 60 sg_compare_and_write --in="$SC_TMP/caw" --lba=3000 --num=1 "$SC_DEV" || rc=$?
  ((rc == 14)) || fail "mismatch: exit $rc, want 14 (MISCOMPARE)" || return
  sc_read_file "$SC_TMP/back" 3000 1 || fail "read back failed" || return
  cmp -s "$SC_TMP/new" "$SC_TMP/back" || fail "block 3000 changed after a miscompare"
}

sc_verify() {
  sc_need_dev || return
  local rc=0
  must "sg_verify (medium)" sg_verify --lba=0 --count=4096 "$SC_DEV" || return
  must "sg_verify --16 (medium)" sg_verify --16 --lba=$((SC_BLOCKS - 8)) --count=8 "$SC_DEV" || return
  # Block 3000 holds "new" (from the compare and write step).
  sc_write_file "$SC_TMP/new" 3000 || fail "writing block 3000 failed" || return
  must "sg_verify --ebytchk=1 (match)" sg_verify --ebytchk=1 --ndo=512 --in="$SC_TMP/new" --lba=3000 --count=1 "$SC_DEV" || return
  timeout 60 sg_verify --ebytchk=1 --ndo=512 --in="$SC_TMP/old" --lba=3000 --count=1 "$SC_DEV" || rc=$?
  ((rc == 14)) || fail "byte check mismatch: exit $rc, want 14 (MISCOMPARE)" || return
  rc=0
  timeout 60 sg_verify --16 --lba=$((SC_BLOCKS - 1)) --count=2 "$SC_DEV" || rc=$?
  ((rc != 0)) || fail "verify past the end succeeded"
}

sc_sync() {
  sc_need_dev || return
  must "sg_sync" sg_sync "$SC_DEV" || return
  must "sg_sync --16" sg_sync --16 --lba=100 --count=100 "$SC_DEV"
}

sc_start_stop() {
  sc_need_dev || return
  local out
  must "sg_start --stop" sg_start --stop "$SC_DEV" || return
  out=$(sc_sense 0 00 00 00 00 00 00)
  echo "$out"
  if ! grep -qi 'initializing command required' <<< "$out"; then
    timeout 60 sg_start --start "$SC_DEV"
    fail "TEST UNIT READY after stop: $(grep -i 'sense' <<< "$out" | head -n2 | tr '\n' ' ')"
    return
  fi
  out=$(sc_sense 512 28 00 00 00 00 00 00 00 01 00)
  grep -qi 'not ready' <<< "$out" || { timeout 60 sg_start --start "$SC_DEV"; fail "READ after stop did not fail NOT READY"; return; }
  must "sg_start --start" sg_start --start "$SC_DEV" || return
  must "sg_turs after start" sg_turs "$SC_DEV" || return
  # Power conditions other than START_VALID are refused.
  ! timeout 60 sg_start --pc=2 "$SC_DEV" || fail "power condition IDLE accepted"
}

sc_blkdiscard() {
  sc_need_dev || return
  local max
  max=$(cat "/sys/block/$SC_DISK/queue/discard_max_bytes")
  info "scsi: discard_max_bytes=$max"
  if ((SC_LBPU)); then
    ((max > 0)) || fail "LBPU advertised but the kernel does not discard" || return
    sc_pattern "$SC_TMP/p64" 64 || fail "pattern" || return
    sc_write_file "$SC_TMP/p64" 16384 || fail "writing the pattern failed" || return
    must "blkdiscard" blkdiscard -o $((16384 * 512)) -l $((64 * 512)) "$SC_DEV" || return
    ((SC_LBPRZ == 0)) || sc_expect_zeros 16384 64
  else
    ((max == 0)) || fail "no LBPU but the kernel discards"
  fi
}

sc_stop() {
  sc_need_dev || return
  serve_stop "$SC_PID" TERM 30 || fail "still running 30s after SIGTERM" || return
  ((SERVE_RC == 0)) || fail "exit status $SERVE_RC after SIGTERM: $(stderr_tail "$SC_OUT.stderr")" || return
  local left
  left=$(cfs_leftovers)
  [[ -z "$left" ]] || fail "configfs not clean: $(tr '\n' ' ' <<< "$left")" || return
  ! grep -q 'panicked' "$SC_OUT.stderr" || fail "tcmu-serve panicked: $(grep -m1 panicked "$SC_OUT.stderr")"
}

step scsi_start sc_start
step scsi_attach_no_sd_warnings sc_attach_clean
step scsi_vpd_provisioning_b2 sc_vpd_provisioning
step scsi_vpd_pages sc_vpd_pages
step scsi_vpd_extended_inquiry_86 sc_vpd_extended_inquiry
step scsi_vpd_block_limits_b0 sc_vpd_block_limits
step scsi_vpd_characteristics_b1 sc_vpd_characteristics
step scsi_readcap_long sc_readcap_long
step scsi_mode_pages_changeable sc_mode_pages
step scsi_mode_select_wce sc_wce_toggle
step scsi_mode_select_d_sense sc_d_sense
step scsi_opcodes_all sc_opcodes_all
step scsi_opcodes_one_and_tmf sc_opcodes_one
step scsi_get_lba_status_consistent sc_get_lba_status
step scsi_unmap sc_unmap
step scsi_write_same sc_write_same
step scsi_compare_and_write sc_compare_and_write
step scsi_verify sc_verify
step scsi_synchronize_cache sc_sync
step scsi_start_stop_unit sc_start_stop
step scsi_blkdiscard sc_blkdiscard
step scsi_stop sc_stop
