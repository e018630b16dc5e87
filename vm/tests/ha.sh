# shellcheck shell=bash
# Two gateways, one Ceph image: ALUA failover with the RBD exclusive lock.
# One kernel, the single-node Ceph cluster, an image with the exclusive
# lock served by two tcmu-serve processes ("gateways") as TPGs 1 and 2 of
# one iSCSI target on 127.0.0.1:3260 and 127.0.0.2:3260, with ceph-iscsi's
# ALUA groups (gateway 1 owns the image: active/optimized); open-iscsi logs
# in on both portals and dm-multipath (multipath-tools, the ALUA
# prioritizer) makes one device of the two paths, with ext4 on it.
# - Under fio with verification, the gateway holding the lock dies: its
#   process is killed (SIGKILL) and its portal cut off (nftables drops its
#   traffic, as when its machine is gone). I/O goes on through the other
#   gateway, which breaks the dead one's lock (Ceph blocklists its client)
#   and takes it; fio verifies with no error. The longest pause a writer
#   saw is measured.
# - The dead gateway comes back (a new process, its portal reachable, its
#   path reinstated); then the other one dies: same again, the other way.
# - ext4 written across both failovers is e2fsck-clean.
# Then the same image in ceph-iscsi's layout under `tcmu-serve runner`: two
# user:rbd backstores (one per gateway) made by configfs writes, ALUA
# groups ao/ano2 created after the backstores are open (as ceph-iscsi
# does), TPG 1 and 2 on the two addresses. The runner must switch both
# devices to failover mode when it sees the groups. One runner serves both
# gateways here, so a gateway "dies" by its portal being cut off while its
# device lives on: the other breaks its lock, and the cut-off one, fenced,
# takes the image back with a new client when the failover goes the other
# way. Same fio verification, pauses and e2fsck.
# Sourced by vm/guest/suite (helpers: vm/guest/lib.sh).

# shellcheck source=vm/guest/ceph-cluster.sh
source "$GUEST_DIR/ceph-cluster.sh"
# shellcheck source=vm/guest/iscsi-initiator.sh
source "$GUEST_DIR/iscsi-initiator.sh"
# shellcheck source=vm/guest/runner-lib.sh
source "$GUEST_DIR/runner-lib.sh"

HA_IQN=iqn.2026-12.org.tcmu-rs:ha
HA_IMAGE=ha
HA_SERIAL=ha-image-0001
HA_ADDR=(unused 127.0.0.1 127.0.0.2)
HA_PID=(unused "" "")
HA_STARTS=(unused 0 0)
HA_PATH=(unused "" "")
HA_MAP=""
HA_MNT=/tmp/ha-mnt
HA_DIR=/tmp/ha-test
# How long a failover may take, from the kill to I/O going on.
HA_BOUND=60
HA_TICKER=""
HA_FIO=""
# Kernel log lines before this file: its own are checked for splats.
HA_DMESG_BASE=$(dmesg | wc -l)
# standalone: a tcmu-serve per gateway; runner: one runner, ceph-iscsi's layout.
HA_MODE=standalone
# The runner's backstores, one per gateway.
HA_RN_BS=(unused hagw1 hagw2)
# The runner's output ($RN_OUT-N.*), apart from runner.sh's.
RN_OUT=$VM_RUN/ha-runner

ha_out() { echo "$VM_RUN/tcmu-serve-ha$1-${HA_STARTS[$1]}"; }

# ha_log N: the log of the process serving gateway N.
ha_log() {
  if [[ "$HA_MODE" == runner ]]; then
    echo "$RN_OUT-$RN_STARTS.stderr"
  else
    echo "$(ha_out "$1").stderr"
  fi
}

ha_prepare() {
  local p
  for p in multipath dmsetup nft iscsiadm fio mkfs.ext4 e2fsck; do
    command -v "$p" > /dev/null || fail "$p is not installed" || return
  done
  mkdir -p "$HA_DIR" "$HA_MNT"
  must "modprobe dm_multipath" modprobe dm_multipath || return
  must "modprobe scsi_dh_alua" modprobe scsi_dh_alua || return
  must "rbd create $HA_IMAGE" rbd -c "$CEPH_CONF" create --size 256M \
    --image-feature layering,exclusive-lock "rbd/$HA_IMAGE"
}

