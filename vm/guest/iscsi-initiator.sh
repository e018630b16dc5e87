# shellcheck shell=bash
# The guest's open-iscsi initiator, for the tests that export over iSCSI:
# start and stop iscsid, discover, log in (finding the session's disk) and
# out. Sourced by those test files (helpers: vm/guest/lib.sh).

ISCSI_PORTAL=127.0.0.1:3260
ISCSID_PID=""
# The disk of the last login (empty after logout).
ISCSI_DEV=""

# iscsi_targets: the iSCSI targets in configfs (empty = clean).
iscsi_targets() {
  local d
  for d in "$CFS"/iscsi/*; do
    [[ -d "$d" && "$d" != */discovery_auth ]] && echo "${d##*/}"
  done
  return 0
}

# iscsid_start LOG: start iscsid (output in LOG) and wait for its control socket.
iscsid_start() {
  local log=$1 i
  command -v iscsid > /dev/null && command -v iscsiadm > /dev/null ||
    fail "open-iscsi is not installed (iscsid, iscsiadm)" || return
  must "modprobe iscsi_tcp" modprobe iscsi_tcp || return
  mkdir -p /etc/iscsi /run/lock/iscsi /var/lib/iscsi
  echo "InitiatorName=iqn.2026-11.org.tcmu-rs.test:guest" > /etc/iscsi/initiatorname.iscsi
  # Its own session: on SIGTERM iscsid signals its whole process group,
  # which must not include this suite.
  setsid iscsid -f > "$log" 2>&1 &
  ISCSID_PID=$!
  # Ready when its control socket (abstract unix socket) exists.
  for ((i = 0; i < 100; i++)); do
    grep -q '@ISCSIADM_ABSTRACT_NAMESPACE' /proc/net/unix && return 0
    kill -0 "$ISCSID_PID" 2> /dev/null || fail "iscsid exited: $(tail -n1 "$log")" || return
    sleep 0.1
  done
  fail "iscsid did not open its control socket within 10s"
}

iscsid_stop() {
  [[ -n "$ISCSID_PID" ]] || fail "skipped: iscsid was not started" || return
  kill -TERM "$ISCSID_PID" 2> /dev/null
  local i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$ISCSID_PID" 2> /dev/null || break
    sleep 0.1
  done
  if kill -0 "$ISCSID_PID" 2> /dev/null; then
    kill -KILL "$ISCSID_PID"
    fail "iscsid still running 10s after SIGTERM"
    return
  fi
  wait "$ISCSID_PID" 2> /dev/null || true
  ISCSID_PID=""
  ! pgrep -x iscsid > /dev/null || fail "an iscsid is still running"
}

# iscsid_kill: whatever failed, no initiator outlives a test file.
iscsid_kill() {
  if [[ -n "$ISCSID_PID" ]]; then kill -KILL "$ISCSID_PID" 2> /dev/null || true; fi
  ISCSID_PID=""
}

# iscsi_discover IQN: SendTargets discovery on the portal lists IQN.
iscsi_discover() {
  local iqn=$1 out
  out=$(timeout 60 iscsiadm -m discovery -t st -p "$ISCSI_PORTAL" 2>&1) ||
    fail "discovery failed: $(tail -n1 <<< "$out")" || return
  echo "$out"
  grep -q "^$ISCSI_PORTAL,1 $iqn\$" <<< "$out" || fail "discovery does not list $ISCSI_PORTAL,1 $iqn"
}

