#!/usr/bin/env bash
# Thunderbird (Debian's package) reads an SSMAX mail through the IMAP front door, in a real
# window under Xvfb, and a screenshot of the opened mail is written (by default to
# docs/img/thunderbird-imap-door.png). Not run by CI: it needs thunderbird, xvfb, xdotool and
# imagemagick, and Japanese fonts for the Japanese mail beside it (apt-get install thunderbird xvfb
# xdotool imagemagick fonts-noto-cjk); it takes about a minute.
#   bash softhsm-tests/thunderbird-door.sh [OUT.png]
# What it sets up: the demo's PKI, tokens and SSMAX mail (softhsm-tests/demo.sh), a private
# Dovecot holding bob's mail, bob's agent (its pinentry gives bob's PIN), the door in front of
# the Dovecot, and a Thunderbird profile whose only account is the door on 127.0.0.1. Thunderbird
# asks for the account's password once, as it would ask a user: the script types the client
# secret into that dialog.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:-docs/img/thunderbird-imap-door.png}")
for tool in thunderbird Xvfb xdotool import; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install thunderbird xvfb xdotool imagemagick)" >&2; exit 2; }
done
cargo build -q --locked
BIN=$PWD/target/debug/ssmax-card
W=$(mktemp -d /tmp/ssmax-tb.XXXXXX)
# Dovecot reads its password file as its own user: it must be able to pass through.
chmod 711 "$W"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  bash softhsm-tests/dovecot.sh stop "$W/dovecot" >/dev/null 2>&1 || true
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing on port $1" >&2; exit 1; }

echo "== the demo's PKI, tokens and SSMAX mail"
SSMAX_DEMO_DIR=$W/demo bash softhsm-tests/demo.sh >"$W/demo.log" 2>&1
cat >"$W/plain.eml" <<'MAIL'
From: =?UTF-8?B?5bGx55Sw?= <yamada@example.jp>
To: Bob <bob@partner.example>
Subject: =?UTF-8?B?5piO5pel44Gu5Lya6K2w?=
Date: Mon, 7 Dec 2026 09:00:00 +0900
Content-Type: text/plain; charset=utf-8

明日の会議は10時からです。
MAIL

echo "== a private Dovecot holding bob's mail"
STORE_PORT=$(free_port)
bash softhsm-tests/dovecot.sh start "$W/dovecot" "$STORE_PORT" bob "store password" >/dev/null
python3 - "$STORE_PORT" "$W/plain.eml" "$W/demo/3-to-bob.eml" <<'PY'
import imaplib, sys
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
m.login("bob", "store password")
for f in sys.argv[2:]:
    data = open(f, "rb").read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert m.append("INBOX", None, None, data)[0] == "OK"
m.logout()
PY

echo "== bob's agent and the IMAP door"
export HOME=$W/home XDG_CONFIG_HOME=$W/home/.config XDG_CACHE_HOME=$W/home/.cache
mkdir -p "$HOME"
export SOFTHSM2_CONF=$W/demo/bob-token/softhsm2.conf
cat >"$W/pinentry.sh" <<SH
#!/bin/sh
echo 'OK Pleased to meet you'
while read -r cmd rest; do
  case \$cmd in
    GETPIN) echo "D \$(head -n1 '$W/demo/bob-pin')"; echo OK ;;
    BYE) echo OK; exit 0 ;;
    *) echo OK ;;
  esac
done
SH
chmod 700 "$W/pinentry.sh"
DOOR_PORT=$(free_port)
cat >"$W/config.toml" <<TOML
pinentry_program = "$W/pinentry.sh"
[smtp]
client_user = "bob"
[imap]
upstream = "127.0.0.1:$STORE_PORT"
upstream_user = "bob"
upstream_tls = "none"
listen = "127.0.0.1:$DOOR_PORT"
TOML
mkdir -m 700 "$W/run"
"$BIN" --config "$W/config.toml" agent --socket "$W/run/agent.sock" 2>"$W/agent.log" &
pids+=($!)
"$BIN" --config "$W/config.toml" imap set-upstream-password --password-fd 3 3<<<"store password"
SECRET=$("$BIN" --config "$W/config.toml" smtp client-secret | sed -n 's/^secret: //p')
for _ in $(seq 100); do [ -S "$W/run/agent.sock" ] && break; sleep 0.1; done
"$BIN" --config "$W/config.toml" --socket "$W/run/agent.sock" imap serve 2>"$W/door.log" &
pids+=($!)
wait_port "$DOOR_PORT"

