# shellcheck shell=bash
# iSCSI export: tcmu-serve serves a RAM disk as an LIO iSCSI target on
# 127.0.0.1:3260; the guest's open-iscsi initiator (iscsid + iscsiadm) logs
# in and gets a /dev/sdX that passes the ext4 and fio checks. Once in demo
# mode (--iscsi-no-auth), once with CHAP (no or wrong credentials refused).
# Every target object is gone after SIGTERM. Sourced by vm/guest/suite.

# shellcheck source=vm/guest/disk-suite.sh
source "$GUEST_DIR/disk-suite.sh"
# shellcheck source=vm/guest/iscsi-initiator.sh
source "$GUEST_DIR/iscsi-initiator.sh"

IS_PORTAL=$ISCSI_PORTAL
IS_NAME=iscsi0
IS_IQN=iqn.2026-11.org.tcmu-rs:iscsi0
IS_CHAP_NAME=iscsichap0
IS_CHAP_IQN=iqn.2026-11.org.tcmu-rs:iscsichap0
IS_CHAP_USER=initiator1
IS_CHAP_PASS=tcmu-rs-chap-7f3e9a
IS_CHAP_FILE=/tmp/iscsi-chap-password
IS_PID=""
IS_OUT=""
IS_DEV=""

# is_serve NAME EXTRA_ARGS...: start tcmu-serve with an iSCSI export; the
# ready line must be exactly iscsi://PORTAL/IQN/0.
is_serve() {
  local name=$1 iqn=$2
  shift 2
  IS_PID="" IS_DEV="" IS_OUT=$VM_RUN/tcmu-serve-$name
  [[ -z "$(iscsi_targets)" ]] || fail "iSCSI targets before start: $(iscsi_targets | tr '\n' ' ')" || return
  serve_start "$IS_OUT" --backend mem --size 256MiB --name "$name" --export iscsi "$@"
  local rc=$?
  if [[ -n "$SERVE_PID" ]] && kill -0 "$SERVE_PID" 2> /dev/null; then IS_PID=$SERVE_PID; fi
  ((rc == 0)) || return 1
  [[ "$READY" == "iscsi://$IS_PORTAL/$iqn/0" ]] ||
    fail "ready line names '$READY', want iscsi://$IS_PORTAL/$iqn/0" || return
  (($(grep -c '' "$IS_OUT.stdout") == 1)) || fail "more than one line on stdout" || return
  local tpg=$CFS/iscsi/$iqn/tpgt_1
  [[ $(cat "$tpg/enable") == 1 ]] || fail "TPG not enabled" || return
  [[ -d "$tpg/np/$IS_PORTAL" ]] || fail "no portal $IS_PORTAL" || return
  local link
  # The link is named after the backstore (lun_0 also holds attributes).
  link=$(readlink "$tpg/lun/lun_0/$name") || fail "LUN 0 has no link named $name" || return
  echo "LUN 0 -> $link"
  [[ "$link" == */core/user_*/"$name" ]] || fail "LUN 0 links $link, not backstore $name" || return
  grep -r . "$tpg/attrib/authentication" "$tpg/attrib/generate_node_acls" \
    "$tpg/attrib/demo_mode_write_protect" || true
}

is_discover() { iscsi_discover "$1"; }
is_login() {
  iscsi_login "$1" || return
  IS_DEV=$ISCSI_DEV
}
is_logout() {
  iscsi_logout "$1" || return
  IS_DEV=""
}

is_need_dev() { [[ -n "$IS_DEV" ]] || fail "skipped: no iSCSI disk"; }

is_inquiry() {
  is_need_dev || return
  iscsi_inquiry "$IS_DEV" 524288
}

# The generic ext4 checks of disk-suite.sh on the iSCSI disk.
is_as_sk() {
  is_need_dev || return
  SK_DEV=$IS_DEV SK_NAME=$IS_NAME
  "$@"
}

is_fio() {
  is_need_dev || return
  iscsi_fio "$IS_DEV" 64M iscsi
}

