#!/usr/bin/env bash
# Installs the Debian packages kumo's build, tests and benchmarks need.
# Idempotent: packages already present are skipped. Needs root (or sudo) for apt-get.
set -euo pipefail

PKGS=(
  build-essential clang pkg-config make python3 ca-certificates
  libfdt-dev device-tree-compiler libcmocka-dev libslirp-dev libjansson-dev libmicrohttpd-dev
  libcurl4-openssl-dev libsqlite3-dev libpq-dev libzstd-dev libseccomp-dev
  qemu-system-misc qemu-user gcc-riscv64-linux-gnu libc6-dev-riscv64-cross binutils-riscv64-linux-gnu
  opensbi u-boot-qemu e2fsprogs cpio xz-utils zstd kmod debian-archive-keyring apt
  postgresql
  iproute2
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=sudo
  else
    echo "kumo: missing Debian packages: ${missing[*]}" >&2
    echo "kumo: run this script as root (or with passwordless sudo) to install them with apt-get" >&2
    exit 1
  fi
else
  SUDO=
fi
echo "kumo: installing ${#missing[@]} Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >&2
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
