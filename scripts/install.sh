#!/usr/bin/env bash
# Installs modeld from a release tarball (scripts/build-release.sh), or removes it.
#
# usage: install.sh [options] modeld-<version>-linux-<arch>.tar.gz
#        install.sh --uninstall [--purge] [options]
#
#   --prefix DIR   install directory (default /opt/modeld)
#   --root DIR     install under DIR instead of / (images, tests): no user is created and
#                  systemctl is not run
# The service runs as the system user modeld; the admin socket is group modeld's (0660), so an
# operator added with `usermod -aG modeld <user>` runs `modeld status` without sudo. Root's
# `modeld` works on /var/lib/modeld as modeld (never leaving files the service cannot change).
#   --node PATH    the node binary the service runs: Node.js >= 24.11 < 25 with the release's Node
#                  ABI (default: the release's own node/bin/node on x64 and arm64, else
#                  `command -v node`)
#   --no-start     enable the service but do not (re)start it
#   --force        install even if the tarball's arch differs from this machine's
#
# Refused with a reason: a tarball whose files differ from its SHA256SUMS, for another arch, whose
# native parts need a newer glibc than this machine's (RELEASE glibc_floor), a node of another ABI
# or version, and a downgrade (an older version over the installed one: its agent may not read the
# state the newer one migrated; --uninstall first to go back on purpose). An upgrade keeps
# /var/lib/modeld and /etc/modeld; the new agent migrates the state forward when it starts.
#   --uninstall    stop and remove the service, the install directory and /usr/local/bin/modeld;
#                  keeps /var/lib/modeld (models, store) and /etc/modeld
#   --purge        with --uninstall: also remove /var/lib/modeld, /etc/modeld and the modeld user
set -euo pipefail

prefix=/opt/modeld
root=
node_bin=
start=1
force=0
uninstall=0
purge=0
tarball=
USER_NAME=modeld

say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

while (($#)); do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --root) root="${2:?--root needs a directory}"; shift 2 ;;
    --node) node_bin="${2:?--node needs a path}"; shift 2 ;;
    --no-start) start=0; shift ;;
    --force) force=1; shift ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    -h|--help) awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"; exit 0 ;; # the opening comment
    -*) printf 'install.sh: unknown option %s\n' "$1" >&2; exit 2 ;;
    *) [[ -z "$tarball" ]] || { printf 'install.sh: one tarball only\n' >&2; exit 2; }; tarball="$1"; shift ;;
  esac
done

