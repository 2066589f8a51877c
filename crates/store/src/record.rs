//! Record layout of a stored message (the value under a message key).
//!
//! ```text
//! [0]      format version (1)
//! [1]      flags: bit 0 = an eviction time follows the header (clamped run, see queue.rs)
//! [2..10]  enqueued_at, ms since Unix epoch, u64 big-endian
//! [10..18] expires_at,  ms since Unix epoch, u64 big-endian (u64::MAX = never)
//! [18..26] cum_bytes: bytes appended to this queue before this record, u64 big-endian
//! [26..34] evict_at (only when flag bit 0): removal time of its run, u64 big-endian
//! varint   length of the property block
//! ...      property block: varint count, then per entry varint len + key, varint len + value
//! ...      body: the rest of the value
//! ```
//!
//! Invariants: `expires_at` is the message's own expiry and the only one reads obey;
//! `evict_at >= expires_at`; property keys and values are valid UTF-8.

pub(crate) const VERSION: u8 = 1;
const FLAG_EVICT: u8 = 1;
const BASE_LEN: usize = 26;
pub const NEVER: u64 = u64::MAX;

/// Fixed fields of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub enqueued_at: u64,
    pub expires_at: u64,
    pub cum_bytes: u64,
    /// When the record's run lets it go; equals `expires_at` unless clamped.
    pub evict_at: u64,
}

/// A decoded record borrowing from the stored value.
pub(crate) struct RecordRef<'a> {
    pub header: Header,
    pub properties: &'a [u8],
    pub body: &'a [u8],
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_be_bytes(a))
}

/// Size of the encoded record for the given property block and body.
pub(crate) fn encoded_len(props: &[u8], body: &[u8], clamped: bool) -> usize {
    BASE_LEN + if clamped { 8 } else { 0 } + varint_len(props.len() as u64) + props.len() + body.len()
}

pub(crate) fn encode(out: &mut Vec<u8>, h: &Header, props: &[u8], body: &[u8]) {
    let clamped = h.evict_at != h.expires_at;
    out.reserve(encoded_len(props, body, clamped));
    out.push(VERSION);
    out.push(if clamped { FLAG_EVICT } else { 0 });
    out.extend_from_slice(&h.enqueued_at.to_be_bytes());
    out.extend_from_slice(&h.expires_at.to_be_bytes());
    out.extend_from_slice(&h.cum_bytes.to_be_bytes());
    if clamped {
        out.extend_from_slice(&h.evict_at.to_be_bytes());
    }
    put_varint(out, props.len() as u64);
    out.extend_from_slice(props);
    out.extend_from_slice(body);
}

/// Reads only the fixed header (the compaction filter and split searches need no more).
pub(crate) fn decode_header(v: &[u8]) -> Option<(Header, usize)> {
    if v.first() != Some(&VERSION) {
        return None;
    }
    let flags = *v.get(1)?;
    let enqueued_at = be64(v, 2)?;
    let expires_at = be64(v, 10)?;
    let cum_bytes = be64(v, 18)?;
    let (evict_at, at) = if flags & FLAG_EVICT != 0 { (be64(v, 26)?, BASE_LEN + 8) } else { (expires_at, BASE_LEN) };
    Some((Header { enqueued_at, expires_at, cum_bytes, evict_at }, at))
}

pub(crate) fn decode(v: &[u8]) -> Option<RecordRef<'_>> {
    let (header, at) = decode_header(v)?;
    let (plen, n) = get_varint(v.get(at..)?)?;
    let start = at + n;
    let end = start.checked_add(usize::try_from(plen).ok()?)?;
    Some(RecordRef { header, properties: v.get(start..end)?, body: v.get(end..)? })
}

pub(crate) fn varint_len(mut x: u64) -> usize {
    let mut n = 1;
    while x >= 0x80 {
        x >>= 7;
        n += 1;
    }
    n
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

pub(crate) fn get_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut x = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        x |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((x, i + 1));
        }
    }
    None
}

/// Encodes application properties into a property block.
pub fn encode_properties<K: AsRef<str>, V: AsRef<str>>(props: &[(K, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, props.len() as u64);
    for (k, v) in props {
        for s in [k.as_ref(), v.as_ref()] {
            put_varint(&mut out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
    }
    out
}

/// Walks a property block, checking lengths and UTF-8; calls `f` for every entry.
pub fn visit_properties<'a>(block: &'a [u8], mut f: impl FnMut(&'a str, &'a str)) -> Result<(), String> {
    if block.is_empty() {
        return Ok(());
    }
    let (count, mut at) = get_varint(block).ok_or("property count is not a varint")?;
    let take = |at: &mut usize| -> Result<&'a str, String> {
        let (len, n) = get_varint(&block[*at..]).ok_or("property length is not a varint")?;
        let start = *at + n;
        let end = usize::try_from(len).ok().and_then(|l| start.checked_add(l)).ok_or("property length overflows")?;
        let s = block.get(start..end).ok_or("property runs past the end of its block")?;
        *at = end;
        std::str::from_utf8(s).map_err(|_| "property is not valid UTF-8".to_string())
    };
    for _ in 0..count {
        let k = take(&mut at)?;
        let v = take(&mut at)?;
        f(k, v);
    }
    if at != block.len() {
        return Err("trailing bytes after the last property".into());
    }
    Ok(())
}

/// Decodes a property block into owned pairs.
pub fn decode_properties(block: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    visit_properties(block, |k, v| out.push((k.to_owned(), v.to_owned())))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_plain_and_clamped() {
        for evict in [500, 900] {
            let h = Header { enqueued_at: 1, expires_at: 500, cum_bytes: 77, evict_at: evict };
            let props = encode_properties(&[("a", "1"), ("ключ", "värde")]);
            let mut v = Vec::new();
            encode(&mut v, &h, &props, b"body");
            assert_eq!(v.len(), encoded_len(&props, b"body", evict != 500));
            let r = decode(&v).expect("decodes");
            assert_eq!(r.header, h);
            assert_eq!(r.body, b"body");
            assert_eq!(
                decode_properties(r.properties).unwrap(),
                vec![("a".into(), "1".into()), ("ключ".into(), "värde".into())]
            );
        }
    }

    #[test]
    fn rejects_bad_property_blocks() {
        assert!(visit_properties(&[1, 5, b'a'], |_, _| {}).is_err());
        assert!(visit_properties(&[1, 1, 0xff, 0], |_, _| {}).is_err());
        assert!(visit_properties(&[0, 9], |_, _| {}).is_err());
        assert!(visit_properties(&[], |_, _| {}).is_ok());
        assert!(decode(&[2, 0]).is_none());
        assert!(decode(&[1, 0, 0]).is_none());
    }

    #[test]
    fn varints() {
        for x in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, x);
            assert_eq!(b.len(), varint_len(x));
            assert_eq!(get_varint(&b), Some((x, b.len())));
        }
    }
}
