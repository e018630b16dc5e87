# shellcheck shell=bash
# Runner mode (`tcmu-serve runner`) in place of tcmu-runner, with the real
# tools: a system D-Bus, targetcli-fb (rtslib-fb) and raw configfs writes
# as ceph-iscsi makes them.
# - a `user:file` backstore made with ceph-iscsi's control string and
#   timeouts is served (the serial written after enable is what VPD 0x80
#   shows), passes fio verify and ext4 with checksums, and grows through
#   attrib/dev_size;
# - an unknown subtype and a bad path make `enable` fail, never hang;
# - targetcli lists the user: subtypes from our D-Bus service, refuses a
#   bad cfgstring with our message, creates a user:file backstore and a
#   loopback LUN on it (sg_inq, fio verify, ext4 with checksums), and
#   saveconfig / clearconfig / restoreconfig bring the LUN back with its data;
# - targetcli makes a user:qcow backstore on a qemu-img image and exports
#   it over iSCSI: fio verify and ext4 through open-iscsi, then qemu-img
#   check finds the image clean;
# - a standalone tcmu-serve runs beside the runner;
# - SIGKILL under fio verify: `enable` of a new backstore and `rmdir` of a
#   served one do not hang meanwhile, and the runner started again serves both and fio verifies;
# - SIGTERM leaves the backstores in configfs, and rmdir does not hang.
# Sourced by vm/guest/suite inside the VM (helpers: vm/guest/lib.sh).

# shellcheck source=vm/guest/iscsi-initiator.sh
source "$GUEST_DIR/iscsi-initiator.sh"
# shellcheck source=vm/guest/runner-lib.sh
source "$GUEST_DIR/runner-lib.sh"

RN_DIR=/tmp/runner-test
RN_IQN=iqn.2026-12.org.tcmu-rs:runner
RN_SERIAL=runner-serial-0001
# restoreconfig puts the loopback LUN back into its ALUA group, and LIO
# (target_core_alua.c) tells the initiator that the inquiry data changed.
RN_KLOG_EXPECTED+="|Inquiry data has changed"
# So does moving a LUN between ALUA groups and changing a group's state.
RN_KLOG_EXPECTED+="|Asymmetric access state changed"

runner_start() {
  rn_prepare "$RN_DIR" targetcli dbus-daemon sg_inq fio mkfs.ext4 e2fsck || return
  rn_start_bus || return
  rn_run_runner
}

runner_refuses_a_second_runner() {
  local out=$VM_RUN/runner-second rc=0
  echo "+ $TCMU_SERVE runner (a second one)"
  timeout -k 2 30 "$TCMU_SERVE" runner > "$out.stdout" 2> "$out.stderr" || rc=$?
  cat "$out.stderr"
  ((rc != 0 && rc != 124)) || fail "a second runner exited $rc" || return
  grep -q "another tcmu-serve runner is running" "$out.stderr" ||
    fail "unclear refusal: $(stderr_tail "$out.stderr")"
}

# ceph-iscsi's way: raw configfs writes, its control string and timeouts.
runner_file_as_ceph_iscsi_makes_it() {
  local bs=$RN_HBA/rfile0 serial
  rn_backstore rfile0 "dev_config=file/$RN_DIR/rfile0.img,dev_size=$((64 << 20)),max_data_area_mb=8,hw_max_sectors=1024" ||
    fail "enable failed: $(rn_log | tail -n 1)" || return
  rn_write "$bs/wwn/vpd_unit_serial" "$RN_SERIAL" || fail "serial write failed" || return
  rn_write "$bs/attrib/cmd_time_out" 0 || fail "cmd_time_out write failed" || return
  rn_write "$bs/attrib/qfull_time_out" 5 || fail "qfull_time_out write failed" || return
  [[ $(stat -c %s "$RN_DIR/rfile0.img") == $((64 << 20)) ]] || fail "the file was not created at 64 MiB" || return
  rn_expose "$bs" || return
  serial=$(sg_inq -p 0x80 "$RN_DEV" 2>&1)
  echo "$serial"
  grep -qw "$RN_SERIAL" <<< "$serial" || fail "VPD 0x80 does not show $RN_SERIAL: $(tail -n 1 <<< "$serial")" || return
  rn_disk_checks "$RN_DEV" rfile0
}

runner_file_grows_through_dev_size() {
  local bs=$RN_HBA/rfile0 size
  [[ -b "$RN_DEV" ]] || fail "no disk from the previous step" || return
  rn_write "$bs/attrib/dev_size" $((128 << 20)) || fail "dev_size write failed: $(rn_log | tail -n 1)" || return
  [[ $(stat -c %s "$RN_DIR/rfile0.img") == $((128 << 20)) ]] || fail "the file did not grow" || return
  echo 1 > "/sys/block/${RN_DEV#/dev/}/device/rescan"
  size=$(blockdev --getsize64 "$RN_DEV")
  ((size == 128 << 20)) || fail "the disk is $size bytes after the rescan" || return
  must "e2fsck after growing" e2fsck -f -n "$RN_DEV"
}

