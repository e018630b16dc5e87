# shellcheck shell=bash
# Settings and helpers shared by the host-side VM scripts (sourced, not run).
#
# Everything large (kernel package, unpacked kernel, initramfs, run dirs) lives
# in $VM_WORK, by default target/vm in the repository: git-ignored, and wiped
# by `cargo clean` like any other build output.

VM_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$VM_DIR/.." && pwd)"
VM_WORK="${VM_WORK:-$REPO_ROOT/target/vm}"
# shellcheck disable=SC2034 # used by the scripts that source this file
VM_INITRD="$VM_WORK/initramfs.cpio.gz"

log() { printf '[vm %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Run apt-get update at most once per process tree.
apt_update_once() {
  [[ -n "${VM_APT_UPDATED:-}" ]] && return 0
  log "apt-get update"
  apt-get update -qq >&2 || die "apt-get update failed"
  export VM_APT_UPDATED=1
}

# install_deps GROUP...: scripts/install-deps (one apt transaction for every
# missing package of those groups, then a check of the programs they call).
install_deps() { "$REPO_ROOT/scripts/install-deps" "$@" || exit 1; }

# The kernel release to boot: $VM_KVER, else whatever linux-image-amd64 of the
# host's Debian release depends on (e.g. 6.1.0-26-amd64).
kernel_release() {
  if [[ -n "${VM_KVER:-}" ]]; then
    echo "$VM_KVER"
    return
  fi
  local v
  v=$(apt-cache depends linux-image-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { sub("linux-image-", "", $2); print $2; exit }')
  if [[ -z "$v" ]]; then
    # Bare machines have no package lists yet.
    apt_update_once
    v=$(apt-cache depends linux-image-amd64 2>/dev/null |
      awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { sub("linux-image-", "", $2); print $2; exit }')
  fi
  [[ -n "$v" ]] || die "cannot tell which kernel linux-image-amd64 depends on"
  echo "$v"
}

# Where one kernel release is unpacked (dpkg -x) and its vmlinuz.
kernel_dir() { echo "$VM_WORK/kernel/$1"; }
kernel_image() { echo "$VM_WORK/kernel/$1/boot/vmlinuz-$1"; }

# build_tcmu_serve [plain]: set TCMU_SERVE to the binary under test. A
# TCMU_SERVE already set is used as is; otherwise `cargo build --release -p
# tcmu-serve`, with `--features rbd` when librbd-dev and librados-dev are
# installed, unless `plain` is given (the benchmark: linking librbd and
# librados adds their pages to the handler's resident memory).
# The guest runs it by its host path (not under /run or /dev/shm). On failure
# BUILD_ERROR says why.
BUILD_ERROR=""
# shellcheck disable=SC2034 # BUILD_ERROR is for the callers
build_tcmu_serve() {
  if [[ -z "${TCMU_SERVE:-}" ]]; then
    install_deps build # rustc links with cc
    # rustup installs into ~/.cargo/bin, which a non-login shell may lack.
    command -v cargo > /dev/null || PATH=$HOME/.cargo/bin:$PATH
    command -v cargo > /dev/null || { BUILD_ERROR="cargo not found"; return 1; }
    # With the rbd: backend (vm/tests/ceph-iscsi.sh) when librbd and
    # librados can be linked; the plain build otherwise.
    local features=(--features rbd) p
    [[ "${1:-}" != plain ]] || features=()
    for p in librbd-dev librados-dev; do
      dpkg-query -W -f='${Status}' "$p" 2> /dev/null | grep -q 'ok installed' || features=()
    done
    log "cargo build --release -p tcmu-serve ${features[*]}"
    (cd "$REPO_ROOT" && cargo build --release -p tcmu-serve "${features[@]}" >&2) ||
      { BUILD_ERROR="cargo build --release -p tcmu-serve ${features[*]} failed"; return 1; }
    # The library's example devices (vm/tests/examples.sh) and the netlink
    # probe (vm/tests/netlink.sh) run in the VM too.
    log "cargo build --release -p tcmu-target --examples; -p tcmu-core --example tcmu-netlink-probe"
    (cd "$REPO_ROOT" && cargo build --release -p tcmu-target --examples >&2 &&
      cargo build --release -p tcmu-core --example tcmu-netlink-probe >&2) ||
      { BUILD_ERROR="cargo build of the examples failed"; return 1; }
    TCMU_SERVE=$REPO_ROOT/target/release/tcmu-serve
  fi
  TCMU_SERVE=$(readlink -f "$TCMU_SERVE")
  [[ -x "$TCMU_SERVE" ]] || { BUILD_ERROR="no executable $TCMU_SERVE"; return 1; }
}
