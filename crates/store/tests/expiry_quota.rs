//! TTL expiry (uniform, mixed, clamped runs) and the quota under both policies.
mod common;
use common::*;
use edgehub_store::{Limits, Options, WhenFull};

#[test]
fn expired_messages_are_never_read_and_space_is_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), Options { default_ttl_secs: 1, ..Options::default() });
    s.append(&["q"], (0..100).map(|i| msg(&format!("short{i}"))).collect()).unwrap();
    s.append(&["q"], vec![msg_ttl("forever", -1)]).unwrap();
    assert_eq!(s.read("q", 0, 1000).unwrap().len(), 101);
    let before = s.stats().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // Past expiry a read never returns them, whether or not the sweep ran yet.
    assert_eq!(bodies(&s, "q", 0), vec![(100, "forever".into())]);
    eventually("expired messages swept", || s.stats().unwrap().count == 1);
    let after = s.stats().unwrap();
    assert_eq!(after.expired, 100);
    assert!(after.bytes < before.bytes / 50, "space shows up again: {} -> {}", before.bytes, after.bytes);
    assert_eq!(after.queues[0].head, 100);
    drop(s);
    let s = open(dir.path(), Options { default_ttl_secs: 1, ..Options::default() });
    let st = s.stats().unwrap();
    assert_eq!((st.count, st.expired, st.bytes), (1, 100, after.bytes));
}

#[test]
fn mixed_ttls_expire_exactly_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), Options::default());
    let msgs = (0..40)
        .map(|i| if i % 4 == 1 { msg_ttl(&format!("s{i}"), 1) } else { msg_ttl(&format!("l{i}"), 3600) })
        .collect();
    s.append(&["q"], msgs).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let left = bodies(&s, "q", 0);
    assert_eq!(left.len(), 30);
    assert!(left.iter().all(|(_, b)| b.starts_with('l')));
    eventually("short ones swept from the middle", || s.stats().unwrap().count == 30);
    let st = s.stats().unwrap();
    assert_eq!(st.expired, 10);
    // Bytes equal exactly what the 30 survivors occupy: key, header, property varint, body.
    let want: u64 = left.iter().map(|(_, b)| (12 + 26 + 1 + b.len()) as u64).sum();
    assert_eq!(st.bytes, want);
}

#[test]
fn past_the_run_cap_messages_still_never_read_after_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), Options::default());
    let msgs = (0..1100).flat_map(|i| [msg_ttl(&format!("L{i}"), 3600), msg_ttl(&format!("S{i}"), 1)]).collect();
    s.append(&["q"], msgs).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let left = bodies(&s, "q", 0);
    assert_eq!(left.len(), 1100);
    assert!(left.iter().all(|(_, b)| b.starts_with('L')));
    // 1023 short messages head their own run and are swept exactly; the rest joined the
    // last run (clamped) and stay counted until it expires.
    eventually("runs swept", || s.stats().unwrap().count == 1100 + (1100 - 1023));
}

#[test]
fn quota_reject_fails_whole_append_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), Options { max_size_bytes: 4000, ..Options::default() });
    let body = "x".repeat(200);
    let mut accepted = 0;
    let err = loop {
        match s.append(&["q"], vec![msg(&body), msg(&body)]) {
            Ok(_) => accepted += 2,
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), "STORE_FULL");
    assert!(err.to_string().contains("4000"), "{err}");
    let st = s.stats().unwrap();
    assert_eq!(st.count, accepted);
    assert!(st.bytes <= 4000);
    assert_eq!(st.queues[0].tail, accepted);
    assert_eq!(bodies(&s, "q", 0).len() as u64, accepted);
    // A multi-queue append that does not fit leaves every queue untouched.
    assert_eq!(s.append(&["q", "r"], vec![msg(&body)]).unwrap_err().code(), "STORE_FULL");
    assert!(s.read("r", 0, 10).unwrap().is_empty());
    s.ack("q", 3).unwrap();
    s.append(&["q"], vec![msg(&body)]).unwrap();
    // One message larger than the quota is refused under either policy.
    assert_eq!(s.append(&["q"], vec![msg(&"y".repeat(5000))]).unwrap_err().code(), "STORE_FULL");
}