echo "== Thunderbird under Xvfb, its one account the door"
P=$W/tb-profile
mkdir -p "$P"
cat >"$P/user.js" <<JS
user_pref("mail.accountmanager.accounts", "account1,account2");
user_pref("mail.accountmanager.defaultaccount", "account1");
user_pref("mail.accountmanager.localfoldersserver", "server2");
user_pref("mail.account.account1.server", "server1");
user_pref("mail.account.account1.identities", "id1");
user_pref("mail.account.account2.server", "server2");
user_pref("mail.identity.id1.fullName", "Bob");
user_pref("mail.identity.id1.useremail", "bob@partner.example");
user_pref("mail.identity.id1.valid", true);
user_pref("mail.server.server1.type", "imap");
user_pref("mail.server.server1.name", "bob (ssmax-card IMAP door)");
user_pref("mail.server.server1.hostname", "127.0.0.1");
user_pref("mail.server.server1.port", $DOOR_PORT);
user_pref("mail.server.server1.userName", "bob");
user_pref("mail.server.server1.socketType", 0);
user_pref("mail.server.server1.authMethod", 3);
user_pref("mail.server.server1.login_at_startup", true);
user_pref("mail.server.server1.directory-rel", "[ProfD]ImapMail/door");
user_pref("mail.server.server2.type", "none");
user_pref("mail.server.server2.name", "Local Folders");
user_pref("mail.server.server2.hostname", "Local Folders");
user_pref("mail.server.server2.userName", "nobody");
user_pref("mail.server.server2.directory-rel", "[ProfD]Mail/Local Folders");
user_pref("mail.shell.checkDefaultClient", false);
user_pref("mail.provider.suppress_dialog_on_startup", true);
user_pref("mailnews.start_page.enabled", false);
user_pref("mail.spotlight.firstRunDone", true);
user_pref("mail.rights.version", 1);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);
user_pref("app.update.disabledForTesting", true);
user_pref("mail.inappnotifications.enabled", false);
user_pref("msgcompose.default_colors", true);
JS
export DISPLAY=:$((90 + RANDOM % 9))
Xvfb "$DISPLAY" -screen 0 1400x900x24 >/dev/null 2>&1 &
pids+=($!)
sleep 1
thunderbird --no-remote --profile "$P" >"$W/thunderbird.log" 2>&1 &
pids+=($!)

# Thunderbird asks for the account's password: the client secret (ssmax-card smtp client-secret).
for _ in $(seq 120); do
  win=$(xdotool search --name "Enter your password" 2>/dev/null | head -n1 || true)
  [ -n "$win" ] && break
  sleep 0.5
done
[ -n "${win:-}" ] || { import -window root "$W/no-dialog.png"; echo "no password dialog; see $W/no-dialog.png" >&2; exit 1; }
# Xvfb has no window manager: focus is given, not asked for.
xdotool windowfocus --sync "$win"
xdotool type --delay 5 "$SECRET"
xdotool key Return
sleep 8
# Open Inbox (the folder pane's second row), then the SSMAX mail.
main=$(xdotool search --name "Mozilla Thunderbird" | head -n1)
xdotool windowfocus --sync "$main"
xdotool mousemove 127 141 click 1
sleep 5
import -window root "$W/inbox.png"
# The list shows the newest first: the SSMAX mail is its first row.
xdotool mousemove 400 123 click 1
sleep 6
mkdir -p "$(dirname "$OUT")"
# The screen less the empty strip right of Thunderbird's window.
import -window root -crop 1260x900+0+0 +repage "$OUT"
echo "== screenshot: $OUT (work files in $W)"
grep -c "view" "$W/door.log" >/dev/null || true
