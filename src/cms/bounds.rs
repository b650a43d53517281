//! A linear pre-scan of outside DER before the typed parsers see it.
//!
//! The `der` crate sorts every SET OF it decodes with an insertion sort that re-encodes both
//! elements per comparison: quadratic in the number of elements. A 64 MiB CMS object made of one
//! SET with millions of tiny elements would keep the parser busy for days; 1000 real recipients
//! already cost ~0.9 s. So before any typed decoding, the raw TLV tree is walked once (no
//! allocation, no recursion past `MAX_NESTING`) and refused when a SET holds more elements than
//! `MAX_SET_ELEMENTS`, or when all SETs together would cost more than `SORT_BUDGET` comparisons.
//! Context-tagged constructed values are counted as SETs too: CMS declares several SET OFs
//! IMPLICIT ([0] certificates, [1] crls, signed and unsigned attributes).

use super::CmsError;
use der::{Decode, Header, Reader, SliceReader, Tag};

/// Most elements one SET may hold (the recipient limit: a SET of RecipientInfos is the largest
/// legitimate one).
pub const MAX_SET_ELEMENTS: u64 = super::MAX_RECIPIENTS as u64;
/// Worst-case insertion-sort comparisons over all SETs of one object: room for a full list of
/// recipients plus the small SETs of every certificate and attribute.
pub const SORT_BUDGET: u64 = 1_000_000;
/// Deepest TLV nesting walked (real CMS with certificates stays below 20).
pub const MAX_NESTING: usize = 64;

/// Refuse DER whose SETs would make the typed parsers quadratic; see the module comment.
pub fn check(der: &[u8]) -> Result<(), CmsError> {
    let mut budget = SORT_BUDGET;
    walk(der, 0, &mut budget).map(|_| ())
}

fn malformed(e: der::Error) -> CmsError {
    CmsError::Malformed(crate::tr!("der-invalid", error = e.to_string()))
}

/// Walk the TLVs in `data`; returns how many there are at this level.
fn walk(data: &[u8], depth: usize, budget: &mut u64) -> Result<u64, CmsError> {
    if depth > MAX_NESTING {
        return Err(CmsError::Malformed(crate::tr!("der-too-deep", levels = MAX_NESTING)));
    }
    let mut r = SliceReader::new(data).map_err(malformed)?;
    let mut count = 0u64;
    while !r.is_finished() {
        let h = Header::decode(&mut r).map_err(malformed)?;
        let body = r.read_slice(h.length).map_err(malformed)?;
        count += 1;
        if !h.tag.is_constructed() {
            continue;
        }
        let n = walk(body, depth + 1, budget)?;
        let sorted = matches!(h.tag, Tag::Set | Tag::ContextSpecific { .. });
        if sorted {
            if n > MAX_SET_ELEMENTS {
                return Err(CmsError::Malformed(crate::tr!(
                    "der-set-too-large",
                    elements = n,
                    most = MAX_SET_ELEMENTS
                )));
            }
            let cost = n * n.saturating_sub(1) / 2;
            *budget = budget
                .checked_sub(cost)
                .ok_or_else(|| CmsError::Malformed(crate::tr!("der-sort-budget", most = SORT_BUDGET)))?;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DER for a SET of `n` small INTEGERs.
    fn set_of(n: usize) -> Vec<u8> {
        let mut body = Vec::new();
        for i in 0..n {
            body.extend_from_slice(&[0x02, 0x01, (i % 100) as u8]);
        }
        let mut out = vec![0x31];
        der::Length::try_from(body.len()).unwrap().encode_to_vec(&mut out).unwrap();
        out.extend(body);
        out
    }

    use der::Encode;

    #[test]
    fn a_set_at_the_limit_passes_and_one_past_it_is_refused() {
        assert!(check(&set_of(1000)).is_ok());
        let e = check(&set_of(1001)).unwrap_err().to_string();
        assert!(e.contains("a SET with 1001 elements"), "{e}");
    }

    #[test]
    fn many_medium_sets_exhaust_the_sort_budget() {
        let mut body = Vec::new();
        for _ in 0..10 {
            body.extend(set_of(500));
        }
        let mut seq = vec![0x30];
        der::Length::try_from(body.len()).unwrap().encode_to_vec(&mut seq).unwrap();
        seq.extend(body);
        let e = check(&seq).unwrap_err().to_string();
        assert!(e.contains("too many SET elements overall"), "{e}");
    }

    #[test]
    fn nesting_past_the_limit_is_refused_without_deep_recursion() {
        let mut v = vec![0x05, 0x00];
        for _ in 0..100 {
            let mut outer = vec![0x30];
            der::Length::try_from(v.len()).unwrap().encode_to_vec(&mut outer).unwrap();
            outer.extend(v);
            v = outer;
        }
        assert!(check(&v).unwrap_err().to_string().contains("nested deeper"));
    }
}
