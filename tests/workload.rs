//! A randomized concurrent workload checked against the consistency model: once a write is
//! acknowledged, no read that starts afterwards may show an older version of that record.
//!
//! Six threads, 100 operations each (bounded by a deadline too), against a private worker whose
//! routes check the coordinator on every hit (`max_staleness_ms: 0`). A handful of users created
//! for the run carry a version in `lastName` (`v<k>`, unique per write); threads PATCH new
//! versions, read records, and read a list of all of them (a unique city). Every write's acked
//! seq and every read's observations are recorded with wall-clock start and end; the checker
//! then looks for a read that started after a write W of X was acked yet shows a version of X
//! older (by coordinator seq) than W's. The RNG seed is printed; set EDGECACHE_WORKLOAD_SEED to
//! replay a run's choices.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::history::{check, check_final, seen_in, versioned_users, Read, Write};
use common::{seq_of, Worker};
use serde_json::json;

const THREADS: usize = 6;
const OPS_PER_THREAD: usize = 100;
const USERS: usize = 5;
const DEADLINE: Duration = Duration::from_secs(60);

/// splitmix64: small, seeded, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn acknowledged_writes_are_never_read_older() {
    let seed: u64 = std::env::var("EDGECACHE_WORKLOAD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("workload seed: {seed} (EDGECACHE_WORKLOAD_SEED={seed} replays it)");

    let w = Worker::start_with(&[(
        "EDGECACHE_RULES",
        r#"[{"pattern":"/v1/*","max_staleness_ms":0}]"#,
    )]);
    let (users, list) = versioned_users(&w, USERS, "wl");

    let t0 = Instant::now();
    let us = move || t0.elapsed().as_micros() as u64;
    let next_version = AtomicU64::new(1);
    let writes: Mutex<Vec<Write>> = Mutex::new(Vec::new());
    let reads: Mutex<Vec<Read>> = Mutex::new(Vec::new());

    std::thread::scope(|s| {
        for thread in 0..THREADS {
            let (w, users, list) = (&w, &users, &list);
            let (next_version, writes, reads) = (&next_version, &writes, &reads);
            s.spawn(move || {
                let mut rng = Rng(seed ^ (thread as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
                let mut token: Option<String> = None;
                for _ in 0..OPS_PER_THREAD {
                    if t0.elapsed() > DEADLINE {
                        break;
                    }
                    let roll = rng.below(100);
                    let record = users[rng.below(users.len())].clone();
                    if roll < 30 {
                        let version = next_version.fetch_add(1, Ordering::SeqCst);
                        let start_us = us();
                        let a = w.send_json(
                            "PATCH",
                            &format!("/v1/users/{record}"),
                            &json!({"lastName": format!("v{version}")}),
                        );
                        let end_us = us();
                        assert_eq!(a.status, 200, "PATCH {record}: {}", a.text());
                        let t = Worker::token_of(&a);
                        writes.lock().unwrap().push(Write {
                            thread,
                            record,
                            version,
                            seq: Some(seq_of(&t)),
                            start_us,
                            end_us,
                        });
                        token = Some(t);
                    } else {
                        let path = if roll < 65 {
                            format!("/v1/users/{record}")
                        } else {
                            list.clone()
                        };
                        let send_token = token.clone().filter(|_| rng.below(2) == 0);
                        let mut headers = vec![];
                        if let Some(t) = &send_token {
                            headers.push(("x-edgecache-min-seq", t.as_str()));
                        }
                        let start_us = us();
                        let a = w.get_with(&path, &headers);
                        let end_us = us();
                        assert_eq!(a.status, 200, "GET {path}: {}", a.text());
                        let seen = seen_in(&a.json());
                        reads.lock().unwrap().push(Read {
                            thread,
                            path,
                            token: send_token,
                            outcome: a.outcome().to_string(),
                            start_us,
                            end_us,
                            seen,
                        });
                    }
                }
            });
        }
    });

    let writes = writes.into_inner().unwrap();
    let reads = reads.into_inner().unwrap();
    let count = |o: &str| reads.iter().filter(|r| r.outcome == o).count();
    eprintln!(
        "workload: {} writes, {} reads ({} HIT-L1, {} HIT-L2, {} MISS, {} other) in {:.1} s",
        writes.len(),
        reads.len(),
        count("HIT-L1"),
        count("HIT-L2"),
        count("MISS"),
        reads.len() - count("HIT-L1") - count("HIT-L2") - count("MISS"),
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(
        writes.len() + reads.len(),
        THREADS * OPS_PER_THREAD,
        "the run hit its deadline (seed {seed})"
    );

    let violations = check(&users, &writes, &reads);
    if !violations.is_empty() {
        let mut report = format!(
            "{} reads showed a version older than a write acked before they started (seed {seed}, \
             {} writes, {} reads). First ones, with the record's writes around them:\n",
            violations.len(),
            writes.len(),
            reads.len()
        );
        for v in violations.iter().take(5) {
            report.push_str(&format!("\n{v}\n"));
        }
        panic!("{report}");
    }
    assert!(
        count("HIT-L1") + count("HIT-L2") > 0,
        "the workload never hit the cache: it tested nothing about it"
    );
}

/// The checker itself (`tests/common/history.rs`): it must flag a read that started after an
/// acked write yet shows an older version, and must not flag reads concurrent with the write or
/// showing a newer one.
#[test]
fn the_checker_flags_stale_reads_and_only_those() {
    let users = vec!["a".to_string()];
    let write = |version, seq: u64, start_us, end_us| Write {
        thread: 0,
        record: "a".into(),
        version,
        seq: Some(seq),
        start_us,
        end_us,
    };
    let read = |version, start_us, end_us| Read {
        thread: 1,
        path: "/v1/users/a".into(),
        token: None,
        outcome: "HIT-L1".into(),
        start_us,
        end_us,
        seen: vec![("a".into(), version)],
    };
    let writes = vec![write(1, 10, 100, 200), write(2, 11, 300, 400)];
    // After v2 was acked (400 us): v1 is stale, v0 too; v2 is fine.
    assert_eq!(check(&users, &writes, &[read(1, 500, 600)]).len(), 1);
    assert_eq!(check(&users, &writes, &[read(0, 500, 600)]).len(), 1);
    assert!(check(&users, &writes, &[read(2, 500, 600)]).is_empty());
    // Concurrent with v2's write: either version may show.
    assert!(check(&users, &writes, &[read(1, 350, 450)]).is_empty());
    assert!(check(&users, &writes, &[read(2, 350, 450)]).is_empty());
    // A version from a write that had not started yet, or never existed.
    assert_eq!(check(&users, &writes, &[read(2, 210, 250)]).len(), 1);
    assert_eq!(check(&users, &writes, &[read(7, 500, 600)]).len(), 1);

    // A write nobody was told succeeded (v3, given up at 450 us, after v2 began) may show, and
    // stales nothing; one given up before v2 began (v4) cannot be newer than v2.
    let unacked = |version, start_us, end_us| Write {
        seq: None,
        ..write(version, 0, start_us, end_us)
    };
    let writes = [writes, vec![unacked(3, 250, 450), unacked(4, 50, 250)]].concat();
    assert!(check(&users, &writes, &[read(3, 500, 600)]).is_empty());
    assert!(check(&users, &writes, &[read(2, 500, 600)]).is_empty());
    assert_eq!(check(&users, &writes, &[read(4, 500, 600)]).len(), 1);
    // The database's final version: the newest acknowledged or a later unacknowledged one.
    let finals = |v| check_final(&writes, &[("a".to_string(), v)]);
    assert!(finals(2).is_empty() && finals(3).is_empty());
    for lost in [0, 1, 4, 9] {
        assert_eq!(finals(lost).len(), 1, "v{lost} means v2 was lost");
    }
}
