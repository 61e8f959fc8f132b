#!/usr/bin/env bash
# Prints the path of better-sqlite3's native addon (better_sqlite3.node) for a release arch,
# stripped. For this host's arch: the build in node_modules. For another: cross-compiled from the
# npm package's own source (node-gyp with the GNU cross tools, about 70 s of CPU) and kept in the
# cache by (arch, better-sqlite3 version, Node ABI), so a later build reuses it.
#
# usage: scripts/release/better-sqlite3.sh x64|arm64|armv7 NODEDIR
#   NODEDIR: Node headers (include/node) of the Node the release runs on (its ABI).
# Needs for armv7/arm64 on x64: g++-arm-linux-gnueabihf / g++-aarch64-linux-gnu, make, python3.
set -euo pipefail
source "$(dirname "$0")/common.sh"

arch="${1:?arch}"
nodedir="${2:?nodedir}"
target_facts "$arch"
src="$release_here/node_modules/better-sqlite3"
version="$("$host_node" -p "require('$src/package.json').version")"
abi="$(sed -n 's/^#define NODE_MODULE_VERSION \([0-9][0-9]*\)$/\1/p' "$nodedir/include/node/node_version.h")"
[[ -n "$abi" ]] || { echo "better-sqlite3: no NODE_MODULE_VERSION in $nodedir/include/node/node_version.h" >&2; exit 1; }
out="$cache_root/better-sqlite3/$version-node$abi-linux-$arch/better_sqlite3.node"
if [[ -f "$out" ]]; then echo "$out"; exit 0; fi

mkdir -p "$(dirname "$out")"
if [[ -z "$cross" ]]; then
  # This host's arch: node_modules holds a build; it must be for the same ABI.
  built="$src/build/Release/better_sqlite3.node"
  have="$("$host_node" -p process.versions.modules)"
  [[ -f "$built" && "$have" == "$abi" ]] || { echo "better-sqlite3: node_modules has no build for Node ABI $abi (npm ci under Node 24)" >&2; exit 1; }
  cp "$built" "$out.tmp"
  strip --strip-unneeded "$out.tmp"
  mv "$out.tmp" "$out"
  echo "$out"
  exit 0
fi

for tool in "$cross-gcc" "$cross-g++" make python3; do
  command -v "$tool" >/dev/null || { echo "better-sqlite3: $tool is missing (apt-get install g++-$cross make python3)" >&2; exit 1; }
done
gyp="$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js"
[[ -f "$gyp" ]] || { echo "better-sqlite3: npm's node-gyp not found at $gyp" >&2; exit 1; }
[[ -d "$src/deps" && -d "$src/src" ]] || { echo "better-sqlite3: $src has no source (deps/, src/)" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/modeld-bsq.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tar -C "$src" --exclude=./build -cf - . | tar -C "$work" -xf -
echo "better-sqlite3: cross-compiling $version for linux-$arch (Node ABI $abi, $cross)" >&2
gyp_arch="$node_arch"
(
  cd "$work"
  export CC="$cross-gcc" CXX="$cross-g++" LINK="$cross-g++" AR="$cross-ar"
  export CC_host=gcc CXX_host=g++ LINK_host=g++ AR_host=ar
  "$host_node" "$gyp" rebuild --release --arch="$gyp_arch" --nodedir="$nodedir" -j 2 >"$work/gyp.log" 2>&1
) || { tail -n 30 "$work/gyp.log" >&2; echo "better-sqlite3: cross-compile for $arch failed" >&2; exit 1; }
built="$work/build/Release/better_sqlite3.node"
readelf -h "$built" | grep -q "Machine:.*$elf_machine" || { echo "better-sqlite3: the build is not for $elf_machine" >&2; exit 1; }
"$cross-strip" --strip-unneeded "$built"
cp "$built" "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
