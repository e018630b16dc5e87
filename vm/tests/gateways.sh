# shellcheck shell=bash
# Two gateways of one image as ceph-iscsi lays them out, made by tcmu-serve
# itself: two processes export a RAM disk each (standing in for one shared
# image: no data is compared between them) as TPGs 1 and 2 of one iSCSI
# target, on 127.0.0.1:3260 and 127.0.0.2:3260, with `--alua-gateways 1,2`
# and one `--serial`. Through both paths:
# - configfs holds the groups `ao` (id 1, active/optimized) and `ano2`
#   (id 2, active/non-optimized) in each backstore, each LUN in its own;
# - both disks report the same serial and NAA designator (one device to
#   multipath), TPGS implicit in INQUIRY, and in VPD 0x83 the group of
#   their own path;
# - REPORT TARGET PORT GROUPS shows group 1 active/optimized and group 2
#   active/non-optimized on both; SET TARGET PORT GROUPS is refused and the
#   disk still reads;
# - Linux's ALUA device handler attaches to both with those states;
# - stopping the first gateway leaves the target to the second, stopping
#   the second removes everything; bad gateway flags are one-line errors.
# Sourced by vm/guest/suite (helpers: vm/guest/lib.sh).

# shellcheck source=vm/guest/disk-suite.sh
source "$GUEST_DIR/disk-suite.sh"
# shellcheck source=vm/guest/iscsi-initiator.sh
source "$GUEST_DIR/iscsi-initiator.sh"

GW_IQN=iqn.2026-12.org.tcmu-rs:gateways
GW_SERIAL=gw-image-0001
GW_ADDR=(unused 127.0.0.1 127.0.0.2)
GW_PID=(unused "" "")
GW_DEV=(unused "" "")

gw_out() { echo "$VM_RUN/tcmu-serve-gw$1"; }

# gw_start N: gateway N serves TPG N on its own address.
gw_start() {
  local n=$1 tpg=$CFS/iscsi/$GW_IQN/tpgt_$1 bs info
  serve_start "$(gw_out "$n")" --backend mem --size 64MiB --name "gw$n" --serial "$GW_SERIAL" \
    --export "iscsi:$GW_IQN@${GW_ADDR[n]}:3260" --iscsi-no-auth --iscsi-tpg "$n" --alua-gateways 1,2 || return
  GW_PID[n]=$SERVE_PID
  [[ "$READY" == "iscsi://${GW_ADDR[n]}:3260/$GW_IQN/0" ]] || fail "ready line names '$READY'" || return
  [[ $(cat "$tpg/enable") == 1 ]] || fail "tpgt_$n is not enabled" || return
  info=$(cat "$tpg/lun/lun_0/alua_tg_pt_gp")
  echo "$info"
  local want=ao
  ((n == 1)) || want=ano$n
  grep -q "TG Port Alias: $want\$" <<< "$info" || fail "LUN 0 of tpgt_$n is not in group $want" || return
  bs=$(compgen -G "$CFS/core/user_*/gw$n" | head -n 1)
  [[ -n "$bs" ]] || fail "no backstore gw$n" || return
  grep -r . "$bs"/alua/{ao,ano2}/{tg_pt_gp_id,alua_access_state,alua_access_type,nonop_delay_msecs} || true
  [[ $(cat "$bs/alua/ao/tg_pt_gp_id") == 1 && $(cat "$bs/alua/ano2/tg_pt_gp_id") == 2 ]] ||
    fail "group ids are not ao=1, ano2=2" || return
  [[ $(cat "$bs/alua/ao/alua_access_state") == 0 && $(cat "$bs/alua/ano2/alua_access_state") == 1 ]] ||
    fail "group states are not ao=0, ano2=1"
}

gw_login() {
  local n=$1 i
  ISCSI_PORTAL=${GW_ADDR[n]}:3260
  iscsi_discover "$GW_IQN" > /dev/null || true # lists the other TPG too; only ours matters
  must "iscsiadm login through ${GW_ADDR[n]}" iscsiadm -m node -T "$GW_IQN" -p "$ISCSI_PORTAL" --login || return
  for ((i = 0; i < 300; i++)); do
    GW_DEV[n]=/dev/$(iscsi_disk_of "${GW_ADDR[n]}")
    [[ "${GW_DEV[n]}" != /dev/ && -b "${GW_DEV[n]}" ]] && break
    sleep 0.1
  done
  [[ -b "${GW_DEV[n]}" ]] || fail "no disk through ${GW_ADDR[n]} within 30s" || return
  echo "path $n: ${GW_DEV[n]}"
}