[[ "$prefix" == /* && "$prefix" != / && "$prefix" != *..* ]] || die "--prefix must be an absolute directory other than / (got $prefix)"
if [[ -n "$root" ]]; then
  [[ -d "$root" ]] || die "--root $root is not a directory"
  root="$(cd "$root" && pwd)"
  [[ "$root" == / ]] && root=
fi
((purge == 0 || uninstall == 1)) || die "--purge goes with --uninstall"

# Real system changes (user, systemctl) only when installing into / on a systemd machine.
on_system=0
[[ -z "$root" ]] && on_system=1
has_systemd=0
[[ $on_system == 1 && -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1 && has_systemd=1

dest="$root$prefix"
unit="$root/etc/systemd/system/modeld.service"
host_unit="$root/etc/systemd/system/modeld-host.service"
link="$root/usr/local/bin/modeld"
confdir="$root/etc/modeld"
statedir="$root/var/lib/modeld"

if ((uninstall)); then
  [[ -z "$tarball" ]] || die "--uninstall takes no tarball"
  if ((has_systemd)); then
    systemctl disable --now modeld.service modeld-host.service 2>/dev/null || true
  else
    say "systemctl skipped ($([[ $on_system == 1 ]] && echo 'no running systemd' || echo '--root'))"
  fi
  rm -f "$unit" "$host_unit"
  ((has_systemd)) && systemctl daemon-reload
  [[ -L "$link" ]] && rm -f "$link"
  rm -rf "$dest" "$dest.new" "$dest.old"
  say "removed $dest, $unit, $host_unit and $link"
  if ((purge)); then
    rm -rf "$statedir" "$confdir"
    say "purged $statedir and $confdir"
    if ((on_system)) && getent passwd "$USER_NAME" >/dev/null; then
      userdel "$USER_NAME" 2>/dev/null || say "could not remove user $USER_NAME"
    fi
  else
    say "kept $statedir (models, store) and $confdir; --purge removes them"
  fi
  exit 0
fi

[[ -n "$tarball" ]] || { printf 'install.sh: which tarball? (install.sh --help)\n' >&2; exit 2; }
[[ -f "$tarball" && -r "$tarball" ]] || die "cannot read tarball $tarball"

work="$(mktemp -d "${TMPDIR:-/tmp}/modeld-install.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tar -xzf "$tarball" -C "$work" || die "$tarball is not a gzip tar archive"
top=("$work"/modeld-*)
[[ ${#top[@]} == 1 && -f "${top[0]}/RELEASE" && -f "${top[0]}/dist/agent/cli/index.js" ]] || die "$tarball is not a modeld release (no modeld-*/RELEASE)"
src="${top[0]}"
field() { sed -n "s/^$1=//p" "$src/RELEASE"; }
release_arch="$(field arch)"
release_version="$(field version)"
release_abi="$(field node_abi)"
release_node="$(field node)"
glibc_floor="$(field glibc_floor)"

# Every file as built (releases before SHA256SUMS have none to check).
if [[ -f "$src/SHA256SUMS" ]]; then
  [[ "$(sha256sum "$src/SHA256SUMS" | cut -d' ' -f1)" == "$(field sha256sums)" ]] || die "$tarball is damaged: its SHA256SUMS does not match RELEASE"
  bad="$(cd "$src" && sha256sum --check --quiet --strict SHA256SUMS 2>/dev/null | sed -n 's/: FAILED.*//p' | head -n3 | tr '\n' ' ')" || true
  [[ -z "$bad" ]] || die "$tarball is damaged: ${bad}differ from its SHA256SUMS"
  (cd "$src" && sha256sum --check --quiet --strict SHA256SUMS >/dev/null 2>&1) || die "$tarball is damaged: its SHA256SUMS does not check (missing files or malformed lines)"
fi
case "$(uname -m)" in
  x86_64) machine=x64 ;; aarch64|arm64) machine=arm64 ;; armv7l|armv7*|armv8l) machine=armv7 ;; *) machine="$(uname -m)" ;;
esac
if [[ "$release_arch" != "$machine" ]]; then
  ((force)) || die "tarball is for $release_arch, this machine is $machine (--force to install anyway)"
  say "warning: installing a $release_arch release on $machine (--force)"
fi

# glibc: the native parts (better-sqlite3 cross-built on glibc 2.34+, onnxruntime, node) need
# at least RELEASE's glibc_floor.
if [[ -n "$glibc_floor" ]]; then
  have_glibc="$(getconf GNU_LIBC_VERSION 2>/dev/null | sed -n 's/^glibc //p')"
  [[ -n "$have_glibc" ]] || die "this machine has no glibc (musl?): modeld's native parts need glibc >= $glibc_floor"
  if [[ "$(printf '%s\n%s\n' "$glibc_floor" "$have_glibc" | sort -V | head -n1)" != "$glibc_floor" ]]; then
    die "this machine has glibc $have_glibc; this release's native parts need glibc >= $glibc_floor (Debian 12+, Ubuntu 22.04+, Raspberry Pi OS bookworm+, JetPack 6+)"
  fi
fi

# Downgrade: an older version over the installed one is refused.
if [[ -f "$dest/RELEASE" ]]; then
  installed_version="$(sed -n 's/^version=//p' "$dest/RELEASE")"
  if [[ -n "$installed_version" && "$installed_version" != "$release_version" && "$(printf '%s\n%s\n' "$installed_version" "$release_version" | sort -V | head -n1)" == "$release_version" ]]; then
    die "refusing to downgrade modeld $installed_version to $release_version: the older agent may not read the state $installed_version migrated (to go back on purpose: install.sh --uninstall, then install)"
  fi
fi

# Node: >=24.11 <25 (package.json engines; Node 20 is end-of-life) and the ABI the native parts
# were built for. x64/arm64 releases bring their own (node/bin/node); --node replaces it.
bundled=0
[[ "$release_node" == bundled* && -z "$node_bin" ]] && bundled=1
if ((bundled)) && [[ "$release_arch" != "$machine" ]]; then
  node_version="${release_node#bundled }"
  say "bundled node $node_version for $release_arch not run here (this machine is $machine)"