is_sigterm() {
  [[ -n "$IS_PID" ]] || fail "skipped: no tcmu-serve left running" || return
  serve_stop "$IS_PID" TERM 30 || fail "still running 30s after SIGTERM" || return
  IS_PID=""
  ((SERVE_RC == 0)) || fail "exit status $SERVE_RC after SIGTERM: $(stderr_tail "$IS_OUT.stderr")" || return
  [[ -z "$(iscsi_targets)" ]] || fail "iSCSI targets left: $(iscsi_targets | tr '\n' ' ')" || return
  local left
  left=$(cfs_leftovers)
  [[ -z "$left" ]] || fail "configfs not clean: $(tr '\n' ' ' <<< "$left")" || return
  ! grep -q 'panicked' "$IS_OUT.stderr" || fail "tcmu-serve panicked: $(grep -m1 panicked "$IS_OUT.stderr")"
}

is_reject_no_auth_choice() {
  neg_cli "$VM_RUN/neg-iscsi-auth" 'iscsi-no-auth' --backend mem --size 64MiB --name negis0 --export iscsi || return
  [[ -z "$(iscsi_targets)" ]] || fail "an iSCSI target was created"
}
is_reject_bad_iqn() {
  neg_cli "$VM_RUN/neg-iscsi-iqn" 'IQN' --backend mem --size 64MiB --name negis1 \
    --export iscsi:iqn.26-1.example --iscsi-no-auth
}
is_reject_bad_portal() {
  neg_cli "$VM_RUN/neg-iscsi-portal" 'portal' --backend mem --size 64MiB --name negis2 \
    --export iscsi@localhost:3260 --iscsi-no-auth
}

# CHAP: the password comes from a file; an initiator without credentials
# or with a wrong password is refused, the right ones log in.
is_chap_serve() {
  printf '%s\n' "$IS_CHAP_PASS" > "$IS_CHAP_FILE" && chmod 600 "$IS_CHAP_FILE" || fail "cannot write $IS_CHAP_FILE" || return
  is_serve "$IS_CHAP_NAME" "$IS_CHAP_IQN" --chap-user "$IS_CHAP_USER" --chap-password-file "$IS_CHAP_FILE" || return
  local tpg=$CFS/iscsi/$IS_CHAP_IQN/tpgt_1
  [[ $(cat "$tpg/attrib/authentication") == 1 ]] || fail "attrib/authentication is not 1" || return
  [[ $(cat "$tpg/auth/userid") == "$IS_CHAP_USER" ]] || fail "auth/userid is '$(cat "$tpg/auth/userid")'" || return
  ! tr '\0' ' ' < "/proc/$IS_PID/cmdline" | grep -q "$IS_CHAP_PASS" || fail "the password is on the command line" || return
  ! grep -q "$IS_CHAP_PASS" "$IS_OUT.stdout" "$IS_OUT.stderr" || fail "the password was printed"
}

is_node_set() {  # IQN NAME VALUE
  must "iscsiadm update $2" iscsiadm -m node -T "$1" -p "$IS_PORTAL" -o update -n "$2" -v "$3"
}

# is_login_refused IQN: a login that must fail (bounded), and no session.
is_login_refused() {
  local rc=0
  timeout -k 5 60 iscsiadm -m node -T "$1" -p "$IS_PORTAL" --login || rc=$?
  echo "login exit $rc"
  ((rc != 124 && rc != 137)) || fail "login did not finish within 60s" || return
  ((rc != 0)) || fail "login succeeded" || return
  ! grep -qs "^$1\$" /sys/class/iscsi_session/session*/targetname || fail "a session exists after a refused login"
}

