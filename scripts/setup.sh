#!/usr/bin/env bash
# Installs what microsandbox needs on a Debian machine, idempotently:
#   - Debian packages: QEMU (microvm), e2fsprogs (disk images), debootstrap (test image),
#     xz-utils and kmod (kernel unpacking and module dependencies), docker-registry and
#     apache2-utils (the OCI tests run a real registry on 127.0.0.1, htpasswd makes its bcrypt users),
#     qemu-utils (qemu-img: the copy-on-write overlay of a disk-image root), tmux (the attach and SSH tests),
#     openssh-client (ssh, scp, sftp: the SSH tests drive the sandbox's SSH endpoint with them),
#     iproute2 and python3 (the network tests' hosts: network namespaces with small HTTP servers),
#     and what the Maven module microsandbox-kernel builds the guest kernel from:
#     linux-source-6.1 and its build dependencies (gcc, make, patch, flex, bison, bc, libelf-dev, libssl-dev),
#     and musl-tools (the guest agent links statically against musl)
#   - Debian's generic kernel, unpacked under $MSB_HOME/kernel (scripts/fetch-kernel.sh):
#     not the default any more, kept for -Dmicrosandbox.kernel=debian, its test and the bench
#   - the test image, a minimal Debian root filesystem with python3 (scripts/build-test-image.sh),
#     and the same with systemd (test-images/debian-systemd, for InitIT)
# Usage: scripts/setup.sh [--no-image]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

packages=(qemu-system-x86 qemu-utils e2fsprogs debootstrap xz-utils kmod ca-certificates tmux openssh-client
          docker-registry apache2-utils
          iproute2 python3
          linux-source-6.1 build-essential patch flex bison bc libelf-dev libssl-dev musl-tools)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

"$here/fetch-kernel.sh"
if [ "${1:-}" != "--no-image" ]; then
  "$here/build-test-image.sh"
  # the same with systemd as /sbin/init, for InitIT's systemd handoff
  MSB_TEST_IMAGE_EXTRA_PACKAGES=systemd,systemd-sysv \
    "$here/build-test-image.sh" "${MSB_HOME:-$HOME/.microsandbox}/test-images/debian-systemd"
fi
echo "setup: done"