# ha_start N: gateway N serves the image as TPG N on its own address.
ha_start() {
  local n=$1
  HA_STARTS[n]=$((HA_STARTS[n] + 1))
  # Info level: the lock's steps are in the log.
  RUST_LOG=info serve_start "$(ha_out "$n")" --backend "rbd:rbd/$HA_IMAGE?conf=$CEPH_CONF&timeout=5" \
    --name "ha$n" --serial "$HA_SERIAL" --cmd-timeout 15 \
    --export "iscsi:$HA_IQN@${HA_ADDR[n]}:3260" --iscsi-no-auth --iscsi-tpg "$n" --alua-gateways 1,2 || return
  HA_PID[n]=$SERVE_PID
}

# ha_node_set PORTAL NAME VALUE
ha_node_set() {
  must "iscsiadm update $2" iscsiadm -m node -T "$HA_IQN" -p "$1" -o update -n "$2" -v "$3"
}

ha_login() {
  local n=$1 portal=${HA_ADDR[1]}:3260 i
  portal=${HA_ADDR[n]}:3260
  timeout 60 iscsiadm -m discovery -t st -p "$portal" || fail "discovery through $portal failed" || return
  # A dead portal is noticed within seconds (NOP-Out every 2 s, answered
  # within 2 s), and its commands are handed back to multipath 5 s later.
  ha_node_set "$portal" node.conn[0].timeo.noop_out_interval 2 || return
  ha_node_set "$portal" node.conn[0].timeo.noop_out_timeout 2 || return
  ha_node_set "$portal" node.session.timeo.replacement_timeout 5 || return
  must "login through $portal" iscsiadm -m node -T "$HA_IQN" -p "$portal" --login || return
  for ((i = 0; i < 300; i++)); do
    HA_PATH[n]=$(iscsi_disk_of "${HA_ADDR[n]}")
    [[ -n "${HA_PATH[n]}" && -b "/dev/${HA_PATH[n]}" ]] && break
    sleep 0.1
  done
  [[ -b "/dev/${HA_PATH[n]}" ]] || fail "no disk through $portal within 30s" || return
  echo "path $n: ${HA_PATH[n]}"
}

# ha_udev_start: multipath finds its paths through udev's database, which
# no other test file needs; udevd runs for this file only.
HA_UDEVD=0
ha_udev_start() {
  must "start udevd" /lib/systemd/systemd-udevd --daemon || return
  HA_UDEVD=1
  must "udevadm trigger" udevadm trigger --action=add --subsystem-match=block --subsystem-match=scsi || return
  must "udevadm settle" udevadm settle --timeout=60
}
ha_udev_stop() {
  ((HA_UDEVD)) || return 0
  timeout 30 udevadm control --exit || pkill -KILL -f systemd-udevd
  HA_UDEVD=0
}

ha_multipath() {
  ((HA_UDEVD)) || fail "skipped: no udevd" || return
  cat > /etc/multipath.conf << 'EOF'
defaults {
    user_friendly_names no
    find_multipaths no
}
blacklist {
    device {
        vendor ".*"
        product ".*"
    }
}
blacklist_exceptions {
    device {
        vendor "TCMU-RS"
        product ".*"
    }
}
devices {
    device {
        vendor "TCMU-RS"
        product ".*"
        hardware_handler "1 alua"
        path_grouping_policy failover
        path_selector "queue-length 0"
        failback manual
        path_checker tur
        prio alua
        fast_io_fail_tmo 5
        no_path_retry queue
    }
}
EOF
  local out
  # udev must have taken in both paths' disks first (the second login may
  # be seconds old).
  must "udevadm settle" udevadm settle --timeout=60 || return
  out=$(timeout 60 multipath -v3 2>&1)
  echo "$out" | tail -n 60
  must "udevadm settle" udevadm settle --timeout=60 || return
  out=$(timeout 60 multipath -ll 2>&1)
  echo "$out"
  HA_MAP=$(dmsetup ls --target multipath 2> /dev/null | awk '$2 ~ /^\(/ { print $1; exit }')
  [[ -n "$HA_MAP" ]] || fail "multipath made no device" || return
  [[ -b "/dev/mapper/$HA_MAP" ]] || fail "no /dev/mapper/$HA_MAP" || return
  local table
  table=$(dmsetup table "$HA_MAP")
  echo "$table"
  # Two path groups of one path each; the ALUA prioritizer puts the
  # owner's (gateway 1, active/optimized) first, at priority 50.
  grep -q 'alua' <<< "$table" || fail "the map does not use the ALUA handler" || return
  [[ $(grep -c 'status=' <<< "$out") -eq 2 ]] || fail "want two path groups in $HA_MAP" || return
  grep -A1 'prio=50' <<< "$out" | grep -q "${HA_PATH[1]} " || fail "gateway 1's path is not the active/optimized group"
}

