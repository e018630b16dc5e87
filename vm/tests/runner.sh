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
#   bad cfgstring with our message, creates a backstore, exports it, and
#   saveconfig / clearconfig / restoreconfig bring it back with its data;
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

RN_DIR=/tmp/runner-test
RN_IQN=iqn.2026-12.org.tcmu-rs:runner
RN_HBA=$CFS/core/user_5
RN_OUT=$VM_RUN/runner
RN_PID=""
RN_STARTS=0
RN_PARAMS=/sys/module/target_core_user/parameters
RN_LOOP_WWN=naa.5001405bec0000a1
RN_LOOP_INIT=naa.5001405bec0000b1
RN_LOOP_TPG=$CFS/loopback/$RN_LOOP_WWN/tpgt_1
RN_DEV=""
RN_DBUS_STARTED=0
RN_SERIAL=runner-serial-0001
# Bound for a configfs write that may wait for the runner's answer (s).
RN_WRITE_LIMIT=20
RN_KLOG_BASE=$(klog_problems | wc -l)
# The user_N HBAs that exist before this file runs.
RN_HBAS_BEFORE=$(echo "$CFS"/core/user_*)

# rn_release: end configfs writes stuck in a netlink wait.
rn_release() {
  echo 1 > "$RN_PARAMS/block_netlink"
  echo 1 > "$RN_PARAMS/reset_netlink"
  echo 0 > "$RN_PARAMS/block_netlink"
}

# rn_bounded CMD...: run CMD (a configfs write or rmdir that may wait for
# a netlink answer); if it still runs after RN_WRITE_LIMIT s, release the
# netlink waits and return 124. Otherwise CMD's status.
rn_bounded() {
  local pid i rc=0
  "$@" &
  pid=$!
  for ((i = 0; i < RN_WRITE_LIMIT * 10; i++)); do
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2> /dev/null; then
    echo "$* still blocked after ${RN_WRITE_LIMIT}s: releasing"
    rn_release
    wait "$pid" 2> /dev/null
    return 124
  fi
  wait "$pid" || rc=$?
  return "$rc"
}

# rn_write PATH VALUE: write a configfs attribute, bounded.
rn_write() {
  echo "+ $1 <- $2"
  # shellcheck disable=SC2016 # expanded by the inner bash
  rn_bounded bash -c 'printf "%s" "$2" > "$1"' _ "$1" "$2"
}

# rn_backstore NAME CONTROL: create and enable user_5/NAME; the enable's status.
rn_backstore() {
  mkdir -p "$RN_HBA/$1" || fail "cannot create $RN_HBA/$1" || return
  rn_write "$RN_HBA/$1/control" "$2" || fail "control write to $1 failed" || return
  rn_write "$RN_HBA/$1/enable" 1
}

# rn_until SECONDS CMD...: poll CMD every 0.1 s until it succeeds.
rn_until() {
  local limit=$1 i
  shift
  for ((i = 0; i < limit * 10; i++)); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}

# rn_expose BACKSTORE_DIR: tcm_loop target, nexus and LUN 0; sets RN_DEV.
rn_expose() {
  local addr sysdev
  RN_DEV=""
  mkdir -p "$RN_LOOP_TPG/lun/lun_0" || fail "cannot create the tcm_loop target" || return
  rn_write "$RN_LOOP_TPG/nexus" "$RN_LOOP_INIT" || fail "cannot create the tcm_loop nexus" || return
  ln -s "$1" "$RN_LOOP_TPG/lun/lun_0/runner" || fail "cannot link the LUN" || return
  addr=$(cat "$RN_LOOP_TPG/address") || fail "no tcm_loop address" || return
  sysdev=/sys/bus/scsi/devices/$addr:0/block
  rn_until 30 compgen -G "$sysdev/sd*" > /dev/null || fail "no disk at $addr:0" || return
  RN_DEV=/dev/$(basename "$(compgen -G "$sysdev/sd*" | head -n 1)")
  rn_until 10 test -b "$RN_DEV" || fail "no device node $RN_DEV"
}

