#!/usr/bin/env bash
# README command (1): the main job on an embedded default. Provisions a demo SoftHSM2 token with a
# demo PKI (SSMAX root → org CA → alice@example.jp; an org certificate), signs a sample mail and
# decrypts a sample encrypted mail with the key on that token, then runs the SSMAX chain
# (alice → Example Org → Partner Org → bob → forward) showing each hop.
set -euo pipefail
cd "$(dirname "$0")/.."
. softhsm-tests/deps.sh
ssmax_deps
cargo build -q --locked
BIN=$PWD/target/debug/ssmax-card
DEMO=${SSMAX_DEMO_DIR:-$(mktemp -d /tmp/ssmax-demo.XXXXXX)}
mkdir -p "$DEMO"
# The demo works on its own token: never hand its commands to an agent the user may be running.
export SSMAX_CARD_SOCKET=$DEMO/no-agent-here.sock
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "1. A demo PKI and a SoftHSM2 token holding alice's key (the key never leaves the token)"
umask 077
printf 'demo-pin-2468\n' >"$DEMO/pin"   # a file read through --pin-fd, never a command-line value
bash softhsm-tests/provision.sh pki "$DEMO/pki"
bash softhsm-tests/provision.sh token "$DEMO/pki" "$DEMO/token" "SSMAX demo card" "$DEMO/pin"
export SOFTHSM2_CONF=$DEMO/token/softhsm2.conf
show "$BIN" status

step "2. Sign an outgoing mail on the token"
cat >"$DEMO/outgoing.eml" <<MAIL
From: Alice Example <alice@example.jp>
To: Bob <bob@partner.example>
Subject: Quarterly figures / 四半期の数字
Date: $(date -R)
Content-Type: text/plain; charset=utf-8

Bob,

the figures for Q3 are final. 数字は確定しました。

Alice
MAIL
show "$BIN" sign --key 'pkcs11:id=%01' --in "$DEMO/outgoing.eml" --out "$DEMO/signed.eml" --pin-fd 3 3<"$DEMO/pin"
sed -n '1,16p' "$DEMO/signed.eml"
echo "   [... signature part ...]"

step "3. openssl (a real peer) checks the signature against the SSMAX root"
show openssl cms -verify -in "$DEMO/signed.eml" -CAfile "$DEMO/pki/root.pem" -purpose smimesign -out /dev/null
show "$BIN" verify --in "$DEMO/signed.eml"

step "4. Someone encrypts a mail to alice with openssl (RSA-OAEP SHA-256, AES-256-GCM)"
printf 'Content-Type: text/plain; charset=utf-8\r\n\r\nThe contract draft is attached. 契約書の草案です。\r\n' >"$DEMO/secret.txt"
show openssl cms -encrypt -in "$DEMO/secret.txt" -aes-256-gcm -recip "$DEMO/pki/alice.pem" \
  -keyopt rsa_padding_mode:oaep -keyopt rsa_oaep_md:sha256 -keyopt rsa_mgf1_md:sha256 \
  -from bob@partner.example -to alice@example.jp -subject "Contract draft" -out "$DEMO/encrypted.eml"
sed -n '1,8p' "$DEMO/encrypted.eml"
echo "   [...]"

step "5. Decrypt it: the content key is recovered on the token"
show "$BIN" decrypt --in "$DEMO/encrypted.eml" --out "$DEMO/decrypted.eml" --pin-fd 3 3<"$DEMO/pin"
cat "$DEMO/decrypted.eml"

step "6. SSMAX: alice sends a labelled, protected attachment (encrypted to her organisation, signed on her card)"
printf 'Product,Q3\nWidgets,1234\n' >"$DEMO/figures.csv"
cat >"$DEMO/draft.eml" <<MAIL
From: Alice Example <alice@example.jp>
To: Bob <bob@partner.example>
Subject: Q3 figures
Date: $(date -R)

Bob, the Q3 figures are attached.
MAIL
show "$BIN" send --in "$DEMO/draft.eml" --attach "$DEMO/figures.csv" --label "Q3 figures (for Partner Org)" \
  --out "$DEMO/1-sent.eml" --pin-fd 3 3<"$DEMO/pin"