ha_mkfs() {
  [[ -n "$HA_MAP" ]] || fail "skipped: no multipath device" || return
  must "mkfs.ext4" mkfs.ext4 -q -F -O metadata_csum "/dev/mapper/$HA_MAP" || return
  must "mount" mount "/dev/mapper/$HA_MAP" "$HA_MNT"
}

# ha_ticker_start: write and sync a small file every 0.2 s, logging when
# each write completed; the longest gap is the pause a writer sees.
ha_ticker_start() {
  local log=$VM_RUN/ha-ticks-$1.txt
  : > "$log"
  (
    while :; do
      dd if=/dev/zero of="$HA_MNT/tick" bs=4k count=1 oflag=direct,dsync conv=notrunc status=none 2> /dev/null &&
        date +%s.%N >> "$log"
      sleep 0.2
    done
  ) &
  HA_TICKER=$!
}

ha_ticker_stop() {
  [[ -n "$HA_TICKER" ]] || return 0
  kill "$HA_TICKER" 2> /dev/null
  wait "$HA_TICKER" 2> /dev/null
  HA_TICKER=""
  return 0
}

# ha_pause NAME: the longest gap between two completed ticker writes.
ha_pause() {
  awk 'NR > 1 && $1 - prev > max { max = $1 - prev } { prev = $1 } END { printf "%.1f\n", max }' \
    "$VM_RUN/ha-ticks-$1.txt"
}

ha_fio_start() {
  HA_FIO_OUT=$VM_RUN/fio-ha-$1.txt
  "${FIO_VERIFY[@]}" --name="ha-$1" --filename="$HA_MNT/fio-$1.dat" --size=8M --loops=1 \
    --iodepth=8 --output="$HA_FIO_OUT" &
  HA_FIO=$!
}

ha_fio_wait() {
  local i
  for ((i = 0; i < 3000; i++)); do
    kill -0 "$HA_FIO" 2> /dev/null || break
    sleep 0.1
  done
  if kill -0 "$HA_FIO" 2> /dev/null; then
    kill -KILL "$HA_FIO"
    fail "fio did not finish within 300s"
    return
  fi
  local rc=0
  wait "$HA_FIO" || rc=$?
  HA_FIO=""
  cat "$HA_FIO_OUT"
  ((rc == 0)) || fail "fio exited $rc, see $(basename "$HA_FIO_OUT")" || return
  ! grep -qiE 'verify: bad|crc32c: verify failed|err= *[1-9]' "$HA_FIO_OUT" || fail "fio reported errors"
}

# ha_cut N / ha_mend N: make gateway N's portal unreachable, or reachable.
ha_cut() {
  must "nft table" nft add table inet ha || return
  must "nft chain" nft add chain inet ha "cut$1" '{ type filter hook input priority 0 ; }' || return
  must "nft rule" nft add rule inet ha "cut$1" ip daddr "${HA_ADDR[$1]}" tcp dport 3260 drop || return
  must "nft rule" nft add rule inet ha "cut$1" ip saddr "${HA_ADDR[$1]}" tcp sport 3260 drop
}
ha_mend() {
  must "nft delete chain" nft delete chain inet ha "cut$1"
}

# ha_failover FROM TO: kill gateway FROM under fio and the ticker (under
# the runner: cut it off only); I/O must go on through TO within
# HA_BOUND s, FROM's client blocklisted.
ha_failover() {
  local from=$1 to=$2 name=fail$1 t0 pause acquired
  [[ "$HA_MODE" == standalone ]] || name=$HA_MODE-fail$1
  [[ -n "$HA_MAP" ]] && mountpoint -q "$HA_MNT" || fail "skipped: no file system on the multipath device" || return
  [[ "$HA_MODE" == runner || -n "${HA_PID[from]}" ]] || fail "skipped: gateway $from is not running" || return
  local before
  before=$(ha_blocklisted)
  acquired=$(ha_lock_taken "$to")
  ha_ticker_start "$name"
  ha_fio_start "$name"
  sleep 5
  t0=$(date +%s.%N)
  if [[ "$HA_MODE" == runner ]]; then
    echo "cutting gateway $from off at $t0 (its device lives on)"
    ha_cut "$from" || return
  else
    echo "killing gateway $from at $t0"
    kill -KILL "${HA_PID[from]}"
    ha_cut "$from" || return
    wait "${HA_PID[from]}" 2> /dev/null
    HA_PID[from]=""
  fi
  ha_fio_wait || { ha_ticker_stop; return 1; }
  ha_ticker_stop
  dmsetup status "$HA_MAP"
  pause=$(ha_pause "$name")
  info "failover $from -> $to: longest write pause ${pause}s"
  echo "$pause" > "$VM_RUN/ha-pause-$name.txt"
  awk -v p="$pause" -v b="$HA_BOUND" 'BEGIN { exit !(p < b) }' || fail "writes paused ${pause}s, more than ${HA_BOUND}s" || return
  grep -iE 'lock|fenced|session' "$(ha_log "$to")" | tail -n 8
  (($(ha_lock_taken "$to") > acquired)) || fail "gateway $to did not take the lock" || return
  local after
  after=$(ha_blocklisted)
  echo "blocklisted clients: $before before, $after after"
  ((after > before)) || fail "gateway $from's client was not blocklisted"
}