rn_unexpose() {
  [[ -d "$CFS/loopback/$RN_LOOP_WWN" ]] || return 0
  rm -f "$RN_LOOP_TPG/lun/lun_0/runner"
  rmdir "$RN_LOOP_TPG/lun/lun_0" 2> /dev/null
  rmdir "$RN_LOOP_TPG" 2> /dev/null
  rmdir "$CFS/loopback/$RN_LOOP_WWN" 2> /dev/null
  RN_DEV=""
}

# rn_run_runner: start the runner; its output goes to $RN_OUT-N.*.
rn_run_runner() {
  RN_STARTS=$((RN_STARTS + 1))
  serve_start "$RN_OUT-$RN_STARTS" runner || return
  RN_PID=$SERVE_PID
  [[ "$READY" == runner ]] || fail "ready line says '$READY', want 'runner'"
}

rn_log() { cat "$RN_OUT-$RN_STARTS.stderr"; }

# rn_bs NAME: the configfs directory of backstore NAME (targetcli's
# restoreconfig may put it in another user_N).
rn_bs() { compgen -G "$CFS/core/user_*/$1" | head -n 1; }

# rn_start_bus: a system bus whose only policy for org.kernel.TCMUService1
# is ours (packaging/), and without service activation, so that no call
# starts the distribution's tcmu-runner behind the test's back.
rn_start_bus() {
  local conf=$VM_RUN/runner-system-bus.conf
  [[ ! -S /run/dbus/system_bus_socket ]] || fail "a system bus is already running" || return
  mkdir -p /run/dbus
  cat > "$conf" << EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <pidfile>/run/dbus/pid</pidfile>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>$REPO_ROOT/packaging/org.kernel.TCMUService1.conf</include>
</busconfig>
EOF
  must "dbus-daemon with our policy" dbus-daemon --config-file="$conf" --fork || return
  RN_DBUS_STARTED=1
}

