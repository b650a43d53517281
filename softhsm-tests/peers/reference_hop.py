#!/usr/bin/env python3
"""An SSMAX sending organisation built without ssmax-card, from the profile alone
(docs/ssmax-mail-profile.md): openssl verifies the sender's signature and chain, Python's email
package takes the MIME apart, Bouncy Castle (peers/BcPeer.java) opens each attachment, checks its
binding and encrypts it anew to the next party, and signs as the organisation with the identity
method it states from its token registry. Refuses (exit 1, one line) what the profile refuses.
Forwarded attachments (a forward proof) are out of its scope.

usage: reference_hop.py CLASSPATH ROOT OWN_CA ORG_KEY ORG_CERT NEXT REGISTRY IN OUT
"""
import email
import email.header
import email.policy
import base64
import os
import subprocess
import sys
import tempfile
import tomllib


def refuse(why):
    print(f"reference hop: refused: {why}", file=sys.stderr)
    sys.exit(1)


def run(*args, what=None):
    r = subprocess.run(args, capture_output=True)
    if r.returncode != 0:
        said = r.stderr.decode(errors="replace").strip()
        # Java: the exception's message, not its stack.
        first = said.splitlines()[0] if said else ""
        if first.startswith("Exception in thread"):
            said = first.split(": ", 1)[-1]
        refuse(f"{what or args[0]}: {said}")
    return r.stdout


def der_of(pem_path):
    return run("openssl", "x509", "-outform", "DER", "-in", pem_path)


def header_text(value):
    return str(email.header.make_header(email.header.decode_header(value))).strip() if value else None


def main():
    classpath, root, own_ca, org_key, org_cert, next_cert, registry, src, dst = sys.argv[1:10]
    work = tempfile.mkdtemp(prefix="ssmax-reference-hop-")
    f = lambda name: os.path.join(work, name)
    bc = lambda *a, what: run("java", "-cp", classpath, "BcPeer", *a, what=what)

    # 1. The sender's signature and chain (root → own CA → sender), the certificate allowed for mail.
    run("openssl", "cms", "-verify", "-in", src, "-CAfile", root, "-certfile", own_ca, "-purpose", "smimesign",
        "-signer", f("signer.pem"), "-out", f("inner.eml"), what="the sender's signature")
    run("openssl", "smime", "-pk7out", "-in", src, "-out", f("sig.pem"))
    run("openssl", "cms", "-cmsout", "-inform", "PEM", "-in", f("sig.pem"), "-outform", "DER", "-out", f("sig.der"))
    # 2. A user of this organisation: issued by its own CA.
    issuer = run("openssl", "x509", "-noout", "-issuer", "-nameopt", "RFC2253", "-in", f("signer.pem"))
    ca = run("openssl", "x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in", own_ca)
    if issuer.split(b"=", 1)[1] != ca.split(b"=", 1)[1]:
        refuse("the sender is not a user of this organisation")
    # 3. From is the certificate's address (one mailbox).
    with open(src, "rb") as fh:
        outer = email.message_from_binary_file(fh, policy=email.policy.SMTP)
    froms = outer.get_all("From") or []
    if len(froms) != 1 or len(froms[0].addresses) != 1:
        refuse("the mail must have one From with one mailbox")
    sender = froms[0].addresses[0].addr_spec.lower()
    san = run("openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", f("signer.pem")).decode().lower()
    if f"email:{sender}" not in san.replace(" ", ""):
        refuse(f"{sender} is not in the sender's certificate")
    # 4. What the organisation registered for its CA's users.
    with open(registry, "rb") as fh:
        entries = tomllib.load(fh).get("token", [])
    base = os.path.dirname(registry)
    ca_der = der_of(own_ca)
    entry = next((e for e in entries if "issuer" in e and der_of(os.path.join(base, e["issuer"])) == ca_der), None)
    if entry is None:
        refuse("no token registered for the sender")
    # 5. Each attachment: bound to the sender, its label and its name; encrypted anew to NEXT.
    with open(f("inner.eml"), "rb") as fh:
        inner = email.message_from_binary_file(fh, policy=email.policy.SMTP)
    for n, part in enumerate(inner.iter_parts() if inner.is_multipart() else []):
        marked = part.get("SSMAX-Label") is not None or part.get("SSMAX-Filename") is not None
        if part.get_content_type() not in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
            if marked:
                refuse(f"part {n + 1} is marked as protected but is not encrypted")
            continue
        label, filename = header_text(part.get("SSMAX-Label")), header_text(part.get("SSMAX-Filename"))
        if label is None or filename is None:
            refuse(f"part {n + 1}: an encrypted part without SSMAX-Label and SSMAX-Filename")
        with open(f("in.der"), "wb") as fh:
            fh.write(part.get_payload(decode=True))
        bc("ssmax-rekey", org_key, org_cert, f("signer.pem"), label, filename, next_cert, f("in.der"), f("out.der"),
           f("entity.eml"), what=f"attachment '{label}'")
        with open(f("entity.eml"), "rb") as fh:
            named = email.message_from_binary_file(fh, policy=email.policy.SMTP).get_filename()
        if named is not None and named.strip() != filename.strip():
            refuse(f"attachment '{label}' holds a file named '{named}', not '{filename}'")
        with open(f("out.der"), "rb") as fh:
            part.set_payload(base64.encodebytes(fh.read()).decode())
    body = inner.as_bytes(policy=email.policy.SMTP)
    with open(f("body.eml"), "wb") as fh:
        fh.write(body)
    # 6. The organisation's signature: identity method stated, originator recorded, sender's CA carried.
    org = run("openssl", "x509", "-noout", "-subject", "-nameopt", "RFC2253,sep_multiline", "-in", org_cert).decode()
    org_name = next((l.strip()[2:] for l in org.splitlines() if l.strip().startswith("O=")), "the organisation")
    bc("ssmax-org-sign", org_key, org_cert, f("sig.der"), f("body.eml"), f("org.der"), entry["kind"],
       entry["description"], org_name, own_ca, what="the organisation's signature")
    with open(f("org.der"), "rb") as fh:
        signature = base64.encodebytes(fh.read()).decode().replace("\n", "\r\n")
    boundary = "ssmax-reference-" + base64.b32encode(os.urandom(10)).decode().lower()
    head = "".join(f"{k}: {v}\r\n" for k, v in outer.items() if k.lower() in ("from", "to", "cc", "subject", "date"))
    out = (head + "MIME-Version: 1.0\r\n"
           + f'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary="{boundary}"\r\n\r\n'
           + f"--{boundary}\r\n").encode() + body + (
        f"\r\n--{boundary}\r\nContent-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n"
        + "Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"smime.p7s\"\r\n\r\n"
        + signature + f"--{boundary}--\r\n").encode()
    with open(dst + ".tmp", "wb") as fh:
        fh.write(out)
    os.replace(dst + ".tmp", dst)
    print(f"reference hop: re-keyed and signed for {sender}", file=sys.stderr)


main()
