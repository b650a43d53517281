#!/usr/bin/env bash
# A private Postfix on loopback, as the organisation's submission server for the SMTP front
# door tests: STARTTLS required (certificate from its own small CA), SASL AUTH (Cyrus sasldb,
# PLAIN/LOGIN), accepts mail for example.com only from authenticated clients and delivers it
# into one mbox file. Nothing outside DIR is touched; needs root (Postfix drops privileges).
#   postfix-relay.sh start DIR PORT USER PASSWORD-FILE   -> DIR/ca.pem, DIR/mail/inbox
#   postfix-relay.sh stop DIR
set -euo pipefail
cmd=$1 dir=$2
if [ "$cmd" = stop ]; then
  postfix -c "$dir/etc" stop >/dev/null 2>&1 || true
  exit 0
fi
port=$3 user=$4 pwfile=$5
host=relay.example.test
mkdir -p "$dir"/{etc/sasl,spool,data,mail}
chmod 755 "$dir"
# TLS: a CA and a server certificate for localhost / 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/ca.key" -out "$dir/ca.pem" \
  -subj "/CN=Test Relay CA" -days 2 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/relay.key" -out "$dir/relay.csr" -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "$dir/relay.ext"
openssl x509 -req -in "$dir/relay.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 2 -extfile "$dir/relay.ext" -out "$dir/relay.pem" 2>/dev/null
chmod 644 "$dir/relay.key"
# SASL accounts in a private sasldb (Debian's Postfix reads $config_directory/sasl/smtpd.conf).
printf 'pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: %s\n' "$dir/sasldb2" > "$dir/etc/sasl/smtpd.conf"
saslpasswd2 -c -p -f "$dir/sasldb2" -u "$host" "$user" < "$pwfile"
chown postfix "$dir/sasldb2"
chown nobody:nogroup "$dir/mail"
chown postfix "$dir/data"
cat > "$dir/etc/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $dir/spool
data_directory = $dir/data
meta_directory = /etc/postfix
mail_owner = postfix
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = $host
mydomain = example.test
mydestination =
local_transport = error:no local delivery here
alias_maps =
alias_database =
virtual_mailbox_domains = example.com
virtual_mailbox_base = $dir/mail
virtual_mailbox_maps = static:inbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 1
smtpd_tls_cert_file = $dir/relay.pem
smtpd_tls_key_file = $dir/relay.key
smtpd_tls_security_level = encrypt
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = $dir/etc/sasl
smtpd_sasl_local_domain = $host
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
message_size_limit = 104857600
virtual_mailbox_limit = 0
maillog_file_prefixes = $dir
maillog_file = $dir/postfix.log
CF
cat > "$dir/etc/master.cf" <<CF
127.0.0.1:$port inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
CF
postfix -c "$dir/etc" check >/dev/null 2>&1 || postfix -c "$dir/etc" set-permissions >/dev/null 2>&1 || true
postfix -c "$dir/etc" start >/dev/null
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && exit 0
  sleep 0.1
done
echo "postfix did not start on 127.0.0.1:$port; see $dir/postfix.log" >&2
exit 1
