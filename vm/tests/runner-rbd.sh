# shellcheck shell=bash
# Runner mode (`tcmu-serve runner`) serving Ceph RBD images of the
# single-node cluster (scripts/ceph-cluster), made the two ways people make
# them:
# - it refuses to start, with one line, while Debian's tcmu-runner runs,
#   and while another process owns org.kernel.TCMUService1 (and then leaves
#   no netlink wait behind: an enable right after does not hang);
# - an image whose cluster does not answer is refused after its timeout,
#   and a backstore enabled meanwhile does not wait for it;
# - targetcli: CheckConfig refuses a missing image with our message;
#   `user:rbd` on an image, exported through a targetcli loopback LUN,
#   passes sg_inq, fio verify and ext4 with checksums, VPD 0x80 shows the
#   serial rtslib wrote, and what was written is in the image (`rbd
#   export`) once the backstore is deleted;
# - ceph-iscsi's layout: a backstore named <pool>.<image> on an image with
#   the exclusive lock, its control string and timeouts, ext4 with
#   checksums; a dev_size the image does not have yet is refused (the write
#   fails, the size stays), after `rbd resize` it is taken; the runner
#   stopped and started again serves it with the file system intact.
# Sourced by vm/guest/suite; needs tcmu-serve built with `--features rbd`.

# shellcheck source=vm/guest/ceph-cluster.sh
source "$GUEST_DIR/ceph-cluster.sh"
# shellcheck source=vm/guest/runner-lib.sh
source "$GUEST_DIR/runner-lib.sh"

RN_OUT=$VM_RUN/runner-rbd
RR_DIR=/tmp/runner-rbd-test
# targetcli's image, and ceph-iscsi's (backstore named <pool>.<image>).
RR_TIMAGE=trbd0
RR_CIMAGE=cimg0
RR_CNAME=rbd.$RR_CIMAGE
RR_SERIAL=runner-rbd-serial-01
RR_SIZE=$((64 << 20))
RR_GROWN=$((96 << 20))
RR_HELPER_PID=""
# The refused dev_size makes the kernel log that it could not reconfigure.
RN_KLOG_EXPECTED+="|Unable to reconfigure device"

runner_rbd_prepare() {
  rn_prepare "$RR_DIR" targetcli dbus-daemon dbus-send tcmu-runner python3 sg_inq fio mkfs.ext4 e2fsck rbd || return
  ceph_need_cluster || return
  must "rbd create $RR_TIMAGE" rbd -c "$CEPH_CONF" create --size 64M --image-feature layering "rbd/$RR_TIMAGE" || return
  # ceph-iscsi wants the exclusive lock on its images.
  must "rbd create $RR_CIMAGE" rbd -c "$CEPH_CONF" create --size 64M \
    --image-feature layering,exclusive-lock "rbd/$RR_CIMAGE" || return
  rn_start_bus
}

# rr_name_owned: someone owns org.kernel.TCMUService1 on the bus.
rr_name_owned() {
  dbus-send --system --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
    org.freedesktop.DBus.NameHasOwner string:org.kernel.TCMUService1 2> /dev/null | grep -q 'boolean true'
}

# rr_helper_stop: stop the process started to hold the name or the group.
rr_helper_stop() {
  [[ -n "$RR_HELPER_PID" ]] || return 0
  kill -TERM "$RR_HELPER_PID" 2> /dev/null || true
  rn_until 10 bash -c "! kill -0 $RR_HELPER_PID 2> /dev/null" || kill -KILL "$RR_HELPER_PID" 2> /dev/null
  wait "$RR_HELPER_PID" 2> /dev/null || true
  RR_HELPER_PID=""
}

