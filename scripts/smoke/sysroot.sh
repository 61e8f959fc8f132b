#!/usr/bin/env bash
# Prints the path of a sysroot for running an arm64 or armv7 release under qemu-user
# (qemu-aarch64-static -L <sysroot> / qemu-arm-static), building it into the cache once:
#   arm64  Debian trixie's libc6, libstdc++6, libgcc-s1 (the bundled Node needs only these)
#   armv7  Debian sid's nodejs (the newest armhf Node 24 in Debian) and what it depends on
# plus proc/cpuinfo for an ARM CPU (qemu's -L serves it: onnxruntime's CPU detection segfaults on
# the host's x86 one) and smoke/exec-shim.so (scripts/smoke/exec-shim.c: runtimes through qemu).
#
# usage: scripts/smoke/sysroot.sh arm64|armv7
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../release/common.sh"

arch="${1:?arch}"
target_facts "$arch"
case "$arch" in
  arm64) suite=trixie packages=(libc6 libstdc++6 libgcc-s1) ;;
  armv7) suite=sid packages=(nodejs) ;;
  *) echo "sysroot: no qemu sysroot for $arch (arm64, armv7)" >&2; exit 2 ;;
esac
key="$(cat "$here/sysroot.sh" "$here/exec-shim.c" "$here/../release/debian-root.sh" | sha256sum | cut -c1-12)"
root="$cache_root/sysroot/$arch-$suite-$key"
if [[ -f "$root/.complete" ]]; then echo "$root"; exit 0; fi

command -v "$triplet-gcc" >/dev/null || { echo "sysroot: $triplet-gcc is missing (apt-get install gcc-$triplet)" >&2; exit 1; }
mkdir -p "$cache_root/sysroot"
rm -rf "$root"
"$here/../release/debian-root.sh" "$deb_arch" "$suite" "$root" "${packages[@]}"

mkdir -p "$root/proc"
for cpu in 0 1 2 3; do
  if [[ "$arch" == arm64 ]]; then
    printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' "$cpu"
  else
    printf 'processor\t: %s\nmodel name\t: ARMv7 Processor rev 3 (v7l)\nBogoMIPS\t: 108.00\nFeatures\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32\nCPU implementer\t: 0x41\nCPU architecture: 7\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' "$cpu"
  fi
done >"$root/proc/cpuinfo"

mkdir -p "$root/smoke"
"$triplet-gcc" -shared -fPIC -O2 -Wall -o "$root/smoke/exec-shim.so" "$here/exec-shim.c" -ldl
touch "$root/.complete"
echo "$root"