gw_need_paths() { [[ -b "${GW_DEV[1]}" && -b "${GW_DEV[2]}" ]] || fail "skipped: not logged in through both gateways"; }

gw_same_identity() {
  gw_need_paths || return
  local n serial naa first=""
  for n in 1 2; do
    serial=$(timeout 30 sg_inq -p 0x80 "${GW_DEV[n]}" 2>&1) || fail "sg_inq -p 0x80 on path $n: $serial" || return
    grep -q "$GW_SERIAL" <<< "$serial" || fail "path $n reports serial: $serial" || return
    naa=$(timeout 30 sg_vpd -p di "${GW_DEV[n]}" 2>&1 | grep -A1 'designator type: NAA' | tail -n 1)
    echo "path $n: NAA $naa"
    [[ -n "$naa" ]] || fail "path $n reports no NAA designator" || return
    [[ -z "$first" || "$naa" == "$first" ]] || fail "the paths report different NAA designators: $first / $naa" || return
    first=$naa
  done
}

gw_port_designators() {
  gw_need_paths || return
  local n out
  for n in 1 2; do
    out=$(timeout 30 sg_inq "${GW_DEV[n]}" 2>&1) || fail "sg_inq on path $n: $(tail -n1 <<< "$out")" || return
    grep -E 'TPGS=' <<< "$out"
    grep -q 'TPGS=1' <<< "$out" || fail "path $n: INQUIRY does not say TPGS=1 (implicit)" || return
    out=$(timeout 30 sg_vpd -p di "${GW_DEV[n]}" 2>&1) || fail "sg_vpd -p di on path $n: $(tail -n1 <<< "$out")" || return
    echo "$out"
    # Each backstore has one LUN here, so both ports are relative port 1.
    grep -qi 'relative target port: 0x1' <<< "$out" || fail "path $n: no relative target port 0x1 in VPD 0x83" || return
    grep -qiE "target port group: 0x0*$n\b" <<< "$out" || fail "path $n: VPD 0x83 does not name target port group $n" || return
  done
}

gw_rtpg() {
  gw_need_paths || return
  local n out
  for n in 1 2; do
    out=$(timeout 30 sg_rtpg -d "${GW_DEV[n]}" 2>&1) || fail "sg_rtpg on path $n: $(tail -n1 <<< "$out")" || return
    echo "$out"
    # The state line follows its group's id line.
    grep -A1 -i 'target port group id *: *0x1' <<< "$out" | grep -qi 'active/optimized' ||
      fail "path $n: group 1 is not active/optimized" || return
    grep -A1 -i 'target port group id *: *0x2' <<< "$out" | grep -qiE 'active/non.?optimized' ||
      fail "path $n: group 2 is not active/non-optimized" || return
  done
  out=$(timeout 30 sg_rtpg -e -d "${GW_DEV[1]}" 2>&1) || fail "sg_rtpg -e: $(tail -n1 <<< "$out")" || return
  echo "$out"
}

gw_stpg_refused() {
  gw_need_paths || return
  local rc=0 out
  out=$(timeout 30 sg_stpg --optimized --tp=1 "${GW_DEV[2]}" 2>&1) || rc=$?
  echo "sg_stpg exit $rc: $out"
  ((rc != 124)) || fail "sg_stpg timed out" || return
  # sg_stpg reports the refusal but may exit 0.
  grep -qi 'illegal request, invalid opcode' <<< "$out" ||
    fail "SET TARGET PORT GROUPS was not refused with INVALID COMMAND OPERATION CODE" || return
  must "read after the refused STPG" dd if="${GW_DEV[2]}" of=/dev/null bs=4k count=16 iflag=direct status=none
}