runner_start() {
  local tool
  for tool in targetcli dbus-daemon sg_inq fio mkfs.ext4 e2fsck; do
    command -v "$tool" > /dev/null || fail "$tool is not installed (scripts/install-deps vm)" || return
  done
  must "modprobe" modprobe -a configfs target_core_mod target_core_user tcm_loop || return
  mountpoint -q /sys/kernel/config || must "mount configfs" mount -t configfs configfs /sys/kernel/config || return
  rm -rf "$RN_DIR" && mkdir -p "$RN_DIR" || fail "cannot create $RN_DIR" || return
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
  must "fio verify" "${FIO_VERIFY[@]}" --name=rfile0 --filename="$RN_DEV" --iodepth=16 --size=16M || return
  must "mkfs.ext4" mkfs.ext4 -q -F -O metadata_csum "$RN_DEV" || return
  must "e2fsck" e2fsck -f -n "$RN_DEV"
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

# rn_refused NAME CONTROL WHY: enable must fail (not hang) and the runner
# must say WHY in its log.
rn_refused() {
  local rc=0
  rn_backstore "$1" "$2" || rc=$?
  rmdir "$RN_HBA/$1" 2> /dev/null
  ((rc != 124)) || fail "enable hung" || return
  ((rc != 0)) || fail "enable succeeded" || return
  rn_log | grep -q "$3" || fail "the runner's log does not say '$3': $(rn_log | tail -n 1)"
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

rn_targetcli() {
  echo "+ targetcli $*"
  timeout -k 2 60 targetcli "$@" 2>&1
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

runner_targetcli_file_save_clear_restore() {
  local out bs before after
  rn_unexpose
  out=$(rn_targetcli /backstores/user:file create name=tfile0 size=32M cfgstring="$RN_DIR/tfile0.img") ||
    fail "create failed: $(tail -n 1 <<< "$out")" || return
  echo "$out"
  bs=$(compgen -G "$CFS/core/user_*/tfile0" | head -n 1)
  [[ -n "$bs" ]] || fail "no tfile0 in configfs" || return
  rn_expose "$bs" || return
  must "write a pattern" dd if=/dev/urandom of="$RN_DIR/pattern" bs=1M count=8 status=none || return
  must "dd the pattern to the disk" dd if="$RN_DIR/pattern" of="$RN_DEV" bs=1M oflag=direct status=none || return
  before=$(md5sum < "$RN_DIR/pattern")
  rn_unexpose
  must "saveconfig" targetcli saveconfig "$RN_DIR/saved.json" || return
  # Every rmdir waits for the runner's answer to REMOVED_DEVICE.
  must "clearconfig" targetcli clearconfig confirm=True || return
  [[ -z "$(compgen -G "$CFS/core/user_*/tfile0")" ]] || fail "tfile0 is still there after clearconfig" || return
  must "restoreconfig" targetcli restoreconfig "$RN_DIR/saved.json" || return
  bs=$(compgen -G "$CFS/core/user_*/tfile0" | head -n 1)
  [[ -n "$bs" ]] || fail "restoreconfig did not bring tfile0 back" || return
  rn_expose "$bs" || return
  after=$(dd if="$RN_DEV" bs=1M count=8 iflag=direct status=none | md5sum)
  rn_unexpose
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
    iscsi_fio "$ISCSI_DEV" 16M runner-qcow || rc=1
    ((rc == 0)) && { must "mkfs.ext4" mkfs.ext4 -q -F -O metadata_csum "$ISCSI_DEV" || rc=1; }
    ((rc == 0)) && { must "e2fsck" e2fsck -f -n "$ISCSI_DEV" || rc=1; }
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

# rn_bounded_rmdir DIR: rmdir that must finish within RN_WRITE_LIMIT s.
rn_bounded_rmdir() {
  local rc=0
  rn_bounded rmdir "$1" || rc=$?
  ((rc != 124)) || fail "rmdir $1 hung" || return
  ((rc == 0)) || fail "rmdir $1 failed"
}

# What the kernel logs, at warning level or worse, for what this file does
# on purpose: the disk grown through dev_size, and every targetcli start
# (rtslib asks to move db_root, which is in use by then).
RN_KLOG_EXPECTED="Capacity data has changed|db_root: cannot be changed because it's in use"

runner_cleanup() {
  local d left
  rn_unexpose
  iscsid_kill
  if [[ -n "$RN_PID" ]]; then
    kill -TERM "$RN_PID" 2> /dev/null || true
    sleep 1
  fi
  rn_targetcli clearconfig confirm=True > /dev/null 2>&1 || true
  for d in "$RN_HBA"/*/; do
    if [[ -d "$d" ]]; then rmdir "$d" 2> /dev/null || true; fi
  done
  # HBAs that rtslib made (user_N) and left empty.
  for d in "$CFS"/core/user_*; do
    if [[ -d "$d" && " $RN_HBAS_BEFORE " != *" $d "* ]]; then rmdir "$d" 2> /dev/null || true; fi
  done
  if ((RN_DBUS_STARTED)) && [[ -s /run/dbus/pid ]]; then
    kill "$(cat /run/dbus/pid)" 2> /dev/null || true
    rm -f /run/dbus/pid /run/dbus/system_bus_socket
  fi
  rm -rf "$RN_DIR"
  left=$(cfs_leftovers)
  [[ -z "$left" ]] || fail "configfs not clean: $(tr '\n' ' ' <<< "$left")"
}

runner_kernel_log() {
  local new unexpected
  new=$(klog_problems | tail -n +$((RN_KLOG_BASE + 1)))
  echo "$new"
  unexpected=$(grep -Ev "$RN_KLOG_EXPECTED" <<< "$new" | grep -v '^$' || true)
  [[ -z "$unexpected" ]] ||
    fail "$(wc -l <<< "$unexpected") unexpected kernel warnings/errors, first: $(head -n 1 <<< "$unexpected")" || return
  # Later files check the log from here on.
  klog_mark
}

step runner_start runner_start
step runner_refuses_a_second_runner runner_refuses_a_second_runner
step runner_file_as_ceph_iscsi_makes_it runner_file_as_ceph_iscsi_makes_it
step runner_file_grows_through_dev_size runner_file_grows_through_dev_size
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
step runner_kernel_log runner_kernel_log
