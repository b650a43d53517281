#!/usr/bin/env bash
# A private Dovecot IMAP server on a loopback port, for the IMAP door's tests (an upstream mail
# store): `start DIR PORT USER PASSWORD [CERT KEY TLS_PORT]`, `stop DIR`. IMAP on 127.0.0.1 only
# (with CERT and KEY: STARTTLS on PORT, TLS from the first byte on TLS_PORT); its own base, state
# and mail directories under DIR; mail owned by the dovecot system user.
set -euo pipefail
case $1 in
  start)
    dir=$2 port=$3 user=$4 pass=$5 cert=${6:-} key=${7:-} tls_port=${8:-0}
    mkdir -p "$dir/run" "$dir/state" "$dir/home"
    chown dovecot: "$dir/home"
    printf '%s:{PLAIN}%s\n' "$user" "$pass" >"$dir/passwd"
    cat >"$dir/dovecot.conf" <<CONF
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
protocols = imap
listen = 127.0.0.1
$(if [ -n "$cert" ]; then printf 'ssl = yes\nssl_cert = <%s\nssl_key = <%s\n' "$cert" "$key"; else echo 'ssl = no'; fi)
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
passdb {
  driver = passwd-file
  args = scheme=PLAIN $dir/passwd
}
userdb {
  driver = static
  args = uid=dovecot gid=dovecot home=$dir/home/%u
}
mail_location = maildir:~/Maildir
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $tls_port
  }
}
service stats {
  unix_listener stats-reader {
    mode = 0666
  }
  unix_listener stats-writer {
    mode = 0666
  }
}
CONF
    # Detached from our output: the caller waits for this script, not for the daemon.
    dovecot -c "$dir/dovecot.conf" </dev/null >/dev/null 2>&1
    for _ in $(seq 100); do
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && exit 0
      sleep 0.05
    done
    echo "dovecot did not start: $(tail -5 "$dir/dovecot.log" 2>/dev/null)" >&2
    exit 1
    ;;
  stop)
    dir=$2
    pid=$(cat "$dir/run/master.pid" 2>/dev/null || true)
    [ -n "$pid" ] || exit 0
    # Its processes serving connections outlive the master: they go too, so a client's kept
    # connection sees the mail store down (only this instance's: other tests run theirs).
    children=$(pgrep -P "$pid" || true)
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    [ -z "$children" ] || kill $children 2>/dev/null || true
    ;;
esac
