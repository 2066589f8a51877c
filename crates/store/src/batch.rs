//! `MessageBatch`: the messages of one append, packed in one buffer.
//!
//! An append crosses from the caller to the writer thread as one allocation, whatever the
//! number of messages. Layout per message (little-endian; a transfer format, never stored):
//!
//! ```text
//! ttl_secs f64 (-2 = the store default, -1 = never) | props_len u32 | body_len u32 |
//! property block (record.rs) | body
//! ```
//!
//! The Node binding hands over the buffer JavaScript packed; `from_packed` validates it
//! (framing, TTLs, property blocks) before anything reaches the writer.

use crate::error::{Error, Result};
use crate::{options, record};

const HEADER: usize = 16;
const DEFAULT_TTL: f64 = -2.0;

/// Messages of one append, packed.
#[derive(Debug, Clone, Default)]
pub struct MessageBatch {
    buf: Vec<u8>,
    count: usize,
}

/// One message of a batch, borrowed.
pub(crate) struct BatchMessage<'a> {
    pub ttl_secs: Option<i64>,
    pub properties: &'a [u8],
    pub body: &'a [u8],
}

impl MessageBatch {
    pub fn new() -> MessageBatch {
        MessageBatch::default()
    }

    /// Adds a message: an encoded property block (`encode_properties`, empty for none),
    /// its body, and its own TTL (`None` = the store default, -1 = never).
    pub fn push(&mut self, properties: &[u8], body: &[u8], ttl_secs: Option<i64>) -> Result<()> {
        if let Some(ttl) = ttl_secs {
            options::check_ttl(ttl, &format!("message {}: ttlSecs", self.count)).map_err(Error::InvalidArgument)?;
        }
        record::visit_properties(properties, |_, _| {})
            .map_err(|e| Error::InvalidArgument(format!("message {}: {e}", self.count)))?;
        let (plen, blen) = (len32(properties.len())?, len32(body.len())?);
        self.buf.reserve(HEADER + properties.len() + body.len());
        self.buf.extend_from_slice(&ttl_secs.map_or(DEFAULT_TTL, |t| t as f64).to_le_bytes());
        self.buf.extend_from_slice(&plen.to_le_bytes());
        self.buf.extend_from_slice(&blen.to_le_bytes());
        self.buf.extend_from_slice(properties);
        self.buf.extend_from_slice(body);
        self.count += 1;
        Ok(())
    }

    /// Takes a buffer packed by the caller, checking all of it.
    pub fn from_packed(buf: Vec<u8>, count: usize) -> Result<MessageBatch> {
        let batch = MessageBatch { buf, count };
        let mut seen = 0;
        let mut at = 0;
        while at < batch.buf.len() {
            let (m, next) = batch.at(at).ok_or_else(|| malformed(seen))?;
            if let Some(ttl) = m.ttl_secs {
                options::check_ttl(ttl, &format!("message {seen}: ttlSecs")).map_err(Error::InvalidArgument)?;
            }
            record::visit_properties(m.properties, |_, _| {})
                .map_err(|e| Error::InvalidArgument(format!("message {seen}: {e}")))?;
            seen += 1;
            at = next;
        }
        if seen != count {
            return Err(Error::InvalidArgument(format!("append batch holds {seen} messages, not {count}")));
        }
        Ok(batch)
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The message starting at byte `at` and where the next one starts.
    fn at(&self, at: usize) -> Option<(BatchMessage<'_>, usize)> {
        let b = &self.buf;
        let ttl = f64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?);
        let plen = u32::from_le_bytes(b.get(at + 8..at + 12)?.try_into().ok()?) as usize;
        let blen = u32::from_le_bytes(b.get(at + 12..at + 16)?.try_into().ok()?) as usize;
        let p0 = at + HEADER;
        let b0 = p0.checked_add(plen)?;
        let end = b0.checked_add(blen)?;
        let ttl_secs = if ttl == DEFAULT_TTL {
            None
        } else if ttl.fract() == 0.0 && ttl >= -1.0 && ttl <= u32::MAX as f64 {
            Some(ttl as i64)
        } else {
            Some(0) // refused by check_ttl with a clear message
        };
        Some((BatchMessage { ttl_secs, properties: b.get(p0..b0)?, body: b.get(b0..end)? }, end))
    }

    /// The messages in order. Only for validated batches: framing was checked on entry.
    pub(crate) fn iter(&self) -> impl Iterator<Item = BatchMessage<'_>> {
        let mut at = 0;
        std::iter::from_fn(move || {
            let (m, next) = self.at(at)?;
            at = next;
            Some(m)
        })
    }
}

fn len32(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::InvalidArgument(format!("{n} bytes is over the 4 GiB limit of one message")))
}

fn malformed(i: usize) -> Error {
    Error::InvalidArgument(format!("append batch is malformed at message {i}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_validates() {
        let mut b = MessageBatch::new();
        b.push(&record::encode_properties(&[("k", "v")]), b"one", None).unwrap();
        b.push(&[], b"", Some(-1)).unwrap();
        b.push(&[], b"three", Some(60)).unwrap();
        assert!(b.push(&[], b"", Some(0)).is_err());
        assert!(b.push(&[1, 9], b"", None).is_err());
        let copy = MessageBatch::from_packed(b.buf.clone(), 3).unwrap();
        let got: Vec<_> = copy.iter().map(|m| (m.ttl_secs, m.body.to_vec())).collect();
        assert_eq!(got, vec![(None, b"one".to_vec()), (Some(-1), vec![]), (Some(60), b"three".to_vec())]);
        assert!(MessageBatch::from_packed(b.buf.clone(), 2).is_err());
        assert!(MessageBatch::from_packed(b.buf[..b.buf.len() - 1].to_vec(), 3).is_err());
        let mut bad = b.buf.clone();
        bad[..8].copy_from_slice(&0.5f64.to_le_bytes());
        assert_eq!(MessageBatch::from_packed(bad, 3).unwrap_err().code(), "INVALID_ARGUMENT");
    }
}
