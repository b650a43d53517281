//! What the mail store sends the IMAP door: its client takes large literals out of the input
//! before imap-codec sees them (upstream.rs, `Literals`), giving the parser a placeholder. Here
//! any bytes, cut anywhere, are framed so, and imap-codec's own fragmentizer must see the same
//! lines and literals in both: each held literal is a placeholder literal announced in the same
//! place, and what it stands for is the literal's bytes; everything else is byte for byte.
#![no_main]
use imap_codec::fragmentizer::{FragmentInfo, Fragmentizer};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
enum Frag {
    Line(Vec<u8>, Option<u32>),
    Literal(Vec<u8>),
}

/// Every complete fragment imap-codec finds in `input`.
fn fragments(input: &[u8]) -> Vec<Frag> {
    let mut f = Fragmentizer::without_max_message_size();
    f.enqueue_bytes(input);
    let mut out = Vec::new();
    while let Some(info) = f.progress() {
        let bytes = f.fragment_bytes(info).to_vec();
        out.push(match info {
            FragmentInfo::Line { announcement, .. } => Frag::Line(bytes, announcement.map(|a| a.length)),
            FragmentInfo::Literal { .. } => Frag::Literal(bytes),
        });
    }
    out
}

/// The line less its literal announcement (from its last `{`).
fn before_announcement(line: &[u8]) -> &[u8] {
    let open = line.iter().rposition(|&b| b == b'{').unwrap_or(line.len());
    &line[..open]
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else { return };
    let Some((&hold, input)) = rest.split_first() else { return };
    let hold_from = u32::from(hold % 64) + 1;
    let Ok((framed, held)) = ssmax_card::imap::upstream::frame_for_fuzzing(input, usize::from(cut), hold_from) else {
        return;
    };
    let raw = fragments(input);
    let seen = fragments(&framed);
    let mut held = held.into_iter();
    let mut placeholder: Option<(Vec<u8>, Vec<u8>)> = None;
    // The framing never lags behind: what imap-codec completes of the raw input, it completes
    // of the framed one (a held literal's placeholder comes whole with its line).
    assert!(seen.len() >= raw.len(), "raw {raw:?}\nframed {seen:?}");
    for (r, s) in raw.iter().zip(&seen) {
        match (r, s) {
            (Frag::Line(rl, Some(n)), Frag::Line(sl, Some(m))) if *n >= hold_from => {
                // None: its literal is still coming (so it is the last fragment here).
                let Some((p, bytes)) = held.next() else { break };
                assert_eq!(*m as usize, p.len());
                assert_eq!(before_announcement(rl), before_announcement(sl));
                placeholder = Some((p, bytes));
            }
            (Frag::Literal(rb), Frag::Literal(sb)) if placeholder.is_some() => {
                let (p, bytes) = placeholder.take().expect("checked");
                assert_eq!(sb, &p);
                assert_eq!(rb, &bytes);
            }
            _ => assert_eq!(r, s),
        }
    }
});