# rr_runner_refused OUT WHY: a runner started now exits non-zero within
# 30 s and its last words contain WHY.
rr_runner_refused() {
  local out=$VM_RUN/$1 rc=0
  echo "+ $TCMU_SERVE runner"
  timeout -k 2 30 "$TCMU_SERVE" runner > "$out.stdout" 2> "$out.stderr" || rc=$?
  cat "$out.stderr"
  ((rc != 124 && rc != 137)) || fail "the runner did not exit within 30s" || return
  ((rc != 0)) || fail "the runner started" || return
  grep -q "$2" "$out.stderr" || fail "unclear refusal: $(stderr_tail "$out.stderr")"
}

runner_rbd_refused_beside_tcmu_runner() {
  echo "+ tcmu-runner"
  tcmu-runner > "$VM_RUN/runner-rbd-tcmu-runner.out" 2>&1 &
  RR_HELPER_PID=$!
  # tcmu-runner owns the name after joining the netlink group.
  rn_until 30 rr_name_owned || { rr_helper_stop; fail "tcmu-runner never owned org.kernel.TCMUService1"; return; }
  rr_runner_refused runner-rbd-beside-tcmu-runner \
    "another daemon listens for TCMU device events: tcmu-runner (pid $RR_HELPER_PID); stop it first" || { rr_helper_stop; return 1; }
  rr_helper_stop
}

runner_rbd_refused_when_the_name_is_owned() {
  echo "+ python3: own org.kernel.TCMUService1"
  python3 -c '
from gi.repository import Gio, GLib
loop = GLib.MainLoop()
Gio.bus_own_name(Gio.BusType.SYSTEM, "org.kernel.TCMUService1", Gio.BusNameOwnerFlags.NONE,
                 None, None, lambda *_: loop.quit())
loop.run()' &
  RR_HELPER_PID=$!
  rn_until 30 rr_name_owned || { rr_helper_stop; fail "the helper never owned the name"; return; }
  rr_runner_refused runner-rbd-name-owned "org.kernel.TCMUService1 is already owned" || { rr_helper_stop; return 1; }
  rr_helper_stop
  # The refused runner had announced command replies; it must have taken
  # that back, or this enable would wait for an answer nobody sends.
  local rc=0
  rn_backstore rrnowait "dev_config=file/$RR_DIR/nowait.img,dev_size=$((16 << 20))" || rc=$?
  rn_bounded_rmdir "$RN_HBA/rrnowait" || return
  ((rc != 124)) || fail "enable hung after the refused runner" || return
  ((rc == 0)) || fail "enable without a runner: status $rc"
}

runner_rbd_start() {
  rn_run_runner
}

# An image whose cluster does not answer takes its whole timeout to be
# refused; another backstore enabled meanwhile must not wait for that.
runner_rbd_slow_open_holds_up_no_other() {
  local slow_pid rc=0 t0 quick_s slow_s
  sed 's/^mon host = .*/mon host = v2:127.0.0.1:6999/' "$CEPH_CONF" > "$RR_DIR/dead.conf" || fail "cannot write dead.conf" || return
  grep -q '^mon host = v2:127.0.0.1:6999$' "$RR_DIR/dead.conf" || fail "no mon host line in $CEPH_CONF" || return
  t0=$SECONDS
  rn_backstore rslow "dev_config=rbd/rbd/$RR_TIMAGE;osd_op_timeout=12;conf=$RR_DIR/dead.conf,dev_size=$RR_SIZE" &
  slow_pid=$!
  sleep 1
  rn_backstore rquick "dev_config=file/$RR_DIR/quick.img,dev_size=$((16 << 20))" || rc=$?
  quick_s=$((SECONDS - t0))
  wait "$slow_pid" && slow_s=0 || slow_s=$?
  echo "quick enable: status $rc after ${quick_s}s; slow enable: status $slow_s after $((SECONDS - t0))s"
  rn_bounded_rmdir "$RN_HBA/rquick" || return
  rmdir "$RN_HBA/rslow" 2> /dev/null
  ((rc == 0)) || fail "the quick enable failed with status $rc" || return
  ((quick_s < 8)) || fail "the quick enable took ${quick_s}s: it waited for the slow one" || return
  ((slow_s != 0 && slow_s != 124)) || fail "the slow enable ended with status $slow_s, want a refusal" || return
  rn_log | grep -q "rslow: .*refused" || fail "the runner's log does not say why rslow was refused"
}

