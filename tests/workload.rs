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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{seq_of, unique, Worker};
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

#[derive(Debug, Clone)]
struct Write {
    #[allow(dead_code)] // shown in failure reports
    thread: usize,
    record: String,
    version: u64,
    seq: u64,
    start_us: u64,
    end_us: u64,
}

#[derive(Debug, Clone)]
struct Read {
    #[allow(dead_code)] // shown in failure reports
    thread: usize,
    path: String,
    #[allow(dead_code)] // shown in failure reports
    token: Option<String>,
    outcome: String,
    start_us: u64,
    end_us: u64,
    /// (record, version) pairs the response showed.
    seen: Vec<(String, u64)>,
}

fn version_of(last_name: &str) -> u64 {
    last_name
        .strip_prefix('v')
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("not a version: {last_name}"))
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
    let city = unique("wlcity");
    let users: Vec<String> = (0..USERS)
        .map(|_| {
            let id = unique("wl");
            let a = w.send_json(
                "POST",
                "/v1/users",
                &json!({"id": id, "firstName": "Load", "lastName": "v0", "email": "w@example.com", "city": city}),
            );
            assert_eq!(a.status, 201, "{}", a.text());
            id
        })
        .collect();
    let list = format!("/v1/users?city={city}&limit=100");

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
                            seq: seq_of(&t),
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
                        let body = a.json();
                        let rows = match body["data"].as_array() {
                            Some(rows) => rows.clone(),
                            None => vec![body["data"].clone()],
                        };
                        let seen = rows
                            .iter()
                            .map(|r| {
                                (
                                    r["id"].as_str().unwrap().to_string(),
                                    version_of(r["lastName"].as_str().unwrap()),
                                )
                            })
                            .collect();
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

/// Returns a description of every violation.
fn check(users: &[String], writes: &[Write], reads: &[Read]) -> Vec<String> {
    let by_version: HashMap<(&str, u64), &Write> = writes
        .iter()
        .map(|w| ((w.record.as_str(), w.version), w))
        .collect();
    let mut out = Vec::new();
    for r in reads {
        if r.path.contains('?') {
            let mut ids: Vec<&str> = r.seen.iter().map(|(id, _)| id.as_str()).collect();
            ids.sort_unstable();
            let mut expected: Vec<&str> = users.iter().map(String::as_str).collect();
            expected.sort_unstable();
            if ids != expected {
                out.push(format!("list read lost or duplicated rows: {r:?}"));
            }
        }
        for (record, version) in &r.seen {
            let seen_seq = if *version == 0 {
                0
            } else {
                match by_version.get(&(record.as_str(), *version)) {
                    Some(w) if w.start_us > r.end_us => {
                        out.push(format!(
                            "read a version written after it ended: {r:?}\n{w:?}"
                        ));
                        continue;
                    }
                    Some(w) => w.seq,
                    None => {
                        out.push(format!("read a version never written to {record}: {r:?}"));
                        continue;
                    }
                }
            };
            let acked_before: Vec<&Write> = writes
                .iter()
                .filter(|w| &w.record == record && w.end_us < r.start_us)
                .collect();
            if let Some(newest) = acked_before.iter().max_by_key(|w| w.seq) {
                if seen_seq < newest.seq {
                    let mut around: Vec<&Write> = writes
                        .iter()
                        .filter(|w| {
                            &w.record == record
                                && w.end_us + 2_000_000 > r.start_us
                                && w.start_us < r.end_us + 1_000_000
                        })
                        .collect();
                    around.sort_by_key(|w| w.seq);
                    out.push(format!(
                        "{record}: read saw v{version} (seq {seen_seq}) but v{} (seq {}) was acked \
                         at {} us, before the read started at {} us\n  read: {r:?}\n  writes of \
                         {record} around it (by seq):\n    {}",
                        newest.version,
                        newest.seq,
                        newest.end_us,
                        r.start_us,
                        around
                            .iter()
                            .map(|w| format!("{w:?}"))
                            .collect::<Vec<_>>()
                            .join("\n    ")
                    ));
                }
            }
        }
    }
    out
}

/// The checker itself: it must flag a read that started after an acked write yet shows an older
/// version, and must not flag reads concurrent with the write or showing a newer one.
#[test]
fn the_checker_flags_stale_reads_and_only_those() {
    let users = vec!["a".to_string()];
    let write = |version, seq, start_us, end_us| Write {
        thread: 0,
        record: "a".into(),
        version,
        seq,
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
}