else
  if ((bundled)); then node_bin="$src/node/bin/node"; fi
  [[ -n "$node_bin" ]] || node_bin="$(command -v node || true)"
  [[ -n "$node_bin" && -x "$node_bin" ]] || die "node not found: install Node.js 24 LTS (>= 24.11; e.g. Debian's nodejs from trixie-backports/forky, or nodejs.org's) or pass --node PATH"
  node_facts="$("$node_bin" -p 'process.versions.node + " " + process.versions.modules' 2>/dev/null)" || die "$node_bin does not run on this machine"
  read -r node_version node_abi <<<"$node_facts"
  IFS=. read -r nmaj nmin _ <<<"$node_version"
  if ((nmaj < 24 || (nmaj == 24 && nmin < 11))); then die "node $node_version at $node_bin is too old: modeld needs Node.js 24 LTS (>= 24.11 < 25)"; fi
  if ((nmaj > 24)); then die "node $node_version at $node_bin is newer than modeld supports: it needs Node.js 24 LTS (>= 24.11 < 25)"; fi
  if [[ -n "$release_abi" && "$node_abi" != "$release_abi" ]]; then
    die "node $node_version at $node_bin has Node ABI $node_abi; this release's native parts are built for ABI $release_abi"
  fi
  ((bundled)) || node_bin="$(readlink -f "$node_bin")"
fi

# The user the service runs as.
if ((on_system)); then
  if ! getent passwd "$USER_NAME" >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/modeld --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
    say "created system user $USER_NAME"
  fi
  # The group of the admin socket (admin.socketGroup): its members use `modeld status` without sudo.
  if ! getent group "$USER_NAME" >/dev/null; then
    groupadd --system "$USER_NAME"
    say "created group $USER_NAME"
  fi
  say "operators in group $USER_NAME need no sudo for modeld status: usermod -aG $USER_NAME <user> (then log in again)"
else
  say "user $USER_NAME not created (--root)"
fi

# The tree: written beside the old one, then swapped in (an upgrade never leaves half a tree).
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.new" "$dest.old"
cp -a "$src" "$dest.new"
if ((bundled)); then
  node_bin="$dest/node/bin/node"
else
  sed -i "s#^NODE=.*#NODE=\"\${MODELD_NODE:-$node_bin}\"#" "$dest.new/bin/modeld"
fi
chmod 755 "$dest.new/bin/modeld"
[[ -e "$dest" ]] && mv "$dest" "$dest.old"
mv "$dest.new" "$dest"
rm -rf "$dest.old"
say "installed modeld $release_version ($release_arch) into $dest, node $node_version at $node_bin"

# The command on PATH: a relative link, so it also resolves inside --root.
mkdir -p "$(dirname "$link")"
rel="$(realpath -m --relative-to="$(dirname "$link")" "$dest/bin/modeld")"
ln -sfn "$rel" "$link"

# Config from the template, only when there is none.
mkdir -p "$confdir"
if [[ -e "$confdir/config.yaml" ]]; then
  say "kept $confdir/config.yaml (the new template is $dest/systemd/config.example.yaml)"
else
  install -m 0640 "$dest/systemd/config.example.yaml" "$confdir/config.yaml"
  ((on_system)) && chgrp "$USER_NAME" "$confdir/config.yaml"
  say "wrote $confdir/config.yaml from the template"
fi

# The units (the agent and the runtime host), pointing at this prefix.
mkdir -p "$(dirname "$unit")"
for u in "$unit" "$host_unit"; do
  sed "s#/opt/modeld#$prefix#g" "$dest/systemd/$(basename "$u")" >"$u.tmp"
  chmod 0644 "$u.tmp"
  mv "$u.tmp" "$u"
  say "installed $u"
done

if ((has_systemd)); then
  systemctl daemon-reload
  systemctl enable modeld-host.service modeld.service
  # The host is restarted only when it runs an older release; the agent always (models keep serving).
  if ((start)); then systemctl restart modeld-host.service modeld.service && say "modeld started: systemctl status modeld modeld-host"; fi
else
  say "systemctl skipped ($([[ $on_system == 1 ]] && echo 'no running systemd' || echo '--root')): enable with systemctl enable --now modeld-host modeld"
fi