gw_kernel_handler() {
  gw_need_paths || return
  local log n dev
  log=$(dmesg | grep -i 'alua')
  echo "$log"
  for n in 1 2; do
    dev=${GW_DEV[n]##*/}
    # The handler names the SCSI device (H:C:T:L), not the disk.
    local hctl
    hctl=$(basename "$(readlink -f "/sys/block/$dev/device")")
    grep -q "$hctl: alua: supports implicit TPGS" <<< "$log" || fail "no ALUA handler on $hctl ($dev)" || return
  done
  grep -qE 'port group 0?1 state A' <<< "$log" || fail "the kernel did not see group 1 active/optimized" || return
  grep -qE 'port group 0?2 state N' <<< "$log" || fail "the kernel did not see group 2 active/non-optimized"
}

gw_logout() {
  local n=$1
  local dev=${GW_DEV[n]}
  must "logout through ${GW_ADDR[n]}" iscsiadm -m node -T "$GW_IQN" -p "${GW_ADDR[n]}:3260" --logout || return
  GW_DEV[n]=""
  [[ -z "$dev" ]] || wait_gone "$dev" 30 || fail "$dev still exists 30s after logout"
}

gw_stop() {
  local n=$1
  [[ -n "${GW_PID[n]}" ]] || fail "skipped: gateway $n is not running" || return
  serve_stop "${GW_PID[n]}" TERM 30 || fail "gateway $n still running 30s after SIGTERM" || return
  GW_PID[n]=""
  ((SERVE_RC == 0)) || fail "gateway $n exited $SERVE_RC: $(stderr_tail "$(gw_out "$n").stderr")" || return
  [[ ! -d "$CFS/iscsi/$GW_IQN/tpgt_$n" ]] || fail "tpgt_$n is left" || return
  [[ -z "$(compgen -G "$CFS/core/user_*/gw$n")" ]] || fail "backstore gw$n is left"
}

gw_first_leaves_the_target() {
  gw_logout 1 || return
  gw_stop 1 || return
  [[ -d "$CFS/iscsi/$GW_IQN/tpgt_2" ]] || fail "stopping gateway 1 removed gateway 2's TPG" || return
  must "read through gateway 2" dd if="${GW_DEV[2]}" of=/dev/null bs=4k count=16 iflag=direct status=none
}

gw_last_removes_everything() {
  gw_logout 2 || return
  gw_stop 2 || return
  [[ -z "$(iscsi_targets)" ]] || fail "iSCSI targets left: $(iscsi_targets | tr '\n' ' ')" || return
  local left
  left=$(cfs_leftovers)
  [[ -z "$left" ]] || fail "configfs not clean: $(tr '\n' ' ' <<< "$left")"
}

gw_reject_bad_flags() {
  neg_cli "$VM_RUN/neg-gw-tag" 'not among' --backend mem --size 64MiB --name neggw0 \
    --export iscsi --iscsi-no-auth --iscsi-tpg 3 --alua-gateways 1,2 || return
  neg_cli "$VM_RUN/neg-gw-loop" 'only applies to --export iscsi' --backend mem --size 64MiB --name neggw1 \
    --alua-gateways 1,2 || return
  [[ -z "$(iscsi_targets)" ]] || fail "an iSCSI target was created"
}

step gateways_reject_bad_flags gw_reject_bad_flags
# Linux attaches its ALUA handler to a disk whose INQUIRY says TPGS.
step gateways_alua_handler_loaded must "modprobe scsi_dh_alua" modprobe scsi_dh_alua
step gateways_iscsid_start iscsid_start "$VM_RUN/gateways-iscsid.log"
step gateways_start_first gw_start 1
step gateways_start_second gw_start 2
step gateways_login_first gw_login 1
step gateways_login_second gw_login 2
step gateways_same_identity gw_same_identity
step gateways_port_designators gw_port_designators
step gateways_rtpg_on_both_paths gw_rtpg
step gateways_stpg_refused gw_stpg_refused
step gateways_kernel_alua_handler gw_kernel_handler
step gateways_first_stops gw_first_leaves_the_target
step gateways_last_stops gw_last_removes_everything
step gateways_iscsid_stop iscsid_stop
step gateways_kernel_log_clean klog_clean
# Whatever failed above: no gateway or initiator outlives this file.
for gw_pid in "${GW_PID[@]:1}"; do
  if [[ -n "$gw_pid" ]]; then kill -KILL "$gw_pid" 2> /dev/null || true; fi
done
iscsid_kill
ISCSI_PORTAL=127.0.0.1:3260
