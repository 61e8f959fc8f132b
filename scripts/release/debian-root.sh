#!/usr/bin/env bash
# Extracts Debian packages of another arch or suite, with everything they depend on, into a
# folder: a sysroot for qemu (npm run smoke) or the libraries of the controller image. The
# system's apt sources are left alone: a side configuration (its own sources list, lists, cache
# and an empty dpkg status, so the whole closure is resolved) under the cache, on the same Debian
# mirror the machine's own sources name. Downloaded .debs stay in the cache for later runs.
#
# usage: scripts/release/debian-root.sh DEB_ARCH SUITE OUT PACKAGE...
#   DEB_ARCH amd64|arm64|armhf, SUITE e.g. trixie or sid; OUT is created (must not exist).
#   Writes OUT/.debs: the packages and versions extracted.
set -euo pipefail
source "$(dirname "$0")/common.sh"

deb_arch="${1:?deb arch}" suite="${2:?suite}" out="${3:?out dir}"
shift 3
(($#)) || { echo "debian-root: which packages?" >&2; exit 2; }
[[ ! -e "$out" ]] || { echo "debian-root: $out exists" >&2; exit 2; }
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -f "$keyring" ]] || { echo "debian-root: $keyring is missing (apt-get install debian-archive-keyring)" >&2; exit 1; }

# The machine's own Debian mirror (its main suite's URI), e.g. from /etc/apt/sources.list.d/.
mirror="$(apt-get indextargets --format '$(REPO_URI) $(ORIGIN) $(RELEASE)' 2>/dev/null | awk '$2 == "Debian" && $3 !~ /-/ { print $1; exit }')"
[[ -n "$mirror" ]] || { echo "debian-root: no Debian mirror in this machine's apt sources (apt-get update first)" >&2; exit 1; }

side="$cache_root/debian/$suite-$deb_arch"
mkdir -p "$side/lists/partial" "$side/archives/partial" "$side/cache"
exec 9>"$side/.lock"
flock 9
echo "deb [arch=$deb_arch signed-by=$keyring] $mirror $suite main" >"$side/sources.list"
: >"$side/status"
apt_opts=(
  -o "Dir::Etc::sourcelist=$side/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::Etc::preferences=/dev/null"
  -o Dir::Etc::preferencesparts=- -o "Dir::State::Lists=$side/lists" -o "Dir::State::status=$side/status"
  -o "Dir::Cache=$side/cache" -o "Dir::Cache::archives=$side/archives"
  -o "APT::Architecture=$deb_arch" -o "APT::Architectures::=$deb_arch" -o APT::Install-Recommends=false
  -o Debug::NoLocking=1 -o APT::Sandbox::User=root -qq
)
update() { echo "debian-root: apt-get update ($suite, $deb_arch; side configuration in the cache)" >&2; apt-get "${apt_opts[@]}" update; }
# Lists older than a week are refreshed (sid moves; a removed version cannot be downloaded).
if [[ -z "$(find "$side/lists" -maxdepth 1 -name '*_Packages*' -mtime -7 2>/dev/null | head -n1)" ]]; then update; fi

resolve() { apt-get "${apt_opts[@]}" install -s "$@" 2>&1 | sed -n 's/^Inst \([^ ]*\) (\([^ ]*\) .*/\1 \2/p'; }
mapfile -t closure < <(resolve "$@")
((${#closure[@]})) || { update; mapfile -t closure < <(resolve "$@"); }
((${#closure[@]})) || { apt-get "${apt_opts[@]}" install -s "$@" >&2 || true; echo "debian-root: cannot resolve $* in $suite/$deb_arch" >&2; exit 1; }
if ! apt-get "${apt_opts[@]}" install -d -y "$@" >/dev/null 2>&1; then
  update
  mapfile -t closure < <(resolve "$@")
  apt-get "${apt_opts[@]}" install -d -y "$@" >/dev/null
fi

tmp="$out.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
for entry in "${closure[@]}"; do
  read -r name version <<<"$entry"
  debs=("$side/archives/${name}_${version//:/%3a}_"*.deb)
  [[ -f "${debs[0]}" ]] || { echo "debian-root: $name $version was not downloaded" >&2; rm -rf "$tmp"; exit 1; }
  dpkg-deb -x "${debs[0]}" "$tmp"
  echo "$name $version" >>"$tmp/.debs"
done
# Merged /usr (trixie and later): base-files, which makes these links, is not extracted.
for d in bin sbin lib lib64; do [[ -e "$tmp/$d" || ! -d "$tmp/usr/$d" ]] || ln -s "usr/$d" "$tmp/$d"; done
mv "$tmp" "$out"
