# shellcheck shell=bash
# Running `tcmu-serve runner` in the guest as a system daemon would run:
# its own system bus with our policy, backstores made by raw configfs
# writes (as ceph-iscsi does) or by targetcli, every configfs write bounded
# (a write may wait for the runner's netlink answer), a tcm_loop disk on a
# backstore, and a teardown that leaves configfs clean. Sourced by the
# runner test files (helpers: vm/guest/lib.sh).

RN_HBA=$CFS/core/user_5
# Where the runner's output goes ($RN_OUT-N.* for the Nth start).
RN_OUT=$VM_RUN/runner
RN_PID=""
RN_STARTS=0
RN_PARAMS=/sys/module/target_core_user/parameters
RN_LOOP_WWN=naa.5001405bec0000a1
RN_LOOP_INIT=naa.5001405bec0000b1
RN_LOOP_TPG=$CFS/loopback/$RN_LOOP_WWN/tpgt_1
# The tcm_loop target targetcli makes.
RN_TLOOP_WWN=naa.5001405bec0000c1
RN_DEV=""
RN_DBUS_STARTED=0
# Bound for a configfs write that may wait for the runner's answer (s).
RN_WRITE_LIMIT=20
# The kernel log's problems before this file runs (see rn_kernel_log).
RN_KLOG_BASE=$(klog_problems | wc -l)
# The user_N HBAs that exist before this file runs.
RN_HBAS_BEFORE=$(echo "$CFS"/core/user_*)

# rn_prepare DIR TOOL...: the TOOLs are installed, the target modules are
# loaded, configfs is mounted, and DIR exists and is empty.
rn_prepare() {
  local dir=$1 tool
  shift
  for tool in "$@"; do
    command -v "$tool" > /dev/null || fail "$tool is not installed (scripts/install-deps)" || return
  done
  must "modprobe" modprobe -a configfs target_core_mod target_core_user tcm_loop || return
  mountpoint -q /sys/kernel/config || must "mount configfs" mount -t configfs configfs /sys/kernel/config || return
  rm -rf "$dir" && mkdir -p "$dir" || fail "cannot create $dir"
}

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

# rn_loop_disk TPG_DIR: wait for the disk of LUN 0 of a tcm_loop TPG;
# sets RN_DEV.
rn_loop_disk() {
  local addr sysdev
  RN_DEV=""
  addr=$(cat "$1/address") || fail "no tcm_loop address in $1" || return
  sysdev=/sys/bus/scsi/devices/$addr:0/block
  rn_until 30 compgen -G "$sysdev/sd*" > /dev/null || fail "no disk at $addr:0" || return
  RN_DEV=/dev/$(basename "$(compgen -G "$sysdev/sd*" | head -n 1)")
  rn_until 10 test -b "$RN_DEV" || fail "no device node $RN_DEV"
}

# rn_expose BACKSTORE_DIR: tcm_loop target, nexus and LUN 0 by raw
# configfs writes; sets RN_DEV.
rn_expose() {
  mkdir -p "$RN_LOOP_TPG/lun/lun_0" || fail "cannot create the tcm_loop target" || return
  rn_write "$RN_LOOP_TPG/nexus" "$RN_LOOP_INIT" || fail "cannot create the tcm_loop nexus" || return
  ln -s "$1" "$RN_LOOP_TPG/lun/lun_0/runner" || fail "cannot link the LUN" || return
  rn_loop_disk "$RN_LOOP_TPG"
}

# rn_targetcli_loop BACKSTORE: a tcm_loop target made by targetcli (rtslib
# adds the nexus) with BACKSTORE (e.g. /backstores/user:file/NAME) as
# LUN 0; sets RN_DEV.
rn_targetcli_loop() {
  must "targetcli loopback" targetcli /loopback create "$RN_TLOOP_WWN" || return
  must "targetcli loopback LUN" targetcli "/loopback/$RN_TLOOP_WWN/luns" create "$1" || return
  rn_loop_disk "$CFS/loopback/$RN_TLOOP_WWN/tpgt_1"
}

rn_targetcli_unloop() {
  RN_DEV=""
  must "delete the targetcli loopback" targetcli /loopback delete "$RN_TLOOP_WWN"
}

# rn_disk_checks DEV NAME: the disk checks on a served LUN: INQUIRY, fio
# verify, ext4 with checksums made and checked.
rn_disk_checks() {
  must "sg_inq" sg_inq "$1" || return
  must "fio verify" "${FIO_VERIFY[@]}" --name="$2" --filename="$1" --iodepth=16 --size=16M || return
  must "mkfs.ext4" mkfs.ext4 -q -F -O metadata_csum "$1" || return
  must "e2fsck" e2fsck -f -n "$1"
}

rn_unexpose() {
  [[ -d "$CFS/loopback/$RN_LOOP_WWN" ]] || return 0
  rm -f "$RN_LOOP_TPG/lun/lun_0/runner"
  rmdir "$RN_LOOP_TPG/lun/lun_0" 2> /dev/null
  rmdir "$RN_LOOP_TPG" 2> /dev/null
  rmdir "$CFS/loopback/$RN_LOOP_WWN" 2> /dev/null
  RN_DEV=""
}

# rn_run_runner [ARG...]: start the runner with ARGs; its output goes to
# $RN_OUT-N.*.
rn_run_runner() {
  RN_STARTS=$((RN_STARTS + 1))
  serve_start "$RN_OUT-$RN_STARTS" runner "$@" || return
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

rn_targetcli() {
  echo "+ targetcli $*"
  timeout -k 2 60 targetcli "$@" 2>&1
}

# rn_bounded_rmdir DIR: rmdir that must finish within RN_WRITE_LIMIT s.
rn_bounded_rmdir() {
  local rc=0
  rn_bounded rmdir "$1" || rc=$?
  ((rc != 124)) || fail "rmdir $1 hung" || return
  ((rc == 0)) || fail "rmdir $1 failed"
}

# rn_teardown: whatever failed before, stop the runner and the bus and
# remove every backstore, LUN and rtslib HBA made since this file was sourced.
rn_teardown() {
  local d
  rn_unexpose
  if [[ -n "$RN_PID" ]]; then
    kill -TERM "$RN_PID" 2> /dev/null || true
    sleep 1
    RN_PID=""
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
  RN_DBUS_STARTED=0
}

# rn_configfs_clean: no backstore, HBA or tcm_loop target is left.
rn_configfs_clean() {
  local left
  left=$(cfs_leftovers)
  [[ -z "$left" ]] || fail "configfs not clean: $(tr '\n' ' ' <<< "$left")"
}

# What the kernel logs, at warning level or worse, for what the runner
# tests do on purpose: a disk grown through dev_size, and every targetcli
# start (rtslib asks to move db_root, which is in use by then).
RN_KLOG_EXPECTED="Capacity data has changed|db_root: cannot be changed because it's in use"

# rn_kernel_log: no other kernel warning or error since the file began.
rn_kernel_log() {
  local new unexpected
  new=$(klog_problems | tail -n +$((RN_KLOG_BASE + 1)))
  echo "$new"
  unexpected=$(grep -Ev "$RN_KLOG_EXPECTED" <<< "$new" | grep -v '^$' || true)
  # Later files check the log from here on, whatever this finds.
  klog_mark
  [[ -z "$unexpected" ]] ||
    fail "$(wc -l <<< "$unexpected") unexpected kernel warnings/errors, first: $(head -n 1 <<< "$unexpected")"
}