# ceph-iscsi's ALUA group of the owner's TPG, with the LUN in it: the
# runner answers from configfs (TPGS, VPD 0x83, REPORT TARGET PORT GROUPS),
# and a state the administrator writes shows at once.
# rn_clear_ua DEV: take the unit attentions an ALUA change queues (the
# first command after it gets one instead of its answer).
rn_clear_ua() {
  local i
  for ((i = 0; i < 5; i++)); do
    timeout 10 sg_turs "$1" > /dev/null 2>&1 && return 0
  done
  fail "TEST UNIT READY keeps failing on $1"
}

rn_alua_checks() {
  local bs=$RN_HBA/rfile0 ao out
  [[ -b "$RN_DEV" ]] || fail "no disk from the previous step" || return
  ao=$bs/alua/ao
  mkdir "$ao" || fail "cannot create ALUA group ao" || return
  rn_write "$ao/tg_pt_gp_id" 1 && rn_write "$ao/alua_access_type" 1 &&
    rn_write "$ao/nonop_delay_msecs" 0 && rn_write "$ao/implicit_trans_secs" 45 &&
    rn_write "$ao/alua_access_state" 0 || fail "cannot configure group ao" || return
  rn_write "$RN_LOOP_TPG/lun/lun_0/alua_tg_pt_gp" ao || fail "cannot move the LUN into ao" || return
  rn_clear_ua "$RN_DEV" || return
  out=$(timeout 30 sg_inq "$RN_DEV" 2>&1)
  grep 'TPGS=' <<< "$out"
  grep -q 'TPGS=1' <<< "$out" || fail "INQUIRY does not say TPGS=1" || return
  out=$(timeout 30 sg_vpd -p di "$RN_DEV" 2>&1)
  echo "$out"
  grep -qi 'relative target port: 0x' <<< "$out" || fail "no relative target port in VPD 0x83" || return
  grep -qiE 'target port group: 0x0*1\b' <<< "$out" || fail "VPD 0x83 does not name target port group 1" || return
  out=$(timeout 30 sg_rtpg -d "$RN_DEV" 2>&1)
  echo "$out"
  grep -A1 -i 'target port group id *: *0x1' <<< "$out" | grep -qi 'active/optimized' ||
    fail "REPORT TARGET PORT GROUPS: group 1 is not active/optimized" || return
  rn_write "$ao/alua_access_state" 1 || fail "cannot make group ao non-optimized" || return
  rn_clear_ua "$RN_DEV" || return
  out=$(timeout 30 sg_rtpg -d "$RN_DEV" 2>&1)
  echo "$out"
  grep -A1 -i 'target port group id *: *0x1' <<< "$out" | grep -qiE 'active/non.?optimized' ||
    fail "the state written to configfs does not show" || return
}

runner_alua_from_configfs() {
  local rc=0 ao=$RN_HBA/rfile0/alua/ao
  rn_alua_checks || rc=1
  # Back as it was, whatever failed: the LUN in the default group, ao gone
  # (the backstore cannot be removed while it has a group).
  if [[ -d "$ao" ]]; then
    rn_write "$RN_LOOP_TPG/lun/lun_0/alua_tg_pt_gp" default_tg_pt_gp || fail "cannot move the LUN back" || return
    rmdir "$ao" || fail "cannot remove group ao" || return
  fi
  ((rc == 0)) || return 1
  rn_clear_ua "$RN_DEV" || return
  must "read after the ALUA changes" dd if="$RN_DEV" of=/dev/null bs=4k count=16 iflag=direct status=none
}

runner_unknown_subtype_fails_enable() {
  rn_refused rbad0 "dev_config=glfs/vol@host/f.img,dev_size=$((16 << 20))" 'unknown subtype "glfs"'
}

runner_bad_path_fails_enable() {
  rn_refused rbad1 "dev_config=file/$RN_DIR/no/such/dir/x.img,dev_size=$((16 << 20))" "rbad1"
}

runner_standalone_serves_beside() {
  local out=$VM_RUN/runner-standalone
  serve_start "$out" --backend mem --size 64MiB --name rn-standalone --export loop || return
  must "sg_inq on the standalone disk" sg_inq "$READY" || return
  serve_stop "$SERVE_PID" TERM 30 || fail "the standalone tcmu-serve still runs 30s after SIGTERM" || return
  ((SERVE_RC == 0)) || fail "the standalone exited $SERVE_RC: $(stderr_tail "$out.stderr")" || return
  [[ -z "$(rn_bs rn-standalone)" ]] || fail "the standalone left its backstore behind" || return
  [[ $(cat "$RN_HBA/rfile0/enable") == 1 ]] || fail "the runner's backstore is gone"
}