# ha_lock_taken N: how often gateway N's device logged taking the lock; its
# lines name the device (--name haN, or the backstore in runner mode, where
# one log holds both). 0 (printed by grep -c) is no failure.
ha_lock_taken() {
  local device=ha$1
  [[ "$HA_MODE" != runner ]] || device=${HA_RN_BS[$1]}
  grep -c "($device): exclusive lock acquired" "$(ha_log "$1")" || true
}

# ha_blocklisted: how many clients the cluster has blocklisted.
ha_blocklisted() {
  timeout 60 ceph -c "$CEPH_CONF" osd blocklist ls 2> /dev/null | grep -cE '^[0-9.:]+/[0-9]+'
}

# ha_comes_back N: a new gateway N (under the runner: the same one), its
# portal reachable, its path in use again by multipath.
ha_comes_back() {
  local n=$1 i dev
  if [[ "$HA_MODE" == standalone ]]; then ha_start "$n" || return; fi
  ha_mend "$n" || return
  dev=${HA_PATH[n]}
  for ((i = 0; i < 600; i++)); do
    timeout 10 sg_turs "/dev/$dev" > /dev/null 2>&1 && break
    sleep 0.1
  done
  timeout 10 sg_turs "/dev/$dev" || fail "path $n ($dev) does not answer again within 60s" || return
  # No multipathd runs here: reinstate the path by hand.
  must "reinstate $dev" dmsetup message "$HA_MAP" 0 reinstate_path "$(cat "/sys/block/$dev/dev")" || return
  dmsetup status "$HA_MAP"
}

ha_fsck() {
  [[ -n "$HA_MAP" ]] || fail "skipped: no multipath device" || return
  if mountpoint -q "$HA_MNT"; then must "umount" umount "$HA_MNT" || return; fi
  must "e2fsck" e2fsck -fn "/dev/mapper/$HA_MAP"
}

ha_teardown() {
  ha_ticker_stop
  if mountpoint -q "$HA_MNT"; then umount "$HA_MNT"; fi
  if [[ -n "$HA_MAP" ]]; then
    dmsetup message "$HA_MAP" 0 fail_if_no_path 2> /dev/null
    must "remove $HA_MAP" dmsetup remove "$HA_MAP" || return
    HA_MAP=""
  fi
  nft delete table inet ha 2> /dev/null
  timeout 60 iscsiadm -m node -T "$HA_IQN" --logout || true
  local n
  for n in 1 2; do
    [[ -n "${HA_PID[n]}" ]] || continue
    serve_stop "${HA_PID[n]}" TERM 30 || fail "gateway $n still running 30s after SIGTERM" || return
    HA_PID[n]=""
  done
  # Gateways killed on purpose leave their backstores and TPGs: remove
  # what is left, as an administrator would.
  local d
  for d in "$CFS"/iscsi/"$HA_IQN"/tpgt_*; do
    [[ -d "$d" ]] || continue
    echo 0 > "$d/enable" 2> /dev/null
    rmdir "$d"/np/* 2> /dev/null
    rm -f "$d"/lun/lun_0/ha* 2> /dev/null
    rmdir "$d"/lun/lun_0 "$d" 2> /dev/null
  done
  rmdir "$CFS/iscsi/$HA_IQN" 2> /dev/null
  for d in "$CFS"/core/user_*/ha*; do
    [[ -d "$d" ]] || continue
    rmdir "$d"/alua/ao "$d"/alua/ano2 2> /dev/null
    rmdir "$d" 2> /dev/null
  done
  rmdir "$CFS"/core/user_* 2> /dev/null
  local left
  left=$(cfs_leftovers)
  [[ -z "$left" && -z "$(iscsi_targets)" ]] || fail "configfs not clean: $(tr '\n' ' ' <<< "$left") $(iscsi_targets)"
}

