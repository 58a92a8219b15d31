#!/usr/bin/env bash
# Installs a ferry agent on this host as a systemd service:
#   sudo deploy/install-agent.sh --binary target/release/ferry-agent \
#        --controller http://ferry-controller.internal:7070 --queue onprem --label site=dc1 \
#        --token-file ./agent.token
#   --controller may be repeated for several controllers sharing one database.
#   With an https:// controller: --tls-ca ca.pem (its CA, if not a public one) and, when it
#   requires client certificates, --tls-cert agent.pem --tls-key agent.key.
# Creates the `ferry` user, /etc/ferry/agent.toml (unless it exists) and starts the service.
set -euo pipefail
binary="" controllers=() token="" tls_ca="" tls_cert="" tls_key="" queues=() labels=()
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --controller) controllers+=("$2"); shift 2 ;;
    --queue) queues+=("$2"); shift 2 ;;
    --label) labels+=("$2"); shift 2 ;;
    --token-file) token="$2"; shift 2 ;;
    --tls-ca) tls_ca="$2"; shift 2 ;;
    --tls-cert) tls_cert="$2"; shift 2 ;;
    --tls-key) tls_key="$2"; shift 2 ;;
    *) echo "install-agent: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$binary" ] && [ -x "$binary" ] || { echo "install-agent: --binary must name the ferry-agent executable" >&2; exit 2; }
[ ${#controllers[@]} -gt 0 ] || { echo "install-agent: --controller URL is required" >&2; exit 2; }
if { [ -n "$tls_cert" ] && [ -z "$tls_key" ]; } || { [ -z "$tls_cert" ] && [ -n "$tls_key" ]; }; then
  echo "install-agent: --tls-cert and --tls-key go together" >&2; exit 2
fi
[ ${#queues[@]} -gt 0 ] || queues=(default)
here=$(cd "$(dirname "$0")" && pwd)

id ferry >/dev/null 2>&1 || useradd --system --home-dir /var/lib/ferry-agent --shell /usr/sbin/nologin ferry
install -m 0755 "$binary" /usr/local/bin/ferry-agent
install -d -m 0750 -o root -g ferry /etc/ferry
if [ -n "$token" ]; then
  install -m 0640 -o root -g ferry "$token" /etc/ferry/agent.token
fi
for f in "$tls_ca" "$tls_cert"; do
  [ -z "$f" ] || install -D -m 0644 "$f" "/etc/ferry/tls/$(basename "$f")"
done
[ -z "$tls_key" ] || install -D -m 0640 -o root -g ferry "$tls_key" "/etc/ferry/tls/$(basename "$tls_key")"
if [ ! -f /etc/ferry/agent.toml ]; then
  {
    if [ ${#controllers[@]} -eq 1 ]; then
      echo "controller = \"${controllers[0]}\""
    else
      printf 'controllers = ['; printf '"%s", ' "${controllers[@]}" | sed 's/, $//'; echo ']'
    fi
    printf 'queues = ['; printf '"%s", ' "${queues[@]}" | sed 's/, $//'; echo ']'
    echo 'work_dir = "/var/lib/ferry-agent/work"'
    [ -n "$token" ] && echo 'token_file = "/etc/ferry/agent.token"'
    [ -n "$tls_ca" ] && echo "tls_ca = \"/etc/ferry/tls/$(basename "$tls_ca")\""
    [ -n "$tls_cert" ] && echo "tls_cert = \"/etc/ferry/tls/$(basename "$tls_cert")\""
    [ -n "$tls_key" ] && echo "tls_key = \"/etc/ferry/tls/$(basename "$tls_key")\""
    if [ ${#labels[@]} -gt 0 ]; then
      echo '[labels]'
      for l in "${labels[@]}"; do echo "${l%%=*} = \"${l#*=}\""; done
    fi
  } > /etc/ferry/agent.toml
  chmod 0640 /etc/ferry/agent.toml; chgrp ferry /etc/ferry/agent.toml
fi
install -m 0644 "$here/systemd/ferry-agent.service" /etc/systemd/system/ferry-agent.service
systemctl daemon-reload
systemctl enable --now ferry-agent
echo "ferry-agent installed; see: journalctl -u ferry-agent -f"