runner_targetcli_lists_our_subtypes() {
  local out
  out=$(rn_targetcli ls /backstores) || fail "targetcli ls failed: $out" || return
  echo "$out"
  for sub in file qcow rbd; do
    grep -q "user:$sub" <<< "$out" || fail "targetcli shows no user:$sub" || return
  done
}

runner_targetcli_refuses_a_bad_cfgstring() {
  local out
  out=$(rn_targetcli /backstores/user:file create name=tbad size=16M cfgstring=relative.img)
  echo "$out"
  grep -q "not an absolute path" <<< "$out" || fail "targetcli did not print our message: $(tail -n 1 <<< "$out")" || return
  if compgen -G "$CFS/core/user_*/tbad" > /dev/null; then
    fail "the backstore was created anyway"
    return
  fi
}

# targetcli makes a user:file backstore and a loopback LUN on it; the disk
# checks pass, and saveconfig / clearconfig / restoreconfig bring the LUN
# back with its data.
runner_targetcli_file_save_clear_restore() {
  local out before after
  rn_unexpose
  out=$(rn_targetcli /backstores/user:file create name=tfile0 size=32M cfgstring="$RN_DIR/tfile0.img") ||
    fail "create failed: $(tail -n 1 <<< "$out")" || return
  echo "$out"
  [[ -n "$(rn_bs tfile0)" ]] || fail "no tfile0 in configfs" || return
  rn_targetcli_loop /backstores/user:file/tfile0 || return
  rn_disk_checks "$RN_DEV" tfile0 || return
  must "write a pattern" dd if=/dev/urandom of="$RN_DIR/pattern" bs=1M count=8 status=none || return
  must "dd the pattern to the disk" dd if="$RN_DIR/pattern" of="$RN_DEV" bs=1M oflag=direct status=none || return
  before=$(md5sum < "$RN_DIR/pattern")
  must "saveconfig" targetcli saveconfig "$RN_DIR/saved.json" || return
  # Every rmdir waits for the runner's answer to REMOVED_DEVICE.
  must "clearconfig" targetcli clearconfig confirm=True || return
  [[ -z "$(rn_bs tfile0)" ]] || fail "tfile0 is still there after clearconfig" || return
  [[ ! -d "$CFS/loopback/$RN_TLOOP_WWN" ]] || fail "the loopback target is still there after clearconfig" || return
  must "restoreconfig" targetcli restoreconfig "$RN_DIR/saved.json" || return
  [[ -n "$(rn_bs tfile0)" ]] || fail "restoreconfig did not bring tfile0 back" || return
  rn_loop_disk "$CFS/loopback/$RN_TLOOP_WWN/tpgt_1" || fail "restoreconfig did not bring the LUN back" || return
  after=$(dd if="$RN_DEV" bs=1M count=8 iflag=direct status=none | md5sum)
  rn_targetcli_unloop || return
  [[ "$after" == "$before" ]] || fail "the data did not survive saveconfig/clearconfig/restoreconfig"
}

# targetcli makes a user:qcow backstore on an image from qemu-img and
# exports it over iSCSI; ext4 with checksums and fio verify pass through
# open-iscsi; afterwards qemu-img check finds the image clean.
runner_targetcli_qcow_over_iscsi() {
  local img=$RN_DIR/tqcow.qcow2 out rc=0
  # iscsi_logout unmounts the disk checks' mount point if mounted; none here.
  # shellcheck disable=SC2034 # read by iscsi_logout
  local SK_MNT=$RN_DIR/not-mounted
  must "qemu-img create" qemu-img create -q -f qcow2 "$img" 64M || return
  out=$(rn_targetcli /backstores/user:qcow create name=tqcow size=64M cfgstring="$img") ||
    fail "create failed: $(tail -n 1 <<< "$out")" || return
  echo "$out"
  # targetcli adds the portal 0.0.0.0:3260 to a new target by itself.
  must "iSCSI target" targetcli /iscsi create "$RN_IQN" || return
  must "iSCSI LUN" targetcli "/iscsi/$RN_IQN/tpg1/luns" create /backstores/user:qcow/tqcow || return
  must "open access" targetcli "/iscsi/$RN_IQN/tpg1" set attribute authentication=0 \
    generate_node_acls=1 demo_mode_write_protect=0 cache_dynamic_acls=1 || return
  iscsid_start "$VM_RUN/runner-iscsid.log" || return
  iscsi_discover "$RN_IQN" && iscsi_login "$RN_IQN" || rc=1
  if ((rc == 0)); then
    rn_disk_checks "$ISCSI_DEV" tqcow || rc=1
    iscsi_logout "$RN_IQN" || rc=1
  fi
  iscsid_stop || rc=1
  must "delete the iSCSI target" targetcli /iscsi delete "$RN_IQN" || rc=1
  must "delete tqcow" targetcli /backstores/user:qcow delete tqcow || rc=1
  ((rc == 0)) || return 1
  must "qemu-img check after our writes" qemu-img check "$img"
}

