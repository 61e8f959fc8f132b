#!/usr/bin/env bash
# What the tests need from Debian beside npm's packages (run by `npm test` before the tests):
# installs what is missing when run as root, else says exactly what to install and fails.
#   mosquitto          brokers the tests start (`mosquitto -p <port>`)
#   mosquitto-clients  mosquitto_pub / mosquitto_sub, outside peers of the agent
#   python3            http.server as an outside HTTP peer; the sd_notify datagram listener
#   systemd            systemd-analyze verify / security for the units
#   tinyproxy          a real forward proxy for the HTTP_PROXY / HTTPS_PROXY download tests
#   prometheus         promtool check metrics: /metrics follows Prometheus's naming conventions
#   zsh                the zsh completion script is run in a real zsh
#   qemu-user-static   boots the arm64 and armv7 releases (test/agent/release-smoke.test.ts)
#   g++-aarch64-linux-gnu, g++-arm-linux-gnueabihf
#                      cross-compile better-sqlite3 for those releases (scripts/build-release.sh)
#   umoci              builds the controller's OCI image without a daemon (scripts/build-image.sh)
set -euo pipefail
declare -A provides=([mosquitto]=mosquitto [mosquitto_pub]=mosquitto-clients [python3]=python3 [systemd-analyze]=systemd
  [tinyproxy]=tinyproxy [promtool]=prometheus [zsh]=zsh
  [qemu-aarch64-static]=qemu-user-static [aarch64-linux-gnu-g++]=g++-aarch64-linux-gnu [arm-linux-gnueabihf-g++]=g++-arm-linux-gnueabihf [umoci]=umoci)
missing=()
for cmd in mosquitto mosquitto_pub python3 systemd-analyze tinyproxy promtool zsh qemu-aarch64-static aarch64-linux-gnu-g++ arm-linux-gnueabihf-g++ umoci; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${provides[$cmd]}")
done
((${#missing[@]} == 0)) && exit 0
if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "test-deps: installing ${missing[*]} from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi
echo "test-deps: the tests need ${missing[*]}; install them first:" >&2
echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
exit 1