# ha_runner_start: the runner, without D-Bus (nothing here calls it).
ha_runner_start() {
  HA_MODE=runner
  HA_PATH=(unused "" "")
  # Info level: the lock's steps are in the log.
  RUST_LOG=info rn_run_runner --no-dbus
}

# ha_ceph_iscsi_layout: what ceph-iscsi makes on a gateway, by configfs
# writes: the backstore (enabled, so the runner opens the image), its
# serial, the target's TPGs with the LUN, then the ALUA groups and the
# LUN's group, then the TPG enabled. Both gateways' share one kernel here.
ha_ceph_iscsi_layout() {
  local n bs tpg a name id state
  for n in 1 2; do
    bs=$RN_HBA/${HA_RN_BS[n]}
    rn_backstore "${HA_RN_BS[n]}" \
      "dev_config=rbd/rbd/$HA_IMAGE;osd_op_timeout=5;conf=$CEPH_CONF,dev_size=$((256 << 20))" ||
      fail "enable ${HA_RN_BS[n]} failed: $(rn_log | tail -n 1)" || return
    rn_write "$bs/wwn/vpd_unit_serial" "$HA_SERIAL" || fail "serial write failed" || return
    rn_write "$bs/attrib/cmd_time_out" 15 || fail "cmd_time_out write failed" || return
  done
  if rn_log | grep -q 'implicit ALUA groups'; then
    fail "failover mode before there are groups"
    return
  fi
  for n in 1 2; do
    tpg=$CFS/iscsi/$HA_IQN/tpgt_$n
    mkdir -p "$tpg/lun/lun_0" "$tpg/np/${HA_ADDR[n]}:3260" || fail "cannot create TPG $n" || return
    ln -s "$RN_HBA/${HA_RN_BS[n]}" "$tpg/lun/lun_0/${HA_RN_BS[n]}" || fail "cannot link LUN 0 of TPG $n" || return
    for a in authentication=0 generate_node_acls=1 cache_dynamic_acls=1 demo_mode_write_protect=0; do
      rn_write "$tpg/attrib/${a%=*}" "${a#*=}" || fail "TPG $n: ${a%=*} write failed" || return
    done
  done
  for n in 1 2; do
    bs=$RN_HBA/${HA_RN_BS[n]}
    for a in ao:1:0 ano2:2:1; do
      IFS=: read -r name id state <<< "$a"
      mkdir "$bs/alua/$name" || fail "cannot create group $name of ${HA_RN_BS[n]}" || return
      rn_write "$bs/alua/$name/tg_pt_gp_id" "$id" && rn_write "$bs/alua/$name/alua_access_type" 1 &&
        rn_write "$bs/alua/$name/alua_support_offline" 0 && rn_write "$bs/alua/$name/alua_support_unavailable" 0 &&
        rn_write "$bs/alua/$name/nonop_delay_msecs" 0 && rn_write "$bs/alua/$name/implicit_trans_secs" 30 &&
        rn_write "$bs/alua/$name/alua_access_state" "$state" || fail "cannot configure group $name" || return
    done
    name=ao
    ((n == 1)) || name=ano$n
    rn_write "$CFS/iscsi/$HA_IQN/tpgt_$n/lun/lun_0/alua_tg_pt_gp" "$name" || fail "cannot put LUN 0 of TPG $n in $name" || return
  done
  for n in 1 2; do
    rn_write "$CFS/iscsi/$HA_IQN/tpgt_$n/enable" 1 || fail "cannot enable TPG $n" || return
  done
}

# ha_runner_failover_on: the initiator's INQUIRY and REPORT TARGET PORT
# GROUPS made the runner read the groups: both devices are in failover mode.
ha_runner_failover_on() {
  rn_log | grep 'implicit ALUA groups'
  (($(rn_log | grep -c 'implicit ALUA groups (ao, ano2).*exclusive lock from now on') == 2)) ||
    fail "the runner did not switch both gateways' devices to failover mode"
}