# iscsi_find_disk IQN: ISCSI_DEV = the /dev/sdX of LUN 0 of the session
# with target IQN, vendor TCMU-RS (the emulator answers INQUIRY, not LIO).
iscsi_find_disk() {
  local iqn=$1 i s blk
  ISCSI_DEV=""
  for ((i = 0; i < 300; i++)); do
    for s in /sys/class/iscsi_session/session*; do
      [[ $(cat "$s/targetname" 2> /dev/null) == "$iqn" ]] || continue
      for blk in "$s"/device/target*/*:0/block/*; do
        [[ -e "$blk" && -b /dev/${blk##*/} ]] || continue
        [[ $(cat "$blk/device/vendor" 2> /dev/null) == TCMU-RS* ]] ||
          fail "LUN 0 of $iqn has vendor '$(cat "$blk/device/vendor")', want TCMU-RS" || return
        ISCSI_DEV=/dev/${blk##*/}
        echo "session ${s##*/}: $ISCSI_DEV"
        timeout 30 iscsiadm -m session -P 3 | grep -E 'Target:|Current Portal|Attached scsi disk|CHAP|username' || true
        return 0
      done
    done
    sleep 0.1
  done
  fail "no disk of an iSCSI session with $iqn within 30s"
}

# iscsi_login IQN: log in to IQN on the portal; sets ISCSI_DEV.
# iscsi_disk_of ADDR: the disk name (sdX) of the session through portal
# ADDR:3260, or nothing.
iscsi_disk_of() {
  timeout 30 iscsiadm -m session -P 3 2> /dev/null | awk -v p="$1:3260," '
    /Current Portal:/ { here = index($3, p) == 1 }
    here && /Attached scsi disk/ { print $4; exit }'
}

iscsi_login() {
  must "iscsiadm login to $1" iscsiadm -m node -T "$1" -p "$ISCSI_PORTAL" --login || return
  iscsi_find_disk "$1"
}

# iscsi_logout IQN: unmount the disk checks' file system if mounted, log
# out, and wait until the disk and the session are gone.
iscsi_logout() {
  local iqn=$1 dev=$ISCSI_DEV
  if mountpoint -q "$SK_MNT"; then umount "$SK_MNT"; fi
  must "iscsiadm logout from $iqn" iscsiadm -m node -T "$iqn" -p "$ISCSI_PORTAL" --logout || return
  ISCSI_DEV=""
  if [[ -n "$dev" ]]; then
    wait_gone "$dev" 30 || fail "$dev still exists 30s after logout" || return
  fi
  ! grep -qs "^$iqn\$" /sys/class/iscsi_session/session*/targetname || fail "a session with $iqn remains"
}

# iscsi_inquiry DEV BLOCKS: INQUIRY shows the emulator's disk and READ
# CAPACITY(16) BLOCKS logical blocks.
iscsi_inquiry() {
  local dev=$1 blocks=$2 out
  out=$(timeout 60 sg_inq "$dev" 2>&1) || fail "sg_inq exited $?: $(tail -n1 <<< "$out")" || return
  echo "$out"
  grep -q 'Peripheral device type: disk' <<< "$out" || fail "peripheral device type is not disk" || return
  grep -q 'Vendor identification: TCMU-RS' <<< "$out" || fail "vendor is not TCMU-RS" || return
  out=$(timeout 60 sg_readcap --16 "$dev" 2>&1) || fail "sg_readcap exited $?: $(tail -n1 <<< "$out")" || return
  echo "$out"
  grep -q "Number of logical blocks=$blocks\$" <<< "$out" ||
    fail "want $blocks blocks, got: $(grep -o 'Number of logical blocks=[0-9]*' <<< "$out")"
}

# iscsi_fio DEV SIZE NAME: the fio verify run on an iSCSI disk; the report
# is $VM_RUN/fio-NAME.txt.
iscsi_fio() {
  local out=$VM_RUN/fio-$3.txt
  CMD_TIMEOUT=300 must "fio verify failed, see fio-$3.txt" \
    "${FIO_VERIFY[@]}" --name="$3" --filename="$1" --iodepth=16 --size="$2" --output="$out" || return
  cat "$out"
  ! grep -qiE 'verify: bad|crc32c: verify failed|err= *[1-9]' "$out" || fail "fio reported errors, see fio-$3.txt"
}
