#!/usr/bin/env bash
# Harness self-test (vm/boot vm/guest/probe.sh): the guest boots, reaches the
# host's userland, loads the LIO/TCMU modules from the unpacked kernel and
# mounts configfs. Needs no tcmu-serve.
set -euo pipefail
echo "kernel $(uname -r), $(nproc) cpus, repo at $REPO_ROOT"
modprobe -a target_core_user tcm_loop sd_mod sg
mountpoint -q /sys/kernel/config || mount -t configfs configfs /sys/kernel/config
ls /sys/kernel/config/target /sys/kernel/config/target/core
lsmod | awk 'NR > 1 { print $1 }' | sort | tr '\n' ' '
echo
echo "probe ok"
