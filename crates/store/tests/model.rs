//! Random operation sequences against an in-memory model (a BTreeMap per queue),
//! with reopens in between: reads, counters and offsets must always agree.
mod common;
use edgehub_store::{Durability, Options, Store};
use std::collections::BTreeMap;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default)]
struct ModelQueue {
    live: BTreeMap<u64, Vec<u8>>,
    tail: u64,
    acked_next: u64,
}

/// Bytes a record occupies: key, fixed header, property-length varint, body.
fn stored_size(body: &[u8]) -> u64 {
    (12 + 26 + 1 + body.len()) as u64
}

#[test]
fn random_operations_match_the_model() {
    for seed in [7u64, 1234, 99991] {
        run(seed, Durability::Fsync);
    }
}

/// Under `wal` the operations run inline on the caller's thread (writer.rs): same model.
#[test]
fn random_operations_match_the_model_under_wal() {
    for seed in [7u64, 1234, 99991] {
        run(seed, Durability::Wal);
    }
}

fn run(seed: u64, durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { default_ttl_secs: -1, durability, ..Options::default() };
    let mut s = Store::open(dir.path(), opts.clone()).unwrap();
    let mut rng = Rng(seed);
    let names = ["a", "b", "c", "d"];
    let mut model: BTreeMap<&str, ModelQueue> = BTreeMap::new();
    for step in 0..600 {
        match rng.below(10) {
            0..=4 => {
                let k = 1 + rng.below(3) as usize;
                let mut qs: Vec<&str> = names.iter().copied().filter(|_| rng.below(2) == 0).collect();
                if qs.is_empty() {
                    qs.push(names[rng.below(4) as usize]);
                }
                qs.truncate(k);
                let n = rng.below(20) as usize;
                let bodies: Vec<Vec<u8>> = (0..n)
                    .map(|i| format!("{seed}-{step}-{i}-{}", "p".repeat(rng.below(300) as usize)).into_bytes())
                    .collect();
                let msgs = bodies
                    .iter()
                    .map(|b| edgehub_store::NewMessage { body: b.clone(), ..Default::default() })
                    .collect();
                let got = s.append(&qs, msgs).unwrap();
                for (q, offs) in qs.iter().zip(got) {
                    let m = model.entry(q).or_default();
                    assert_eq!(offs, m.tail..m.tail + n as u64, "offsets of {q} at step {step}");
                    for (o, b) in offs.zip(&bodies) {
                        m.live.insert(o, b.clone());
                    }
                    m.tail += n as u64;
                }
            }
            5 | 6 => {
                let q = names[rng.below(4) as usize];
                let Some(m) = model.get_mut(q) else { continue };
                if m.tail == 0 {
                    continue;
                }
                let off = rng.below(m.tail);
                s.ack(q, off).unwrap();
                m.live.retain(|&o, _| o > off);
                m.acked_next = m.acked_next.max(off + 1);
            }
            7 => {
                s.close().unwrap();
                s = Store::open(dir.path(), opts.clone()).unwrap();
            }
            _ => {}
        }
        // Check one queue fully every step, all queues' counters.
        let q = names[rng.below(4) as usize];
        let from = rng.below(model.get(q).map_or(1, |m| m.tail + 1));
        let got: Vec<(u64, Vec<u8>)> =
            s.read(q, from, usize::MAX).unwrap().into_iter().map(|m| (m.offset, m.body)).collect();
        let want: Vec<(u64, Vec<u8>)> =
            model.get(q).map_or_else(Vec::new, |m| m.live.range(from..).map(|(o, b)| (*o, b.clone())).collect());
        assert_eq!(got, want, "read {q} from {from} at step {step} (seed {seed})");
        let st = s.stats().unwrap();
        for qs in &st.queues {
            let m = &model[qs.name.as_str()];
            assert_eq!(qs.count, m.live.len() as u64, "count of {} at step {step}", qs.name);
            assert_eq!(
                qs.bytes,
                m.live.values().map(|b| stored_size(b)).sum::<u64>(),
                "bytes of {} at step {step}",
                qs.name
            );
            assert_eq!(qs.tail, m.tail);
            assert_eq!(qs.acked_up_to, m.acked_next.checked_sub(1));
            assert_eq!(qs.head, m.live.keys().next().copied().unwrap_or(m.tail));
        }
        assert_eq!(st.bytes, st.queues.iter().map(|q| q.bytes).sum::<u64>());
    }
}
