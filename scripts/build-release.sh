#!/usr/bin/env bash
# Builds the release tarball modeld-<version>-linux-<arch>.tar.gz:
#   modeld-<version>/
#     dist/agent, dist/shared     the compiled agent (npm run build)
#     node_modules/               production dependencies only, native parts for <arch> only
#     package.json RELEASE        RELEASE: version, arch, node ABI it was built with
#     bin/modeld                  launcher (install.sh pins the node binary in it)
#     systemd/modeld.service      the unit
#     systemd/config.example.yaml the commented config template
#     scripts/install.sh          the installer
#     docs/operations.md
#
# usage: scripts/build-release.sh [--arch x64|arm64|armv7] [--out DIR] [--skip-build]
#
# Native parts: better-sqlite3 is compiled for one arch and Node ABI. For the host's own arch the
# build already in node_modules is used. For another arch the script fetches better-sqlite3's
# prebuilt binary for linux-<arch> with prebuild-install (network needed); if there is none, build
# on the board itself (same script). onnxruntime-node ships linux x64 and arm64 binaries but none
# for 32-bit ARM: there the built-in onnx runtime uses onnxruntime-web's WASM build, of which the
# release keeps only the files Node loads (WASM_KEEP below).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"

host_arch() {
  case "$(node -p process.arch)" in
    x64) echo x64 ;; arm64) echo arm64 ;; arm) echo armv7 ;; *) node -p process.arch ;;
  esac
}

arch="$(host_arch)"
out="$here/.release"
build=1
while (($#)); do
  case "$1" in
    --arch) arch="${2:?--arch needs a value}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --skip-build) build=0; shift ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-release: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$arch" in
  x64) node_arch=x64 ;; arm64) node_arch=arm64 ;; armv7) node_arch=arm ;;
  *) echo "build-release: unsupported arch $arch (x64, arm64, armv7)" >&2; exit 2 ;;
esac

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
cat >"$stage/bin/modeld" <<'LAUNCHER'
#!/bin/sh
# modeld launcher: exec keeps the pid (systemd's main pid is node itself).
NODE="${MODELD_NODE:-node}"
here="$(dirname "$(readlink -f "$0")")"
# The runtime host without the agent's modules (less memory on a small board), with the V8 flags
# of HOST_NODE_FLAGS in agent/runtime/host-client.ts (a small young generation).
if [ "${1:-}" = host ]; then shift; exec "$NODE" --max-semi-space-size=2 "$here/../dist/agent/host/main.js" "$@"; fi
exec "$NODE" "$here/../dist/agent/cli/index.js" "$@"
LAUNCHER
chmod 755 "$stage/bin/modeld" "$stage/scripts/install.sh"
tgz="$(cd "$stage" && npm pack --silent --pack-destination "$work" 2>/dev/null | tail -n1)"
root="$work/root/$name"
mkdir -p "$root"
tar -xzf "$work/$tgz" -C "$root" --strip-components=1

# 2. Production dependencies of the agent: the closure of package.json's dependencies (less the
#    controller's own, below) resolved as Node does (nested node_modules first), copied as built.
#    onnxruntime-web's dist bundle for Node carries its own dependencies but onnxruntime-common,
#    so only that one is followed from it.
CONTROLLER_ONLY='["@kubernetes/client-node"]'
BUNDLED='{"onnxruntime-web":["onnxruntime-common"]}'
mapfile -t deps < <(node - "$here" "$CONTROLLER_ONLY" "$BUNDLED" <<'JS'
const fs = require('node:fs'), path = require('node:path');
const [root, skipJson, bundledJson] = process.argv.slice(2);
const skip = new Set(JSON.parse(skipJson));
const bundled = JSON.parse(bundledJson);
const pkgOf = (dir) => JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
const seen = new Set();
const resolve = (from, name) => {
  for (let d = from; ; d = path.dirname(d)) {
    const c = path.join(d, 'node_modules', name);
    if (fs.existsSync(path.join(c, 'package.json'))) return c;
    if (d === root || d === path.dirname(d)) return undefined;
  }
};
const visit = (dir, optional) => {
  if (seen.has(dir)) return;
  seen.add(dir);
  const p = pkgOf(dir);
  for (const [deps, opt] of [[p.dependencies, false], [p.optionalDependencies, true]]) {
    for (const name of Object.keys(deps ?? {})) {
      if (dir === root && skip.has(name)) continue;
      if (bundled[p.name] && !bundled[p.name].includes(name)) continue;
      const at = resolve(dir, name);
      if (at) visit(at, opt);
      else if (!opt) { console.error(`build-release: ${name} (needed by ${p.name}) is not installed`); process.exit(1); }
    }
  }
};
visit(root, false);
for (const d of seen) if (d !== root) console.log(path.relative(root, d));
JS
)
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
bsq="$root/node_modules/better-sqlite3"
rm -rf "$bsq/deps" "$bsq/src" "$bsq/build/Release/obj" "$bsq/build/Release/obj.target" "$bsq/build/Release/test_extension.node" \
  "$bsq/build/Release/.deps" "$bsq/build/deps" "$bsq/build/"*.mk "$bsq/build/Makefile" "$bsq/build/config.gypi" 2>/dev/null || true
if [[ "$arch" != "$(host_arch)" ]]; then
  echo "build-release: fetching better-sqlite3's prebuilt binary for linux-$node_arch (node $(node -p process.versions.node))" >&2
  rm -rf "$bsq/build"
  (cd "$bsq" && "$here/node_modules/.bin/prebuild-install" --platform linux --arch "$node_arch" --runtime node --target "$(node -p process.versions.node)") || {
    echo "build-release: no prebuilt better-sqlite3 for linux-$node_arch: run this script on the board itself" >&2
    exit 1
  }
fi
[[ -f "$bsq/build/Release/better_sqlite3.node" ]] || { echo "build-release: better-sqlite3 binary missing" >&2; exit 1; }

# The packed agent runs (on this host's arch only: another arch cannot be executed here).
if [[ "$arch" == "$(host_arch)" ]]; then node "$root/dist/agent/cli/index.js" --help >/dev/null; fi

cat >"$root/RELEASE" <<REL
version=$version
arch=$arch
node_abi=$(node -p process.versions.modules)
node_built_with=$(node -p process.versions.node)
REL

file="$out/$name-linux-$arch.tar.gz"
tar -C "$work/root" --owner=0 --group=0 --numeric-owner -czf "$file.tmp" "$name"
mv "$file.tmp" "$file"
echo "$file $(stat -c %s "$file")"
