#!/usr/bin/env bash
# Builds the demo PKI and SoftHSM2 tokens used by the README demo and by softhsm-tests.
#
#   provision.sh pki DIR                 demo PKI in DIR (keys and certificates, openssl only)
#   provision.sh token PKI DIR LABEL PINFILE [alice|bob]
#                                        a SoftHSM2 token store in DIR/tokens with SOFTHSM2_CONF=DIR/softhsm2.conf,
#                                        holding the user's RSA key (imported) and an EC P-256 key generated on the
#                                        token (CKA_DERIVE for ECDH), their certificates, and the trust anchors.
#
# PKI: "SSMAX Demo Root" → "Example Org CA" → alice@example.jp (RSA-2048, emailProtection), and an org
# certificate "Example Org (mail)" issued by the root; on the receiving side "Partner Org (mail)" and
# Partner Org CA → bob@partner.example. Extra certificates for negative tests: expired, wrong EKU, and
# a user under an untrusted root.
set -euo pipefail
MODULE=${SSMAX_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
SO_PIN=so-pin-12345678

ext() { # name body...
  local f=$1; shift
  printf '%s\n' "$@" >"$f"
}

issue() { # CAKEY CACERT CSR|- OUT EXTFILE DAYS [force_pubkey]
  local cakey=$1 cacert=$2 csr=$3 out=$4 extfile=$5 days=$6 force=${7:-}
  # A random serial, not -CAcreateserial: tests provision tokens in parallel from one PKI.
  openssl x509 -req -in "$csr" -CA "$cacert" -CAkey "$cakey" -set_serial "0x$(openssl rand -hex 12)" -days "$days" \
    -extfile "$extfile" -sha256 ${force:+-force_pubkey "$force"} -out "$out" 2>/dev/null
}

user_ext() { # file email eku
  ext "$1" "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,nonRepudiation,keyEncipherment,keyAgreement" \
    "extendedKeyUsage=$3" "subjectAltName=email:$2" \
    "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid"
}

pki() {
  local d=$1
  mkdir -p "$d" && cd "$d"
  ext ca.ext "basicConstraints=critical,CA:TRUE" "keyUsage=critical,keyCertSign,cRLSign" \
    "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid"
  ext org.ext "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=emailProtection" "subjectAltName=email:mail-gateway@example.jp" \
    "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid"
  user_ext alice.ext alice@example.jp emailProtection
  user_ext wrong-eku.ext alice@example.jp serverAuth
  user_ext mallory.ext mallory@example.jp emailProtection
  user_ext bob.ext bob@partner.example emailProtection
  ext partner-org.ext "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=emailProtection" "subjectAltName=email:mail-gateway@partner.example" \
    "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid"

  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out root.key 2>/dev/null
  openssl req -new -x509 -key root.key -subj "/O=SSMAX Demo/CN=SSMAX Demo Root" -days 3650 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out root.pem
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out orgca.key 2>/dev/null
  openssl req -new -key orgca.key -subj "/O=Example Org/CN=Example Org CA" -out orgca.csr
  issue root.key root.pem orgca.csr orgca.pem ca.ext 3650
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out org.key 2>/dev/null
  openssl req -new -key org.key -subj "/O=Example Org/CN=Example Org (mail)" -out org.csr
  issue root.key root.pem org.csr org.pem org.ext 1825

  # The receiving side: Partner Org (accredited by the same SSMAX root) and its user bob.
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out partner-org.key 2>/dev/null
  openssl req -new -key partner-org.key -subj "/O=Partner Org/CN=Partner Org (mail)" -out partner-org.csr
  issue root.key root.pem partner-org.csr partner-org.pem partner-org.ext 1825
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out partnerca.key 2>/dev/null
  openssl req -new -key partnerca.key -subj "/O=Partner Org/CN=Partner Org CA" -out partnerca.csr
  issue root.key root.pem partnerca.csr partnerca.pem ca.ext 3650
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out bob.key 2>/dev/null
  openssl req -new -key bob.key -subj "/O=Partner Org/CN=Bob Partner" -out bob.csr
  issue partnerca.key partnerca.pem bob.csr bob.pem bob.ext 730

  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out alice.key 2>/dev/null
  openssl req -new -key alice.key -subj "/O=Example Org/CN=Alice Example" -out alice.csr
  issue orgca.key orgca.pem alice.csr alice.pem alice.ext 730
  issue orgca.key orgca.pem alice.csr alice-wrong-eku.pem wrong-eku.ext 730

  # Expired: openssl x509 cannot back-date, so `openssl ca` with explicit dates.
  mkdir -p ca-db && : >ca-db/index.txt && echo 1000 >ca-db/serial
  cat >ca-db/ca.cnf <<CNF
[ca]
default_ca = d
[d]
database = $d/ca-db/index.txt
serial = $d/ca-db/serial
new_certs_dir = $d/ca-db
default_md = sha256
policy = p
unique_subject = no
copy_extensions = none
[p]
commonName = supplied
organizationName = optional
CNF
  openssl ca -batch -config ca-db/ca.cnf -cert orgca.pem -keyfile orgca.key -in alice.csr \
    -startdate 20200101000000Z -enddate 20210101000000Z -extfile alice.ext -out alice-expired.pem 2>/dev/null
  openssl x509 -in alice-expired.pem -out alice-expired.pem
  # Each CA's (empty) revocation list: the organisation hop requires a status for every chain.
  # A crlnumber makes them version 2 CRLs, the only version rustls-webpki reads.
  echo 01 >ca-db/crlnumber
  sed "s|^\[d\]\$|[d]\ncrlnumber = $d/ca-db/crlnumber|" ca-db/ca.cnf >ca-db/crl.cnf
  for ca in root orgca partnerca; do
    openssl ca -batch -config ca-db/crl.cnf -cert "$ca.pem" -keyfile "$ca.key" -gencrl -crldays 30 -out "$ca.crl" 2>/dev/null
  done

  # An unrelated root that no one trusts, with a user that looks right otherwise.
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out rogue-root.key 2>/dev/null
  openssl req -new -x509 -key rogue-root.key -subj "/CN=Rogue Root" -days 3650 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" -out rogue-root.pem
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out mallory.key 2>/dev/null
  openssl req -new -key mallory.key -subj "/CN=Mallory" -out mallory.csr
  issue rogue-root.key rogue-root.pem mallory.csr mallory.pem mallory.ext 730

  cat orgca.pem root.pem >chain.pem
  for c in *.pem; do openssl x509 -in "$c" -outform DER -out "${c%.pem}.der" 2>/dev/null || true; done
}

# A private SoftHSM2 token store in $1 with one token; sets SOFTHSM2_CONF, pin and p11() for the caller.
new_store() {
  local d=$1 label=$2 pinfile=$3
  mkdir -p "$d/tokens"
  cat >"$d/softhsm2.conf" <<CONF
directories.tokendir = $d/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
  export SOFTHSM2_CONF=$d/softhsm2.conf
  pin=$(head -n1 "$pinfile")
  softhsm2-util --init-token --free --label "$label" --so-pin "$SO_PIN" --pin "$pin" >/dev/null
  p11() { pkcs11-tool --module "$MODULE" --token-label "$label" --login --pin "$pin" "$@" >/dev/null 2>&1; }
}

token() {
  local pkidir=$1 d=$2 label=$3 pinfile=$4 user=${5:-alice}
  if [ "$user" = bob ]; then bob_token "$@"; return; fi
  new_store "$d" "$label" "$pinfile"
  softhsm2-util --import "$pkidir/alice.key" --token "$label" --label alice --id 01 --pin "$pin" >/dev/null
  p11 --write-object "$pkidir/alice.der" --type cert --id 01 --label alice
  # EC key born on the token, with CKA_DERIVE so ECDH decryption works (imported EC keys lack it).
  p11 --keypairgen --key-type EC:prime256v1 --usage-sign --usage-derive --id 02 --label alice-ec
  pkcs11-tool --module "$MODULE" --token-label "$label" --read-object --type pubkey --id 02 -o "$d/alice-ec.pub.der" >/dev/null 2>&1
  openssl pkey -pubin -inform DER -in "$d/alice-ec.pub.der" -out "$d/alice-ec.pub.pem"
  issue "$pkidir/orgca.key" "$pkidir/orgca.pem" "$pkidir/alice.csr" "$d/alice-ec.pem" "$pkidir/alice.ext" 730 "$d/alice-ec.pub.pem"
  openssl x509 -in "$d/alice-ec.pem" -outform DER -out "$d/alice-ec.der"
  p11 --write-object "$d/alice-ec.der" --type cert --id 02 --label alice-ec
  # Trust anchors and the org certificate live on the token next to the user key (SSMAX step 2).
  p11 --write-object "$pkidir/root.der" --type cert --id a0 --label ssmax-anchor-root
  p11 --write-object "$pkidir/orgca.der" --type cert --id a1 --label org-ca
  p11 --write-object "$pkidir/org.der" --type cert --id a2 --label ssmax-org
}

# bob's token at Partner Org: his RSA key, his certificate, the SSMAX root and his org's certificate.
bob_token() {
  local pkidir=$1 d=$2 label=$3 pinfile=$4
  new_store "$d" "$label" "$pinfile"
  softhsm2-util --import "$pkidir/bob.key" --token "$label" --label bob --id 01 --pin "$pin" >/dev/null
  p11 --write-object "$pkidir/bob.der" --type cert --id 01 --label bob
  p11 --write-object "$pkidir/root.der" --type cert --id a0 --label ssmax-anchor-root
  p11 --write-object "$pkidir/partnerca.der" --type cert --id a1 --label partner-ca
  p11 --write-object "$pkidir/partner-org.der" --type cert --id a2 --label ssmax-org
}

case ${1:-} in
  pki) pki "$(realpath -m "$2")" ;;
  token) token "$(realpath "$2")" "$(realpath -m "$3")" "$4" "$(realpath "$5")" "${6:-alice}" ;;
  *) echo "usage: $0 pki DIR | token PKIDIR DIR LABEL PINFILE [alice|bob]" >&2; exit 2 ;;
esac