show openssl cms -verify -in "$DEMO/1-sent.eml" -CAfile "$DEMO/pki/root.pem" -purpose smimesign -out /dev/null

P=$DEMO/pki
step "7. Example Org (sending organisation): verify alice, inspect for leaks, re-key to Partner Org, re-sign"
# What each organisation registered about its users' tokens: the identity method it states.
cat >"$DEMO/example-org-tokens.toml" <<TOML
[[token]]
issuer = "pki/orgca.pem"
kind = "softhsm2"
description = "Example Org staff token (SoftHSM2 stand-in for a card)"
enrolment = "identity checked in person at issuance"
TOML
sed -e 's/orgca/partnerca/; s/Example Org/Partner Org/' "$DEMO/example-org-tokens.toml" >"$DEMO/partner-org-tokens.toml"
LEAKS="grep -qi 'confidential' \"\$1\" && { echo 'marked confidential'; exit 1; }; exit 0"
show "$BIN" org --role sending --org-key "$P/org.key" --org-cert "$P/org.pem" --anchor "$P/root.pem" \
  --registry "$DEMO/example-org-tokens.toml" --own-ca "$P/orgca.pem" --crl "$P/root.crl" --crl "$P/orgca.crl" --next "$P/partner-org.pem" --scanner "$LEAKS" --in "$DEMO/1-sent.eml" --out "$DEMO/2-from-example-org.eml"
show openssl cms -verify -in "$DEMO/2-from-example-org.eml" -CAfile "$P/root.pem" -purpose smimesign -out /dev/null

step "8. Partner Org (receiving organisation): verify Example Org, scan for malware, re-key to bob, re-sign"
MALWARE="grep -q 'EICAR-STANDARD-ANTIVIRUS-TEST-FILE' \"\$1\" && { echo 'EICAR'; exit 1; }; exit 0"
show "$BIN" org --role receiving --org-key "$P/partner-org.key" --org-cert "$P/partner-org.pem" --anchor "$P/root.pem" \
  --crl "$P/root.crl" --crl "$P/orgca.crl" --next "$P/bob.pem" --scanner "$MALWARE" --in "$DEMO/2-from-example-org.eml" --out "$DEMO/3-to-bob.eml"
show openssl cms -verify -in "$DEMO/3-to-bob.eml" -CAfile "$P/root.pem" -purpose smimesign -out /dev/null

step "9. bob receives: his organisation's signature is checked against the certificate on HIS card"
printf 'bob-pin-1357\n' >"$DEMO/bob-pin"
bash softhsm-tests/provision.sh token "$DEMO/pki" "$DEMO/bob-token" "Bob's card" "$DEMO/bob-pin" bob
mkdir -p "$DEMO/bob-files"
SOFTHSM2_CONF=$DEMO/bob-token/softhsm2.conf show "$BIN" receive --in "$DEMO/3-to-bob.eml" --extract "$DEMO/bob-files" --pin-fd 3 3<"$DEMO/bob-pin"
show cat "$DEMO/bob-files/figures.csv"

step "10. bob forwards the figures: only the content key is re-wrapped (for Partner Org) on his card"
SOFTHSM2_CONF=$DEMO/bob-token/softhsm2.conf show "$BIN" forward --in "$DEMO/3-to-bob.eml" --to carol@partner.example \
  --keep figures.csv --note "Carol, FYI." --out "$DEMO/4-forward.eml" --pin-fd 3 3<"$DEMO/bob-pin"
show "$BIN" org --role sending --org-key "$P/partner-org.key" --org-cert "$P/partner-org.pem" --anchor "$P/root.pem" \
  --registry "$DEMO/partner-org-tokens.toml" --own-ca "$P/partnerca.pem" --crl "$P/root.crl" --crl "$P/partnerca.crl" --next "$P/org.pem" --in "$DEMO/4-forward.eml" --out "$DEMO/5-forward-from-partner-org.eml"

step "Done. Files are in $DEMO"
