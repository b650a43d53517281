# English messages of ssmax-card. Keys are named in the code with tr!("key", name = value).
# Every message here has its twin in ja.ftl with the same placeholders (a unit test checks).

## token/: what a PKCS#11 token did

token-module-load = cannot load PKCS#11 module { $path }: { $reason }
token-module-failed = PKCS#11 module { $module }: { $what }. The agent goes on, with the module started afresh for the next request; try again
module-fault-signal = its worker process was killed by { $signal } during { $function }
module-fault-exit = its worker process exited (status { $status }) during { $function }
module-fault-hung = { $function } did not answer within { $ms } ms; its worker process was stopped
module-fault-garbled = its worker process answered { $function } with { $what }; it was stopped
module-fault-start = its worker process could not be started: { $reason }
token-removed = { $function } failed: { $code } — the card or token was removed; insert it and try again
token-session-closed = { $function } failed: { $code } — the session was closed (card removed or reset); try again
token-logged-out = { $function } failed: { $code } — the token forgot the login (another program logged out or the card was reset); try again
token-mechanism-unsupported = { $function } failed: { $code } — the token does not support this algorithm
token-call-failed = { $function } failed: { $code }
token-bad-answer = { $function } returned { $what }
token-wrong-pin = wrong PIN for token '{ $token }' ({ $tries }); it was not retried
token-pin-locked = the PIN of token '{ $token }' is locked; unblock it with the PUK or your card issuer (a My Number card PIN is reset at the municipal office)
token-final-try-refused = token '{ $token }' has one PIN try left: refusing to spend it. If you are sure of the PIN, run again with --allow-final-pin-try
token-pin-rules = the PIN does not fit token '{ $token }' ({ $reason }); no try was spent
token-no-pin-source = no way to ask for the PIN: { $reason }
token-module-missing = no such file (is the module's package installed?)
token-unusable-card = a card the module cannot use ({ $error })
token-ambiguous = several tokens are present ({ $tokens }): choose one with --token 'pkcs11:token=LABEL'
token-named-absent = the token { $uri } is not present; insert the card or token and try again.
token-none-present = a token is not present; insert the card or token and try again.
token-searched = Searched: { $slots }.
token-no-module = no PKCS#11 module found: install your token's module (softhsm2, opensc or ykcs11) or give one with --token 'pkcs11:?module-path=/path/to/module.so'
token-slot = { $module } slot { $slot } '{ $description }': { $state }
token-no-profile = token '{ $token }' ({ $manufacturer } / { $model }) matches no profile: add a profile for it to your profiles directory
token-removed-during = token '{ $token }' was removed during the operation; insert it and try again
token-removed-from = token '{ $token }' was removed from '{ $slot }'; insert it and try again
warning = warning: { $text }
slot-empty = empty
slot-uninitialised = uninitialised token
slot-token = token '{ $token }' ({ $manufacturer } / { $model })

## PIN

pin-state-locked = locked
pin-state-final-try = one try left
pin-state-low = tries are running low
pin-state-earlier-wrong = the token reports an earlier wrong PIN
pin-state-ok = ok
pin-length-rejected = the token rejected its length
pin-context-missing = the key needs a PIN for each use but none was given
pin-not-asked = the PIN is not cached and this request may not ask for it
pin-final-try-warning = token '{ $token }' has one PIN try left; a wrong PIN now locks it
pin-low-warning = token '{ $token }' reports an earlier wrong PIN: tries may be running low
pin-tries-locked = the PIN is now locked
pin-tries-final = one try left before it locks
pin-tries-few = few tries left
pin-tries-more = more than one try left
pin-tries-uncounted = this token does not count tries
pin-tries-unknown = the token does not say how many tries are left
pin-rule-length = it must be { $min } to { $max } characters long, it has { $length }
pin-rule-digits = it must contain digits only
pin-rule-upper-alnum = it must contain letters A–Z and digits only
pin-rule-mix = it must mix letters and digits

## PIN sources

pin-fd-used = the PIN from --pin-fd was already used once
pin-tty-prompt = PIN for '{ $token }' ({ $operation }):
pin-no-terminal = no terminal to ask on ({ $error }); configure pinentry or pass --pin-fd N
pin-no-pinentry = pinentry is configured but no pinentry program was found
pin-entry-description = Enter the PIN of token "{ $token }" to { $operation } ({ $min } to { $max } characters).
pin-entry-required = A PIN is required

## Signing

sign-no-from = the mail has no From address: the signature must be bound to one
sign-from-refused = refusing to sign: { $why }
sign-wanted-certificate = a signing certificate for { $from }
sign-wanted-personal = a personal certificate (My Number card)
sign-from-not-address = --from '{ $from }' is not a mail address
sign-not-mime-entity = the input is not a MIME entity (no Content-Type field): give the part to be signed, headers included
sign-not-7bit = the entity is not 7-bit clean or has lines over 998 characters, so relays would alter it and break the signature: let the mail client encode it (quoted-printable or base64)
sign-done = signed mail from { $from } as '{ $subject }' with key '{ $key }' on token '{ $token }' ({ $scheme })
sign-operation = sign mail from { $from }{ $to }
sign-operation-key = sign mail from { $from }{ $to } with key '{ $key }'
sign-operation-to = { " " }to { $to }
sign-personal-unasked = not signing with token '{ $token }' unasked: { $what }, so every recipient would see all of it and none could bind it to { $from }. Send through your organisation with `ssmax-card send` (it re-signs the mail), or confirm this one with --personal-certificate
sign-personal-confirmed = signed with a personal certificate at your request: { $what }; recipients see it, and strict mail clients reject a signature whose certificate does not name { $from }
sign-no-matching-certificate = token '{ $token }' has no signing certificate matching { $uri }
sign-no-certificate = token '{ $token }' holds no user certificate to sign with (import one next to your key)
sign-from-not-in-certificate = refusing to sign: the From address { $from } is not in any certificate on token '{ $token }' (they name: { $names })
sign-from-not-in-certificate-none = refusing to sign: the From address { $from } is not in any certificate on token '{ $token }' (they name no e-mail address)
sign-certificate-expired = '{ $label }' expired on { $when } (renew it)
sign-certificate-not-yet-valid = '{ $label }' is not valid before { $when }
sign-certificate-wrong-usage = '{ $label }' cannot sign mail: { $reason }
sign-no-usable = no usable certificate for { $from }: { $reasons }
sign-your-certificate = your certificate
sign-revoked = refusing to sign: { $reason } — ask your organisation for a new certificate
sign-revocation-unknown = refusing to sign: { $reason }
sign-certificate-expiring = the certificate '{ $label }' expires on { $when } (in { $days } days): renew it
sign-key-retired = the key of '{ $label }' was renewed and only decrypts old mail; import the new certificate to sign
sign-no-private-key = token '{ $token }' has the certificate but not its private key
token-several-hold = several tokens hold { $what } ({ $tokens }): choose one with --token 'pkcs11:token=LABEL' or `token` in the config
token-none-holds = none of the tokens present ({ $tokens }) holds { $what }
cert-usage-no-signature = its key usage does not allow digital signatures
cert-usage-no-email = its extended key usage does not include e-mail protection

## Verification

verify-content-twice = the signature carries content of its own besides the signed part: refused
verify-no-signers = the signature has no signers
verify-no-signer-certificate = the signer's certificate is neither in the message nor given (pass it with --certfile FILE)
verify-no-message-digest = signed attributes lack the message digest
verify-content-altered = the content does not match the signature of { $who }: the mail was altered after signing
verify-no-content-type = signed attributes lack the content type
verify-content-type-differs = the signed content-type attribute does not match the content
verify-certificate-unacceptable = the certificate of { $who } is not acceptable: { $error }
verify-signature-altered = the signature of { $who } does not verify ({ $why }): the mail was altered or signed with another key
verify-certificate-usage = the certificate of { $who } may not sign mail: { $reason }
verify-when-now = now
verify-when-signed = at signing time
verify-signing-time-future = the signing time { $when } is in the future
verify-certificate-not-valid = the certificate of { $who } was not valid { $when } (valid { $from } to { $until })
verify-no-anchors = no trust anchors: keep the SSMAX root on the token or pass --ca FILE
verify-sha1-refused = the signature of { $who } uses SHA-1, which is refused as broken (as Thunderbird does): ask the sender to sign with SHA-256
verify-weak-digest = the signature of { $who } uses { $digest }, which is refused as too weak: ask the sender to sign with SHA-256
verify-unknown-algorithm = the signature of { $who } uses algorithm { $oid }, which ssmax-card does not verify
chain-not-valid-then = a certificate in the chain of { $who } was not valid { $when } (signer valid { $from } to { $until })
chain-untrusted = the certificate of { $who } is not trusted: its chain does not lead to a trust anchor (issuer: { $issuer })
chain-not-for-email = the certificate of { $who } is not for e-mail protection (extended key usage)
chain-bad-signature = a certificate in the chain of { $who } has an invalid signature
chain-invalid = the certificate chain of { $who } is not valid { $when }: { $error }

## Revocation

revocation-signer-is-anchor = the signer's certificate is itself a trust anchor
revocation-required-pinned = a revocation status is required (--revocation require), but { $who } is trusted as itself (its own certificate is an anchor), with no issuer to ask
revocation-in-grace = a CRL for the chain is past its nextUpdate, within the grace of { $hours } h (revocation_grace_hours)
revocation-nothing-to-be-had = no CRL or OCSP answer to be had (--crl, crls in the config, or the certificates' own)
revocation-not-covered = no CRL or OCSP answer covers every certificate of the chain
revocation-out-of-date = a CRL for the chain is out of date
revoked-named = { $revoked }: the signature of { $who } is not to be trusted
revoked-in-chain = a certificate in the chain of { $who } was revoked
revocation-required-unknown = the revocation status of the chain of { $who } is unknown (--revocation require): no CRL or OCSP answer for every certificate in it
revocation-required-stale = a CRL for the chain of { $who } is out of date (--revocation require): fetch a current one
revocation-check-failed = the revocation check of { $who } failed: { $error }
revoked-by-ocsp = the certificate '{ $subject }' (serial { $serial }) was revoked on { $when } ({ $reason }), says the OCSP answer signed by { $responder }

## Error headings

cms-malformed = malformed CMS: { $detail }
cms-unsupported = unsupported: { $detail }
cms-cannot-decrypt = cannot decrypt: { $detail }
cms-verify-failed = verification failed: { $detail }
cms-decrypt-failed = decryption failed: { $detail }
cms-no-key = no usable key: { $detail }
mail-malformed = malformed mail: { $detail }
file-cannot-read = cannot read { $path }: { $error }
file-not-regular = { $path } is { $kind }, not a regular file; refused
file-too-large = { $path } is larger than { $limit }; refused
bad-profile = bad profile: { $error }
bad-config = bad config: { $error }
file-kind-directory = a directory
file-kind-fifo = a FIFO (named pipe)
file-kind-char-device = a character device
file-kind-block-device = a block device
file-kind-socket = a socket
file-kind-other = not a file
revocation-status-good = not revoked (every certificate in the chain checked against a current CRL or OCSP answer)
revocation-status-unknown = revocation status unknown: { $why }
revocation-status-off = not checked (--revocation off)

## The verification report

verify-is-encrypted = this mail is encrypted, not signed: use 'ssmax-card decrypt'
verify-no-from = the mail has no From address to compare with the certificate
verify-too-deep = signatures nested more than { $layers } deep; refused
verify-inner-failed = inner signature (layer { $layer }): { $error }
verify-from-mismatch = the From address { $from } is not in the signer's certificate ({ $subject } names: { $names })
verify-from-mismatch-none = the From address { $from } is not in the signer's certificate ({ $subject } names no e-mail address)
report-good = Good signature from { $subject } <{ $emails }>
report-inner = Inner signature (layer { $layer }) from { $subject } <{ $emails }>
report-issuer = { "  " }issued by:    { $issuer }
report-algorithm = { "  " }algorithm:    { $algorithm }
report-signed-at = { "  " }signed at:    { $when }
report-valid-until = { "  " }valid until:  { $when }
report-pinned = { "  " }trust:        the signer's certificate itself is a trust anchor
report-chain = { "  " }chain:        { $chain }
report-revocation = { "  " }revocation:   { $status }
report-from-matches = { "  " }From matches: { $from }

## status

status-no-module = no PKCS#11 module installed (looked for: softhsm2, opensc, ykcs11); install one or pass --token 'pkcs11:?module-path=...'
status-module = module { $path }
status-module-error = { "  " }error: { $error }
status-no-slots = { "  " }no slots (no reader connected, or pcscd is not running)
status-slot-problem = { "  " }slot { $slot } '{ $description }': { $problem }
status-slot-empty = { "  " }slot { $slot } '{ $description }': no token
status-slot-uninitialised = { "  " }slot { $slot } '{ $description }': uninitialised token
status-slot-token = { "  " }slot { $slot } '{ $description }': token '{ $token }'
status-token-model = { "    " }manufacturer { $manufacturer } / model { $model } / serial { $serial }
status-profile-aside = { "    " }profile      { $profile } sets this slot aside: it is not for mail
status-profile = { "    " }profile      { $profile }
status-profile-none = { "    " }profile      none (add one to use this token)
status-pin = { "    " }PIN          { $state }
status-token-error = { "    " }error: { $error }
status-certificate-unparsable = { "    " }certificate id { $id } '{ $label }': does not parse
status-anchor = { "    " }trust anchor id { $id } '{ $label }'
status-ca-certificate = { "    " }CA certificate id { $id } '{ $label }'
status-certificate = { "    " }certificate id { $id } '{ $label }'
status-expired = EXPIRED { $when }
status-expiring = expires { $when } — WARNING: in under 30 days, renew it
status-valid-until = valid until { $when }
status-subject = { "      " }subject { $subject }
status-emails = { "      " }e-mail  { $emails }
status-key = { "      " }key     { $kind }; { $expiry }
status-revocation = { "      " }revocation { $status }
status-key-pair = { "    " }key pair id { $id } '{ $label }': { $kind } (private key on the token; listing it needs the PIN)
status-note = { "    " }note: { $note }
status-cannot-decrypt = { "    " }note: this token cannot decrypt
status-revocation-no-trust = not checked (no trust anchor here, or revocation off)
status-revocation-no-chain = not checked (its chain does not lead to an anchor here)
status-this-certificate = this certificate
status-revoked = REVOKED: { $reason }

## Decryption

decrypt-operation-from = decrypt mail from { $from }
decrypt-operation = decrypt a message
decrypt-wanted-key = a key this message is encrypted for
decrypt-done = decrypted on token '{ $token }' with the key of '{ $recipient }' ({ $transport }, { $algorithm })
decrypt-is-signed = this mail is signed, not encrypted: use 'ssmax-card verify'

## The command line

cli-pin-fd-stdin = --pin-fd 0 is standard input, which carries the mail here: use another descriptor or --in FILE
cli-cannot-read-stdin = cannot read standard input: { $error }
cli-input-too-large = input is larger than { $limit }; refused
cli-cannot-write = cannot write { $path }: { $error }
cli-cannot-write-stdout = cannot write standard output: { $error }
cli-labels-per-attachment = give one --label for each --attach ({ $files } files, { $labels } labels)
cli-agent-no-pin-fd = the agent asks for PINs with pinentry on the client's display and takes no --pin-fd; give --pin-fd to a one-shot command (with --agent never) instead
cli-no-audit-log = no audit log path; give --log FILE
audit-broken = audit log { $path }: { $error }
audit-intact = audit log { $path }: { $entries } entries, chain intact

## Agent

agent-unreachable = the agent at { $path } is not reachable ({ $reason }); start it with 'ssmax-card agent' or use --agent never
agent-broke-off = the agent at { $path } broke off the request ({ $reason }); it may have stopped — run the command again
agent-not-ours = refusing the socket { $path }: it is held by user { $uid }, not by you, so whatever listens there is not your agent (nothing was sent to it)
agent-module-refused = the agent loads only the PKCS#11 modules its own configuration and profiles name, and '{ $module }' is not one of them; name it in the agent's config (token = "pkcs11:…?module-path=…") or in a profile, or use --agent never
cli-not-for-agent = --pin-fd and --config are not passed to the agent; use --agent never
cli-too-many-files-for-agent = at most { $most } --ca, --certfile, --crl and --content files go to the agent; use --agent never
agent-refused = the agent refused the request
agent-no-length = the agent did not say how long its product is
agent-token-removed-during = the token was removed while the request ran; insert it and try again
agent-busy-queue = busy: too many requests are waiting for the token; try again shortly
agent-timed-out = timed out after { $ms } ms waiting for the token
agent-busy-restarting = busy: the agent is restarting after a token call hung; try again in a moment
agent-card-not-in-reader = token '{ $token }' is not present: insert the card in reader '{ $reader }'
agent-reader-not-shown = token '{ $token }' follows reader '{ $reader }', which PC/SC does not show (is pcscd running, is the reader connected?)
agent-listening = listening on { $socket }
agent-listening-again = listening on { $socket } (restart { $restart } after a hung token call)
agent-other-uid = refused: this agent serves uid { $uid } only
agent-busy-connections = busy: the agent is serving { $limit } connections, its limit ([agent] max_connections); try again in a moment
agent-closing-idle-for-room = closing an idle connection: the agent holds its limit of { $limit } connections ([agent] max_connections) and this one had waited longest with nothing under way
agent-connections-capped = only { $limit } connections can be held open at once: the process may open { $descriptors } descriptors (ulimit -n)
agent-token-hung = the token did not answer for { $seconds } s during '{ $what }' (limit { $limit } ms, [agent] token_timeout_ms): the agent abandoned the call and restarts with the token module loaded afresh; check the card and reader, then try again

## Agent events

event-pin-needed = token '{ $token }': { $operation }
event-certificate-expired = certificate '{ $label }' on token '{ $token }' expired on { $when }: renew it
event-certificate-expiring = certificate '{ $label }' on token '{ $token }' expires on { $when } (in { $days } days): renew it
event-token-removed = token '{ $token }' was removed: sessions closed, PIN forgotten
event-token-removed-from = token '{ $token }' was removed from reader '{ $reader }': sessions closed, PIN forgotten
event-token-replaced = token '{ $token }' (serial { $serial }) was replaced: sessions closed, PIN forgotten
event-token-inserted = token '{ $token }' (serial { $serial }) is present

## Keys and certificates on the token

keygen-impossible = token '{ $token }' cannot generate keys here: { $reason }
keygen-id-not-hex = --id { $id } is not hex
keygen-id-taken = token '{ $token }' already has a key with id { $id }
keygen-operation = generate a key pair '{ $label }'
keygen-done = generated { $kind } key pair '{ $label }' on token '{ $token }': use --key 'pkcs11:id=%{ $id }' (the private key is sensitive and never leaves the token)
csr-no-key = name the key with --key 'pkcs11:id=%NN' (keygen prints it)
csr-bad-subject = --subject '{ $subject }': { $error }
csr-bad-email = '{ $email }' is not an ASCII mail address
csr-operation = sign a certificate request for { $email }
csr-no-private-key = no private key with id { $id }
csr-build-failed = building the request: { $error }
csr-attestation-failed = attestation: { $error }
csr-done = certificate request for { $email } signed on the token
import-only-ca = the input holds only CA certificates: import-cert wants your certificate (and may carry its issuers)
import-no-matching-key = refusing to import: no key on token '{ $token }' matches the public key of '{ $subject }'
import-other-key = refusing to import: the certificate belongs to key { $id }, not { $wanted }
import-already-there = this certificate is already on the token
import-operation = store the certificate of { $subject }
import-done = stored '{ $subject }' next to key { $id } as '{ $label }' (valid until { $until })
import-retired = retired key { $id } ('{ $key }') from signing: it still decrypts mail sent to '{ $certificate }'
import-root-not-stored = not stored: the root '{ $subject }' from the bundle (a trust anchor is stored with import-anchor only)
import-issuer-there = the issuer '{ $subject }' is on the token already
import-issuer-stored = stored the issuer '{ $subject }' as '{ $label }' (carried in signatures, not trusted as an anchor)
import-not-certificate = not a certificate: { $error }
import-empty-bundle = the PKCS#7 bundle holds no certificates
anchor-profile-no-org-prefix = the { $profile } profile does not say how this token marks organisation certificates
anchor-profile-no-prefix = the { $profile } profile does not say how this token marks trust anchors
anchor-org-is-ca = an organisation certificate is an end-entity certificate, not a CA
anchor-org-not-mail = not an organisation mail certificate: { $reason }
anchor-not-ca = a trust anchor must be a CA certificate
anchor-operation-org = store the organisation certificate '{ $name }'
anchor-operation = store the trust anchor '{ $name }'
anchor-done = stored '{ $subject }' on token '{ $token }' as '{ $label }'
certs-expired = EXPIRED
certs-expiring = expires in { $days } days — renew it
certs-days-left = { $days } days left

## SSMAX: send, receive, forward

send-no-from = the draft has no From address
send-done = { $count } attachment(s) encrypted for '{ $org }'; { $summary }
receive-not-ssmax = not an SSMAX mail: expected multipart/signed from your organisation
receive-no-org-certificate = the token holds no organisation certificate to check the mail against (label 'ssmax-org…')
receive-signature-count = expected one signature (your organisation's), found { $found }
receive-not-your-org = the mail is signed by '{ $subject }', which is not your organisation's certificate stored on the token
receive-your-org = your organisation '{ $subject }'
receive-no-from = the mail has no From address
receive-no-originator = the organisation's signature does not record the original sender
receive-from-not-originator = the From address { $from } is not the original sender the organisations verified ({ $verified })
receive-wanted-key = a key the attachments are encrypted for
receive-verified = verified: signed by your organisation '{ $subject }'
receive-operation = open the protected mail from { $from }
receive-opened = opened '{ $label }' on the token with the key of '{ $recipient }' ({ $transport }, { $algorithm })
receive-forwarded-attachment = forwarded by the sender, who showed they held its key (who first encrypted it cannot be checked)
view-verified = This mail was verified by ssmax-card against your organisation's certificate on your card ({ $org }).
view-attachments = Protected attachments, decrypted on your card:
view-failed = This mail did NOT pass SSMAX verification, and none of its protected attachments was opened. Do not trust who it says it is from. Why: { $why }
imap-give-upstream = name the mail store: --upstream HOST:PORT or upstream in [imap]
imap-give-upstream-user = name the account on the mail store: --upstream-user or upstream_user in [imap]
imap-plain-loopback-only = { $upstream } is not on this machine: without TLS the door reads only a mail store on a loopback address
imap-waiting-earlier = an earlier protected mail is waiting for the card and its PIN
imap-waiting-notice = A protected mail in your mail store could not be opened yet: { $reason }
    To open it, insert the card that holds your key; when ssmax-card asks for the PIN, enter it. The mail then appears opened, as a new message, within seconds, and this notice goes away.
imap-cache-key = the IMAP door's cache key
imap-cache-size = cache_size in [imap] must be a size such as "1 GiB" or "500 MiB", not { $value }
view-field-twice = the mail has more than one { $field } field: what it shows and what it does can differ
view-header-other = Note: the { $field } field, which the signature does not cover, names someone else: { $value }
view-untouched = not an SSMAX mail: shown as it is
view-pass = SSMAX mail from { $sender }: verified, attachments decrypted on the card
view-fail = SSMAX mail that does not verify: shown with the reason, no attachment opened ({ $why })
attachment-failed = attachment '{ $label }': { $error }
forward-no-to = give at least one --to address
forward-no-such-attachment = no attachment named or labelled '{ $wanted }' (the mail has: { $have })
forward-no-such-attachment-none = no attachment named or labelled '{ $wanted }' (the mail has none)
forward-operation = forward attachments
forward-done = forwarded { $count } attachment(s), re-keyed for '{ $org }'; { $summary }
forward-no-address = no e-mail address in the certificates on the token
forward-several-addresses = the token's certificates name several addresses ({ $addresses }): choose one with --from
identity-describe = { $factors } (token: { $token }, profile { $profile }; PIN verified { $when })
chain-sending-org = sending organisation: { $subject }
chain-original-sender = original sender:      { $subject } <{ $emails }>, signed { $when }
chain-identity = identity method:      { $method }
org-no-certificate = no organisation certificate: store it on the token next to your key (label 'ssmax-org…') or set org_certificate in the config
org-no-anchor = no SSMAX trust anchor on the token or in the config to check the organisation certificate against
org-whose = the organisation '{ $subject }'
org-is-ca = { $subject } is a CA certificate
org-refused = refusing to encrypt to the organisation certificate: { $reasons }

## Extracting attachments

extract-wrote = wrote { $path } ({ $label })
extract-wrote-renamed = wrote { $path } ({ $label }): another attachment is also named '{ $name }'
extract-is-directory = { $path } is a directory; nothing was written
extract-exists = { $paths } exist(s); nothing was written (use --force to replace)
extract-appeared = it appeared while extracting
extract-nothing-kept = cannot write { $path }: { $error }; nothing was kept
extract-symlink = { $path } is a symbolic link; nothing was written (name it as { $path }/. to extract where it leads)
extract-no-directory = { $path } does not exist; nothing was written
extract-not-directory = { $path } is not a directory; nothing was written
extract-cannot-write = cannot write { $path }: { $error }; nothing was written

## Fetching CRLs and OCSP answers

crl-none-from = no CRL from { $url }: { $why }
crl-not-from-issuer = the list is not signed by '{ $issuer }', the issuer of the certificate that names it
ocsp-none-for = no OCSP answer for '{ $subject }': { $why }
fetch-off = not in the cache, and fetching is off (crl_fetch = false)
ocsp-no-responder = no responder
ocsp-time-spent = not asked: the time for fetching (crl_fetch_timeout_ms) is spent
crl-time-spent = not fetched: the time for fetching (crl_fetch_timeout_ms) is spent
crl-http-status = the server answered HTTP { $code }
crl-transport = cannot fetch it ({ $kind })
crl-empty-answer = the answer holds no CRL
ocsp-http-status = the responder answered HTTP { $code }
ocsp-transport = cannot reach it ({ $kind })
fetch-read-failed = reading it failed ({ $error })
fetch-too-large = it is larger than { $size }; refused

## Keys on the token

key-no-free-id = no free CKA_ID left on the token
key-no-public-key = no public key with id { $id } on token '{ $token }'
key-public-unusable = the public key with id { $id } is unusable: { $reason }
key-cannot-encode-certificate = cannot encode the certificate: { $error }
key-cannot-sign-kind = cannot sign mail with a { $kind } key (supported: RSA, EC P-256, P-384)
key-may-not-sign = key '{ $key }' on token '{ $token }' may not sign (CKA_SIGN is false: a renewed key is kept only to decrypt old mail); sign with the current key
key-mechanism-not-offered = token '{ $token }' ({ $profile } profile) does not offer { $mechanism } signatures
module-lacks = the module has no { $function }
key-no-ecdh-secret = the token did not return the ECDH secret
key-certificate-without-key = the token has the certificate '{ $label }' but no private key with its id
key-token-cannot-decrypt = this token cannot decrypt
key-no-ecdh = token '{ $token }' does not offer ECDH
secret-pin = PIN
secret-password = password
secret-fd-unreadable = { $flag } { $fd } is not readable for a { $what }
secret-too-long = { $flag } { $fd } gave more than { $most } bytes
secret-empty = { $flag } { $fd } gave an empty { $what }
secret-not-utf8 = the { $what } from { $flag } { $fd } is not UTF-8
secret-unix-only = { $flag } is only available on Unix
secret-timed-out = no PIN line arrived on { $flag } { $fd } within { $minutes } minutes
secret-cannot-wait = cannot wait for { $flag } { $fd }: { $error }
secret-cannot-read = cannot read { $flag } { $fd }: { $error }

## SMTP front door

smtp-give-relay = give --relay host:port (or [smtp] relay in the config)
smtp-give-relay-user = give --relay-user (or [smtp] relay_user in the config)
smtp-password-prompt = Password for { $user } at { $host }:
smtp-password-unread = cannot read the password: { $error }
smtp-password-empty = empty password; nothing stored
smtp-password-stored = stored the password for { $user } at { $host } in the OS keyring
smtp-relay-not-host-port = relay '{ $relay }' is not host:port
smtp-no-relay = no relay: give --relay host:port or [smtp] relay in the config
smtp-relay-ca = relay CA: { $error }
smtp-relay-ca-file = relay CA { $path }: { $error }
smtp-tls-settings = TLS settings for { $host }: { $error }
smtp-plain-not-local = relay_tls = none is only allowed for a relay on this machine, not { $host }
keyring-failed = OS keyring: cannot { $what }: { $error }
keyring-no-relay-password = no password for relay account { $user }@{ $host } in the OS keyring: run 'ssmax-card smtp set-relay-password --relay { $host } --relay-user { $user }'
keyring-no-upstream-password = no password for { $user } on { $host } in the OS keyring: run ssmax-card imap set-upstream-password
smtp-loopback-only = the SMTP front door listens on loopback only, not { $listen }
smtp-cannot-listen = cannot listen on { $listen }: { $error }
smtp-listening = listening on { $listen }, relaying to { $relay }
agent-already-listening = an agent is already listening on { $socket }
keyring-open-relay = open the relay password entry
keyring-read-relay = read the relay password
keyring-store-relay = store the relay password
keyring-open-client = open the client secret entry
keyring-read-client = read the client secret
keyring-store-client = store the client secret

## pkcs11: URIs, config, profiles

uri-invalid = invalid pkcs11: URI: { $reason }
uri-no-scheme = '{ $text }' does not start with 'pkcs11:'
uri-path-no-equals = path attribute '{ $attribute }' has no '='
uri-slot-not-number = slot-id '{ $value }' is not a number
uri-unknown-type = unknown object type '{ $value }'
uri-unknown-path-attribute = unknown path attribute '{ $attribute }'
uri-query-no-equals = query attribute '{ $attribute }' has no '='
uri-pin-refused = '{ $attribute }' is not accepted: give the PIN through pinentry, the terminal or --pin-fd
uri-unknown-query-attribute = unknown query attribute '{ $attribute }'
uri-contradiction = the token names { $attribute } { $token } and the key names { $key }: they contradict each other
uri-twice = attribute '{ $attribute }' appears twice
uri-not-utf8 = attribute '{ $attribute }' is not UTF-8
uri-bad-escape = bad percent-escape in '{ $text }'
config-unreadable = config: { $error }
profile-unreadable = cannot read profile { $file }: { $error }

## Decryption, in detail

decrypt-broken-cipher = the content is encrypted with { $cipher }, which is refused as broken: ask the sender to use AES
decrypt-unknown-cipher = the content is encrypted with algorithm { $oid }, which ssmax-card does not know
decrypt-failed-uniform = the message does not decrypt with the key on the token: it was altered, or it was not encrypted for this key
decrypt-token-certificate = { $subject } (serial { $serial })
decrypt-none = none
decrypt-not-for-us = the message is not encrypted for any key on the token (recipient types: { $kinds }; token certificates: { $ours })
verify-pss-mask-unsupported = the signature of { $who } uses RSA-PSS with mask generation { $oid }, which ssmax-card does not verify
verify-pss-digest-mismatch = the signature of { $who } states RSA-PSS over { $stated } but a digest of { $digest }
verify-ecdsa-sha512 = the signature of { $who } uses ECDSA with SHA-512, which ssmax-card does not verify yet
ocsp-refused = OCSP answer refused: { $why }
agent-start-presence = cannot start the presence watcher: { $error }
agent-start-refresher = cannot start the revocation refresher: { $error }
agent-start-watchdog = cannot start the watchdog: { $error }
agent-cannot-restart = cannot restart in place ({ $error }); exiting
agent-revocation-refresh = revocation refresh: { $note }
audit-failed = audit log: { $error }
audit-repaired = audit log: dropped an unfinished last line left by a stopped agent
agent-reply-file = writing the product to the client's file: { $error }
agent-socket-mkdir = cannot create the directory of { $socket }
agent-socket-dir-symlink = refusing the socket directory { $dir }: it is a symbolic link; remove it, or choose another place with --socket
agent-socket-dir-not-dir = refusing the socket directory { $dir }: it is not a directory
agent-socket-dir-not-ours = refusing the socket directory { $dir }: it belongs to user { $uid }, not to you (someone may have made it first to take your agent's place); choose another place with --socket or set XDG_RUNTIME_DIR
agent-socket-dir-open = refusing the socket directory { $dir }: its mode is { $mode }, open to other users; make it private with 'chmod 700 { $dir }'
agent-socket-stale = cannot remove the stale socket { $socket }
agent-socket-listen = cannot listen on { $socket }
agent-socket-protect = cannot protect { $socket }
agent-cannot-start = cannot start the agent: { $error }

## Malformed input

mail-base64 = base64 body does not decode: { $error }
mail-quoted-printable = a quoted-printable body does not decode
mail-unknown-encoding = unknown Content-Transfer-Encoding '{ $encoding }'
from-missing = the mail has no From field
from-several-fields = the mail has { $count } From fields; a mail has exactly one (RFC 5322 §3.6), and a mail program may show another than the one checked
from-several-mailboxes = the From field names { $count } mailboxes; a signed mail comes from exactly one sender
from-group = the From field is a group, not a mailbox
from-control = the From field holds a control character (a NUL ends the text for some readers)
from-name-claims = the From's display name shows another address ({ $claim }) than the one checked ({ $from })
inner-sender-unreadable = the header of the signed content cannot be read, so what a mail program shows from it is unknown ({ $error })
inner-sender-from = the From inside the signed content: { $why }
inner-sender-differs = the signed content names another sender ({ $inner }) than the From the mail shows ({ $outer })
inner-sender-content-types = the signed content has { $count } Content-Type fields; mail programs differ in which one counts
from-not-an-address = the From field holds no mail address
from-bare-cr = a header line holds a bare CR, which some mail programs read as a line end
mail-first-line-continued = the first header line is a continuation line
mail-bad-header-line = header line { $line } is not a 'Name: value' field
mail-bad-boundary = multipart boundary is missing or longer than 70 characters
mail-too-many-parts = a multipart has more than { $most } parts
mail-no-closing-delimiter = multipart body has no closing delimiter '--{ $boundary }--'
smime-neither = input is neither a mail (no header fields) nor a CMS object
smime-other-protocol = multipart/signed with protocol '{ $protocol }' is not S/MIME
smime-no-boundary = multipart/signed without a boundary
smime-part-count = multipart/signed has { $parts } parts, not 2
smime-second-part = the second part is { $mime }, not application/pkcs7-signature
smime-not-smime = not an S/MIME message (Content-Type { $mime })
mail-too-deep = MIME parts nested deeper than { $levels } levels
mail-part-no-boundary = { $mime } part has no boundary parameter
mail-multipart-encoding = a multipart part cannot have Content-Transfer-Encoding { $encoding }
mail-attached-message-8bit = an attached message contains 8-bit data or over-long lines; attach it as a file instead
pem-not-text = PEM is not text
pem-undecodable = PEM does not decode: { $error }
pem-not-cms = PEM label '{ $label }' is not CMS
cms-not-content-info = not a CMS ContentInfo: { $error }
cert-unparsable = a certificate does not parse: { $error }
cert-too-large = a certificate of { $size } bytes is larger than the { $limit } KiB accepted (huge extensions?)
cert-not-pem = { $what }: not PEM certificates: { $error }
crl-pem-not-text = { $what }: PEM that is not text
crl-pem-no-end = { $what }: a PEM block without its END line
crl-bad-pem = { $what }: bad PEM: { $error }
crl-pem-other = { $what }: a PEM '{ $label }' block, not an X509 CRL
crl-none-in = { $what }: no CRL in it
ssmax-draft-no-boundary = multipart/mixed draft without a boundary
ssmax-mixed-no-boundary = multipart/mixed without a boundary
ssmax-marked-plaintext = part { $part } ({ $mime }) carries SSMAX-Label or SSMAX-Filename but is not an encrypted attachment: refused, as a part that passed no inspection posing as one
ssmax-not-gcm = attachment '{ $label }' is encrypted with { $algorithm }: an SSMAX attachment is AuthEnvelopedData with AES-GCM only
ssmax-nested-envelope = an S/MIME envelope inside the mail's content or inside an attachment: no inspection can see into it, so it is refused
ssmax-binding-certificate = certificate { $serial } of '{ $issuer }'
ssmax-unbound = attachment '{ $label }' is not bound to a sender: an SSMAX attachment names its sender, label and file name in its authenticated attributes
ssmax-label-not-bound = attachment '{ $label }' was encrypted under the label '{ $bound }': the label was changed after encryption
ssmax-filename-not-bound = attachment '{ $label }' is sent as '{ $filename }' but was encrypted as '{ $bound }'
ssmax-not-senders = attachment '{ $label }' was encrypted by { $originator }, not by the sender '{ $sender }', who does not show they could open it: an organisation re-keys only what its sender could open
ssmax-too-many-forwards = the attachment was forwarded more than { $most } times
ssmax-entity-name = attachment '{ $label }' holds a file named '{ $named }', not '{ $filename }'
ssmax-entity-name-unreadable = attachment '{ $label }' gives its file name in { $field } in a form that cannot be read
ssmax-entity-two-fields = attachment '{ $label }' has two { $field } fields: mail clients differ in which they read
der-invalid = not DER: { $error }
der-too-deep = DER nested deeper than { $levels } levels
der-set-too-large = a SET with { $elements } elements (recipients, certificates or attributes); more than { $most } are refused
der-sort-budget = too many SET elements overall (more than { $most } orderings to check); refused before parsing
ber-invalid = not BER: { $error }
ber-too-deep = BER nested deeper than { $levels } levels
ber-too-many-values = more than { $most } constructed values; refused
decrypt-gcm-tag = AES-GCM with a { $bytes }-byte tag (16 supported)
decrypt-gcm-nonce = AES-GCM with a { $bytes }-byte nonce (12 supported)
decrypt-no-oaep = the token offers neither OAEP with { $hash } nor raw RSA
decrypt-key-transport = key transport algorithm { $oid }
decrypt-static-originator = key agreement with a static originator key
decrypt-oaep-hash = OAEP hash { $oid }
decrypt-mgf1-hash = MGF1 hash { $oid }
decrypt-oaep-mask = OAEP mask generation { $oid }
decrypt-oaep-label = OAEP label source { $oid }
decrypt-key-agreement = key agreement algorithm { $oid } (X25519/HKDF and others are not supported yet)
agent-queue-full = it has taken no new connection for { $seconds } s