#[test]
fn quota_drop_oldest_evicts_oldest_across_queues_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let max = 10_000;
    let s = open(dir.path(), Options { max_size_bytes: max, when_full: WhenFull::DropOldest, ..Options::default() });
    let body = "z".repeat(100);
    for i in 0..300u64 {
        let q = if i % 3 == 0 { "a" } else { "b" };
        s.append(&[q], vec![msg(&format!("{i:04}{body}"))]).unwrap();
        let st = s.stats().unwrap();
        assert!(st.bytes <= max, "live bytes {} over quota after append {i}", st.bytes);
        if i % 3 == 0 {
            // Appends within one millisecond share an enqueue time; give the next a newer one.
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    let st = s.stats().unwrap();
    assert!(st.dropped > 200, "dropped {}", st.dropped);
    assert_eq!(st.dropped + st.count, 300);
    // What is left is the newest of each queue, contiguous up to its tail.
    for q in ["a", "b"] {
        let left = bodies(&s, q, 0);
        let tail = st.queues.iter().find(|x| x.name == q).unwrap().tail;
        assert_eq!(left.last().unwrap().0, tail - 1);
        assert!(left.windows(2).all(|w| w[1].0 == w[0].0 + 1));
    }
    let newest_a: u32 = bodies(&s, "a", 0)[0].1[..4].parse().unwrap();
    let newest_b: u32 = bodies(&s, "b", 0)[0].1[..4].parse().unwrap();
    assert!(newest_a.abs_diff(newest_b) < 10, "evicted by age across queues: a from {newest_a}, b from {newest_b}");
    drop(s);
    let s = open(dir.path(), Options { max_size_bytes: max, when_full: WhenFull::DropOldest, ..Options::default() });
    assert_eq!(s.stats().unwrap().dropped, st.dropped);
}

#[test]
fn limits_change_while_open_for_what_is_appended_after() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), Options::default());
    let body = "x".repeat(200);
    s.append(&["q"], (0..10).map(|_| msg(&body)).collect()).unwrap();
    let used = s.stats().unwrap().bytes;
    // A quota below what is stored: appends are refused, nothing stored is lost.
    let tight = Limits { default_ttl_secs: 7200, max_size_bytes: used, when_full: WhenFull::Reject };
    s.configure(tight).unwrap();
    assert_eq!(s.stats().unwrap().max_size_bytes, used);
    assert_eq!(s.append(&["q"], vec![msg(&body)]).unwrap_err().code(), "STORE_FULL");
    assert_eq!(s.stats().unwrap().count, 10);
    // Under drop-oldest the same quota evicts instead.
    s.configure(Limits { when_full: WhenFull::DropOldest, ..tight }).unwrap();
    s.append(&["q"], vec![msg("newest")]).unwrap();
    let st = s.stats().unwrap();
    assert_eq!((st.count, st.dropped), (10, 1));
    // A new default TTL applies to later appends only.
    s.configure(Limits { default_ttl_secs: 1, max_size_bytes: 1 << 30, when_full: WhenFull::Reject }).unwrap();
    s.append(&["q"], vec![msg("short-lived")]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let left = bodies(&s, "q", 0);
    assert_eq!(left.len(), 10);
    assert!(left.iter().all(|(_, b)| b != "short-lived"));
    // Bad limits are refused and change nothing.
    let bad = Limits { default_ttl_secs: 0, max_size_bytes: 1, when_full: WhenFull::Reject };
    assert_eq!(s.configure(bad).unwrap_err().code(), "INVALID_ARGUMENT");
    assert_eq!(s.stats().unwrap().max_size_bytes, 1 << 30);
}