runner_rbd_targetcli_refuses_a_missing_image() {
  local out
  out=$(rn_targetcli /backstores/user:rbd create name=tnone size=64M "cfgstring=rbd/nosuch;conf=$CEPH_CONF")
  echo "$out"
  grep -q "nosuch" <<< "$out" || fail "targetcli did not print our message: $(tail -n 1 <<< "$out")" || return
  [[ -z "$(rn_bs tnone)" ]] || fail "the backstore was created anyway"
}

runner_rbd_targetcli_serves_an_image() {
  local out bs serial want before after
  out=$(rn_targetcli /backstores/user:rbd create name=trbd size=64M "cfgstring=rbd/$RR_TIMAGE;conf=$CEPH_CONF") ||
    fail "create failed: $(tail -n 1 <<< "$out")" || return
  echo "$out"
  bs=$(rn_bs trbd)
  [[ -n "$bs" ]] || fail "no trbd in configfs" || return
  rn_targetcli_loop /backstores/user:rbd/trbd || return
  want=$(cat "$bs/wwn/vpd_unit_serial")
  want=${want##*: }
  serial=$(sg_inq -p 0x80 "$RN_DEV" 2>&1)
  echo "$serial"
  grep -qw -- "$want" <<< "$serial" || fail "VPD 0x80 does not show rtslib's serial $want" || return
  rn_disk_checks "$RN_DEV" trbd || return
  must "write a pattern" dd if=/dev/urandom of="$RR_DIR/pattern" bs=1M count=4 status=none || return
  must "dd the pattern to the disk" dd if="$RR_DIR/pattern" of="$RN_DEV" bs=1M seek=32 oflag=direct status=none || return
  before=$(md5sum < "$RR_DIR/pattern")
  rn_targetcli_unloop || return
  must "delete trbd" targetcli /backstores/user:rbd delete trbd || return
  after=$(timeout 120 rbd -c "$CEPH_CONF" export "rbd/$RR_TIMAGE" - 2> /dev/null | tail -c +$((32 * 1048576 + 1)) | head -c 4M | md5sum)
  [[ "$after" == "$before" ]] || fail "the image does not hold what was written"
}

# ceph-iscsi's way: raw configfs writes, its control string and timeouts.
runner_rbd_as_ceph_iscsi_makes_it() {
  local bs=$RN_HBA/$RR_CNAME serial
  rn_backstore "$RR_CNAME" "dev_config=rbd/rbd/$RR_CIMAGE;osd_op_timeout=30;conf=$CEPH_CONF,dev_size=$RR_SIZE,max_data_area_mb=8,hw_max_sectors=1024" ||
    fail "enable failed: $(rn_log | tail -n 1)" || return
  rn_write "$bs/wwn/vpd_unit_serial" "$RR_SERIAL" || fail "serial write failed" || return
  rn_write "$bs/attrib/cmd_time_out" 0 || fail "cmd_time_out write failed" || return
  rn_write "$bs/attrib/qfull_time_out" 5 || fail "qfull_time_out write failed" || return
  rn_expose "$bs" || return
  serial=$(sg_inq -p 0x80 "$RN_DEV" 2>&1)
  echo "$serial"
  grep -qw "$RR_SERIAL" <<< "$serial" || fail "VPD 0x80 does not show $RR_SERIAL" || return
  rn_disk_checks "$RN_DEV" cimg
}

runner_rbd_resize_follows_the_image() {
  local bs=$RN_HBA/$RR_CNAME rc=0 size
  [[ -b "$RN_DEV" ]] || fail "no disk from the previous step" || return
  # Not resized in Ceph yet: refused, and the size stays.
  rn_write "$bs/attrib/dev_size" "$RR_GROWN" || rc=$?
  ((rc != 124)) || fail "the dev_size write hung" || return
  ((rc != 0)) || fail "dev_size $RR_GROWN was accepted before the image grew" || return
  [[ $(cat "$bs/attrib/dev_size") == "$RR_SIZE" ]] || fail "dev_size is $(cat "$bs/attrib/dev_size") after the refusal" || return
  must "rbd resize" rbd -c "$CEPH_CONF" resize --size 96M "rbd/$RR_CIMAGE" || return
  rn_write "$bs/attrib/dev_size" "$RR_GROWN" || fail "dev_size write after rbd resize failed: $(rn_log | tail -n 1)" || return
  echo 1 > "/sys/block/${RN_DEV#/dev/}/device/rescan"
  size=$(blockdev --getsize64 "$RN_DEV")
  ((size == RR_GROWN)) || fail "the disk is $size bytes after the rescan" || return
  must "e2fsck after growing" e2fsck -f -n "$RN_DEV"
}

runner_rbd_restart_serves_it_again() {
  [[ -b "$RN_DEV" ]] || fail "no disk from the previous step" || return
  serve_stop "$RN_PID" TERM 30 || fail "still running 30s after SIGTERM" || return
  ((SERVE_RC == 0)) || fail "exit status $SERVE_RC: $(rn_log | tail -n 1)" || return
  RN_PID=""
  [[ $(cat "$RN_HBA/$RR_CNAME/enable") == 1 ]] || fail "$RR_CNAME is gone after SIGTERM" || return
  rn_run_runner || return
  rn_log | grep -q "$RR_CNAME" || fail "the runner started again does not serve $RR_CNAME" || return
  must "e2fsck after the restart" e2fsck -f -n "$RN_DEV" || return
  must "fio verify after the restart" "${FIO_VERIFY[@]}" --name=cimg2 --filename="$RN_DEV" --iodepth=16 \
    --offset=$((80 << 20)) --size=16M
}

runner_rbd_teardown() {
  rn_unexpose
  rn_bounded_rmdir "$RN_HBA/$RR_CNAME" || return
  serve_stop "$RN_PID" TERM 30 || fail "still running 30s after SIGTERM" || return
  RN_PID=""
  ((SERVE_RC == 0)) || fail "exit status $SERVE_RC: $(rn_log | tail -n 1)" || return
  rn_teardown
  rn_configfs_clean
}

step runner_rbd_support ceph_rbd_support
step runner_rbd_cluster_start ceph_cluster_start
step runner_rbd_prepare runner_rbd_prepare
step runner_rbd_refused_beside_tcmu_runner runner_rbd_refused_beside_tcmu_runner
step runner_rbd_refused_when_the_name_is_owned runner_rbd_refused_when_the_name_is_owned
step runner_rbd_start runner_rbd_start
step runner_rbd_slow_open_holds_up_no_other runner_rbd_slow_open_holds_up_no_other
step runner_rbd_targetcli_refuses_a_missing_image runner_rbd_targetcli_refuses_a_missing_image
step runner_rbd_targetcli_serves_an_image runner_rbd_targetcli_serves_an_image
step runner_rbd_as_ceph_iscsi_makes_it runner_rbd_as_ceph_iscsi_makes_it
step runner_rbd_resize_follows_the_image runner_rbd_resize_follows_the_image
step runner_rbd_restart_serves_it_again runner_rbd_restart_serves_it_again
step runner_rbd_teardown runner_rbd_teardown
step runner_rbd_cluster_stop ceph_cluster_stop
step runner_rbd_kernel_log rn_kernel_log
# Whatever failed above: nothing of this file outlives it.
rr_helper_stop
rn_teardown
ceph_cluster_kill
rm -rf "$RR_DIR"