runner_sigkill_under_fio_loses_nothing() {
  local bs fio_pid rc=0 t0 t1
  bs=$(rn_bs rfile0)
  [[ -n "$bs" ]] || fail "rfile0 is gone" || return
  rn_expose "$bs" || return
  "${FIO_VERIFY[@]}" --name=kill --filename="$RN_DEV" --iodepth=16 --size=32M \
    --output="$VM_RUN/runner-fio-kill.txt" &
  fio_pid=$!
  rn_backstore rspare "dev_config=file/$RN_DIR/rspare.img,dev_size=$((16 << 20))" ||
    { kill "$fio_pid"; fail "enable of rspare failed"; return; }
  sleep 3
  kill -KILL "$RN_PID"
  wait "$RN_PID" 2> /dev/null
  echo "runner killed"
  # No runner: enable must not wait for an answer nobody sends.
  t0=$(date +%s)
  rn_backstore rfile1 "dev_config=file/$RN_DIR/rfile1.img,dev_size=$((16 << 20))" || rc=$?
  t1=$(date +%s)
  echo "enable without a runner: status $rc after $((t1 - t0))s"
  ((rc == 0)) || { kill "$fio_pid"; fail "enable without a runner: status $rc"; return; }
  # Nor must the removal of a backstore the killed runner served.
  rn_bounded_rmdir "$RN_HBA/rspare" || { kill "$fio_pid"; return 1; }
  rn_run_runner || { kill "$fio_pid"; return 1; }
  rn_until 120 bash -c "! kill -0 $fio_pid 2> /dev/null" || { kill "$fio_pid"; fail "fio still running 120s after the restart"; return; }
  wait "$fio_pid" || rc=$?
  cat "$VM_RUN/runner-fio-kill.txt"
  ((rc == 0)) || fail "fio verify failed across the SIGKILL (exit $rc)" || return
  rn_log | grep -q "rfile1" || fail "the restarted runner does not serve rfile1" || return
  rn_unexpose
}

runner_sigterm_leaves_backstores() {
  local name rc=0
  serve_stop "$RN_PID" TERM 30 || fail "still running 30s after SIGTERM" || return
  ((SERVE_RC == 0)) || fail "exit status $SERVE_RC: $(rn_log | tail -n 1)" || return
  RN_PID=""
  for name in rfile0 rfile1 tfile0; do
    [[ $(cat "$(rn_bs "$name")/enable" 2> /dev/null) == 1 ]] || fail "$name is gone after SIGTERM" || return
  done
  # With no runner, removal must not wait for an answer.
  for name in rfile0 rfile1 tfile0; do
    rn_bounded_rmdir "$(rn_bs "$name")" || rc=1
  done
  return "$rc"
}

runner_cleanup() {
  iscsid_kill
  rn_teardown
  rm -rf "$RN_DIR"
  rn_configfs_clean
}

step runner_start runner_start
step runner_refuses_a_second_runner runner_refuses_a_second_runner
step runner_file_as_ceph_iscsi_makes_it runner_file_as_ceph_iscsi_makes_it
step runner_file_grows_through_dev_size runner_file_grows_through_dev_size
step runner_alua_from_configfs runner_alua_from_configfs
step runner_unknown_subtype_fails_enable runner_unknown_subtype_fails_enable
step runner_bad_path_fails_enable runner_bad_path_fails_enable
step runner_standalone_serves_beside runner_standalone_serves_beside
step runner_targetcli_lists_our_subtypes runner_targetcli_lists_our_subtypes
step runner_targetcli_refuses_a_bad_cfgstring runner_targetcli_refuses_a_bad_cfgstring
step runner_targetcli_file_save_clear_restore runner_targetcli_file_save_clear_restore
step runner_targetcli_qcow_over_iscsi runner_targetcli_qcow_over_iscsi
step runner_sigkill_under_fio_loses_nothing runner_sigkill_under_fio_loses_nothing
step runner_sigterm_leaves_backstores runner_sigterm_leaves_backstores
step runner_cleanup runner_cleanup
step runner_kernel_log rn_kernel_log
