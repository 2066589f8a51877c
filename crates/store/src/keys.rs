//! Key layouts of the three column families.
//!
//! ```text
//! msgs: qid u32 BE ++ offset u64 BE                      -> record (record.rs)
//! meta: "v"                                              -> format version u32 BE
//!       "g"                                              -> next_qid u32, expired u64, dropped u64 (BE)
//!       "n" ++ queue name (UTF-8)                        -> qid u32 BE
//!       "q" ++ qid u32 BE                                -> tail u64, tail_cum u64, acked_next u64 (BE)
//!       "r" ++ qid u32 BE ++ run start u64 BE            -> run (queue.rs), 6 x u64 BE
//! kv:   namespace ++ 0x00 ++ key                         -> caller's bytes
//! ```
//! Big-endian everywhere so byte order is numeric order.

pub(crate) const CF_MSGS: &str = "msgs";
pub(crate) const CF_META: &str = "meta";
pub(crate) const CF_KV: &str = "kv";

pub(crate) const META_VERSION: &[u8] = b"v";
pub(crate) const META_GLOBAL: &[u8] = b"g";
pub(crate) const META_NAME: u8 = b'n';
pub(crate) const META_QUEUE: u8 = b'q';
pub(crate) const META_RUN: u8 = b'r';

pub(crate) const MSG_KEY_LEN: usize = 12;

pub(crate) fn msg(qid: u32, offset: u64) -> [u8; MSG_KEY_LEN] {
    let mut k = [0u8; MSG_KEY_LEN];
    k[..4].copy_from_slice(&qid.to_be_bytes());
    k[4..].copy_from_slice(&offset.to_be_bytes());
    k
}

/// Offset of a message key, if it belongs to queue `qid`.
pub(crate) fn msg_offset(qid: u32, key: &[u8]) -> Option<u64> {
    if key.len() != MSG_KEY_LEN || key[..4] != qid.to_be_bytes() {
        return None;
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&key[4..]);
    Some(u64::from_be_bytes(a))
}

pub(crate) fn name(queue: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + queue.len());
    k.push(META_NAME);
    k.extend_from_slice(queue.as_bytes());
    k
}

pub(crate) fn queue(qid: u32) -> [u8; 5] {
    let mut k = [META_QUEUE; 5];
    k[1..].copy_from_slice(&qid.to_be_bytes());
    k
}

pub(crate) fn run(qid: u32, start: u64) -> [u8; 13] {
    let mut k = [META_RUN; 13];
    k[1..5].copy_from_slice(&qid.to_be_bytes());
    k[5..].copy_from_slice(&start.to_be_bytes());
    k
}

pub(crate) fn kv(ns: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(ns.len() + 1 + key.len());
    k.extend_from_slice(ns.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// Encodes `vals` as consecutive u64 BE.
pub(crate) fn u64s<const N: usize>(vals: [u64; N]) -> Vec<u8> {
    vals.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// Decodes exactly `N` consecutive u64 BE.
pub(crate) fn parse_u64s<const N: usize>(b: &[u8]) -> Option<[u64; N]> {
    if b.len() != N * 8 {
        return None;
    }
    let mut out = [0u64; N];
    for (i, c) in b.chunks_exact(8).enumerate() {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        out[i] = u64::from_be_bytes(a);
    }
    Some(out)
}