is_chap_refused() {
  is_need_chap_target || return
  is_discover "$IS_CHAP_IQN" || return
  is_node_set "$IS_CHAP_IQN" node.session.initial_login_retry_max 1 || return
  is_login_refused "$IS_CHAP_IQN" || fail "without credentials: $STEP_REASON" || return
  is_node_set "$IS_CHAP_IQN" node.session.auth.authmethod CHAP || return
  is_node_set "$IS_CHAP_IQN" node.session.auth.username "$IS_CHAP_USER" || return
  is_node_set "$IS_CHAP_IQN" node.session.auth.password wrong-password-123 || return
  is_login_refused "$IS_CHAP_IQN" || fail "with a wrong password: $STEP_REASON"
}
is_need_chap_target() { [[ -n "$IS_PID" ]] || fail "skipped: the CHAP target did not start"; }

is_chap_login() {
  is_need_chap_target || return
  is_node_set "$IS_CHAP_IQN" node.session.auth.password "$IS_CHAP_PASS" || return
  is_login "$IS_CHAP_IQN" || return
  # Data round trip through the authenticated session.
  head -c 4M /dev/urandom > /tmp/iscsi-chap-pattern
  must "write" dd if=/tmp/iscsi-chap-pattern of="$IS_DEV" bs=1M seek=3 oflag=direct status=none || return
  cmp /tmp/iscsi-chap-pattern <(timeout 60 dd if="$IS_DEV" bs=1M skip=3 count=4 iflag=direct status=none) ||
    fail "read back differs from what was written"
}

# Stopped while an initiator is still logged in: the teardown ends the
# session instead of failing or hanging; the initiator can log out after.
is_live_sigterm() {
  is_serve iscsilive0 iqn.2026-11.org.tcmu-rs:iscsilive0 --iscsi-no-auth || return
  is_discover iqn.2026-11.org.tcmu-rs:iscsilive0 || return
  is_login iqn.2026-11.org.tcmu-rs:iscsilive0 || return
  must "write" dd if=/dev/urandom of="$IS_DEV" bs=1M count=4 oflag=direct status=none || return
  is_sigterm || return
  timeout -k 5 60 iscsiadm -m node -T iqn.2026-11.org.tcmu-rs:iscsilive0 -p "$IS_PORTAL" --logout ||
    fail "the initiator could not log out after the target went away" || return
  ! grep -qs '^iqn.2026-11.org.tcmu-rs:iscsilive0$' /sys/class/iscsi_session/session*/targetname ||
    fail "the session remains after logout"
}

step iscsi_reject_no_auth_choice is_reject_no_auth_choice
step iscsi_reject_bad_iqn is_reject_bad_iqn
step iscsi_reject_bad_portal is_reject_bad_portal
step iscsi_iscsid_start iscsid_start "$VM_RUN/iscsid.log"
step iscsi_start is_serve "$IS_NAME" "$IS_IQN" --iscsi-no-auth
step iscsi_discovery is_discover "$IS_IQN"
step iscsi_login is_login "$IS_IQN"
step iscsi_inquiry_readcap is_inquiry
step iscsi_ext4_mkfs is_as_sk sk_mkfs
step iscsi_ext4_write is_as_sk sk_write
step iscsi_ext4_fsck_clean is_as_sk sk_fsck
step iscsi_ext4_remount_verify is_as_sk sk_verify
step iscsi_fio_randwrite_verify is_fio
step iscsi_logout is_logout "$IS_IQN"
step iscsi_sigterm_teardown is_sigterm
step iscsi_kernel_log_clean klog_clean
step iscsi_chap_start is_chap_serve
step iscsi_chap_login_refused is_chap_refused
# The refused logins make the target log errors on purpose.
klog_mark
step iscsi_chap_login is_chap_login
step iscsi_chap_logout is_logout "$IS_CHAP_IQN"
step iscsi_chap_sigterm_teardown is_sigterm
step iscsi_chap_kernel_log_clean klog_clean
step iscsi_sigterm_while_logged_in is_live_sigterm
# The initiator logs the lost connection on purpose.
klog_mark
step iscsi_iscsid_stop iscsid_stop
# Whatever failed above: no initiator or target outlives this file.
if [[ -n "$IS_PID" ]]; then kill -KILL "$IS_PID" 2> /dev/null || true; fi
iscsid_kill
rm -f "$IS_CHAP_FILE"