# ha_runner_teardown: the initiator's side as in ha_teardown, then the
# layout removed as ceph-iscsi removes it, then the runner stopped.
ha_runner_teardown() {
  local n tpg bs
  ha_ticker_stop
  if mountpoint -q "$HA_MNT"; then umount "$HA_MNT"; fi
  if [[ -n "$HA_MAP" ]]; then
    dmsetup message "$HA_MAP" 0 fail_if_no_path 2> /dev/null
    must "remove $HA_MAP" dmsetup remove "$HA_MAP" || return
    HA_MAP=""
  fi
  nft delete table inet ha 2> /dev/null
  timeout 60 iscsiadm -m node -T "$HA_IQN" --logout || true
  for n in 1 2; do
    tpg=$CFS/iscsi/$HA_IQN/tpgt_$n
    [[ -d "$tpg" ]] || continue
    rn_write "$tpg/enable" 0
    rmdir "$tpg/np/${HA_ADDR[n]}:3260" 2> /dev/null
    rm -f "$tpg/lun/lun_0/${HA_RN_BS[n]}"
    rmdir "$tpg/lun/lun_0" "$tpg" || fail "cannot remove TPG $n" || return
  done
  rmdir "$CFS/iscsi/$HA_IQN" 2> /dev/null
  for n in 1 2; do
    bs=$RN_HBA/${HA_RN_BS[n]}
    [[ -d "$bs" ]] || continue
    rmdir "$bs/alua/ao" "$bs/alua/ano2" 2> /dev/null
    rn_bounded_rmdir "$bs" || return
  done
  if [[ -n "$RN_PID" ]]; then
    serve_stop "$RN_PID" TERM 30 || fail "the runner still runs 30s after SIGTERM" || return
    RN_PID=""
    ((SERVE_RC == 0)) || fail "the runner exited $SERVE_RC: $(rn_log | tail -n 1)" || return
  fi
  rmdir "$RN_HBA" 2> /dev/null
  local left
  left=$(cfs_leftovers)
  [[ -z "$left" && -z "$(iscsi_targets)" ]] || fail "configfs not clean: $(tr '\n' ' ' <<< "$left") $(iscsi_targets)"
}

step ha_rbd_support ceph_rbd_support
step ha_cluster_start ceph_cluster_start
step ha_prepare ha_prepare
step ha_iscsid_start iscsid_start "$VM_RUN/ha-iscsid.log"
step ha_gateway_1_start ha_start 1
step ha_gateway_2_start ha_start 2
step ha_login_1 ha_login 1
step ha_login_2 ha_login 2
step ha_udev_start ha_udev_start
step ha_multipath_device ha_multipath
step ha_ext4 ha_mkfs
step ha_failover_1_to_2 ha_failover 1 2
step ha_gateway_1_comes_back ha_comes_back 1
step ha_failover_2_to_1 ha_failover 2 1
step ha_ext4_fsck_clean ha_fsck
# The failovers make the initiator log lost connections, failed paths and
# I/O errors of the dead path on purpose; a splat or a hung task is a bug.
ha_kernel_log() {
  local bad
  bad=$(dmesg | tail -n +$((HA_DMESG_BASE + 1)) | grep -E 'cut here|BUG:|WARNING:|Call Trace|blocked for more than')
  [[ -z "$bad" ]] && return 0
  echo "$bad"
  fail "kernel: $(head -n 1 <<< "$bad")"
}

step ha_teardown ha_teardown
step ha_runner_start ha_runner_start
step ha_runner_ceph_iscsi_layout ha_ceph_iscsi_layout
step ha_runner_login_1 ha_login 1
step ha_runner_login_2 ha_login 2
step ha_runner_multipath_device ha_multipath
step ha_runner_failover_mode_on ha_runner_failover_on
step ha_runner_ext4 ha_mkfs
step ha_runner_failover_1_to_2 ha_failover 1 2
step ha_runner_gateway_1_comes_back ha_comes_back 1
step ha_runner_failover_2_to_1 ha_failover 2 1
step ha_runner_ext4_fsck_clean ha_fsck
step ha_runner_teardown ha_runner_teardown
step ha_iscsid_stop iscsid_stop
step ha_udev_stop ha_udev_stop
step ha_cluster_stop ceph_cluster_stop
step ha_kernel_log ha_kernel_log
# The lost connections and the failed paths are logged on purpose.
klog_mark
# Whatever failed above: nothing outlives this file (errexit is on here).
ha_ticker_stop || true
for ha_pid in "${HA_PID[@]:1}"; do
  if [[ -n "$ha_pid" ]]; then kill -KILL "$ha_pid" 2> /dev/null || true; fi
done
nft delete table inet ha 2> /dev/null || true
rn_teardown || true
ha_udev_stop || true
iscsid_kill
ceph_cluster_kill
