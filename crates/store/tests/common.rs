#![allow(dead_code)]
use edgehub_store::{encode_properties, NewMessage, Options, Store};

pub fn msg(body: &str) -> NewMessage {
    NewMessage { properties: Vec::new(), body: body.as_bytes().to_vec(), ttl_secs: None }
}

pub fn msg_ttl(body: &str, ttl: i64) -> NewMessage {
    NewMessage { ttl_secs: Some(ttl), ..msg(body) }
}

pub fn msg_props(body: &str, props: &[(&str, &str)]) -> NewMessage {
    NewMessage { properties: encode_properties(props), ..msg(body) }
}

pub fn open(dir: &std::path::Path, opts: Options) -> Store {
    Store::open(dir, opts).expect("store opens")
}

pub fn bodies(store: &Store, queue: &str, from: u64) -> Vec<(u64, String)> {
    store
        .read(queue, from, usize::MAX)
        .expect("read")
        .into_iter()
        .map(|m| (m.offset, String::from_utf8(m.body).expect("utf8")))
        .collect()
}

/// Waits (bounded) until `f` holds; the writer sweeps expiry in the background.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
