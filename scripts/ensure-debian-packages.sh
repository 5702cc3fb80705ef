#!/usr/bin/env bash
# Installs the Debian packages the suite and the local stack run for real (Dovecot for POP3,
# redis-server when the machine has none, openssl for the sandbox CA). Quiet when all are there.
set -euo pipefail
wanted=(dovecot-core dovecot-pop3d redis-server openssl)
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing Debian packages: ${missing[*]}"
# policy-rc.d 101 keeps apt from starting the system-wide daemons: tests start their own.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy" && created_policy=1
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[ "$created_policy" -eq 1 ] && $SUDO rm -f "$policy"
exit 0
