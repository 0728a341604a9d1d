//! Chaos at every step of the write path, in the real runtime: the coordinator dies before
//! forwarding, after forwarding, after planning, or during the refill that follows; or the
//! origin applies a write and its answer is lost. After each, no read serves a copy older than
//! what the database holds once the staleness bound has passed (invariants 1, 4, 6), a read
//! with the token of any acknowledged write sees it (invariant 5), nothing acknowledged is
//! lost, and a write the client was not told succeeded is either absent from the database or
//! invalidated everywhere. The same faults also fire inside a concurrent workload whose every
//! read is checked by the history checker (`tests/common/history.rs`).

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{unique, Faulted, Worker};
use serde_json::{json, Value};

fn w() -> &'static Worker {
    Worker::shared()
}

/// Faults (and views) are isolate-wide: one test at a time, faults cleared however it ends.
fn serial() -> Faulted<'static> {
    static M: Mutex<()> = Mutex::new(());
    Faulted::on(w(), &M)
}

/// A read that waits out a coordinator restarting (an aborted instance answers nothing or a
/// 5xx for a moment).
fn read(path: &str, headers: &[(&str, &str)]) -> common::Answer {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match w().try_request("GET", path, headers, None) {
            Ok(a) if a.status == 200 => return a,
            other if Instant::now() > deadline => panic!("{path} never recovered: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Creates a user, retrying while an instance aborted by an earlier scenario restarts (a
/// retry of a create that did land is a 409 for the same id).
fn create_user(first_name: &str) -> String {
    let id = unique("chaos");
    let body = json!({"id": id, "firstName": first_name, "lastName": "Test",
        "email": format!("{id}@example.com")})
    .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = w().try_request(
            "POST",
            "/v1/users",
            &[("content-type", "application/json")],
            Some(body.as_bytes()),
        );
        match a {
            Ok(a) if a.status == 201 || a.status == 409 => return id,
            other if Instant::now() > deadline => panic!("creating {id}: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The row as the database holds it now.
fn truth(id: &str) -> Value {
    read(&format!("/v1/users/{id}"), &[("cache-control", "no-cache")]).json()["data"]["lastName"]
        .clone()
}

/// What each read path serves for the user once the staleness bound (1 s) has passed.
fn served(id: &str, first_name: &str) -> Vec<(String, Value)> {
    let point = format!("/v1/users/{id}");
    let list = format!("/v1/users?firstName={first_name}&limit=5");
    vec![
        (
            point.clone(),
            read(&point, &[]).json()["data"]["lastName"].clone(),
        ),
        (
            list.clone(),
            read(&list, &[]).json()["data"][0]["lastName"].clone(),
        ),
    ]
}

/// Runs one write with `fault` against a user whose point key and list key are cached;
/// answers whether the client was told the write succeeded (with its token).
fn scenario(fault: &str) -> (String, String, Option<String>) {
    let first_name = unique("Chaos").replace('-', "");
    let id = create_user(&first_name);
    let point = format!("/v1/users/{id}");
    let list = format!("/v1/users?firstName={first_name}&limit=5");
    for p in [&point, &list] {
        w().warm(p);
    }
    w().faults(json!({ "next_write_fault": fault }));
    // The client may get an error, or no answer at all if the coordinator died under it: send
    // it from a thread and wait a bounded time.
    let (tx, rx) = std::sync::mpsc::channel();
    let patch = point.clone();
    std::thread::spawn(move || {
        let a = w().try_request(
            "PATCH",
            &patch,
            &[("content-type", "application/json")],
            Some(br#"{"lastName":"After"}"#),
        );
        let _ = tx.send(a);
    });
    let acked = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(a)) if a.status == 200 => Some(Worker::token_of(&a)),
        _ => None,
    };
    std::thread::sleep(Duration::from_millis(1_200));
    (id, first_name, acked)
}

/// The checks every scenario ends with.
fn check(fault: &str, id: &str, first_name: &str, acked: &Option<String>) {
    let truth = truth(id);
    if acked.is_some() {
        assert_eq!(truth, "After", "{fault}: an acknowledged write was lost");
    }
    for (path, value) in served(id, first_name) {
        assert_eq!(
            value, truth,
            "{fault}: {path} served a copy older than the database"
        );
    }
    if let Some(token) = acked {
        let a = read(
            &format!("/v1/users/{id}"),
            &[("x-edgecache-min-seq", token)],
        );
        assert_eq!(
            a.json()["data"]["lastName"],
            "After",
            "{fault}: read your writes"
        );
    }
}

#[test]
fn a_coordinator_that_dies_before_forwarding_leaves_the_database_as_it_was() {
    let _s = serial();
    let (id, first_name, acked) = scenario("crash_before_forward");
    assert!(
        acked.is_none(),
        "a write that never reached the database was acknowledged"
    );
    assert_eq!(truth(&id), "Test", "the write never reached the database");
    check("crash_before_forward", &id, &first_name, &acked);
}

#[test]
fn a_coordinator_that_dies_after_forwarding_invalidates_when_it_wakes() {
    let _s = serial();
    let (id, first_name, acked) = scenario("crash_after_forward");
    assert!(acked.is_none(), "the crash happened before the answer");
    assert_eq!(truth(&id), "After", "the database applied the write");
    check("crash_after_forward", &id, &first_name, &acked);
}

#[test]
fn a_coordinator_that_dies_after_planning_invalidates_when_it_wakes() {
    let _s = serial();
    let (id, first_name, acked) = scenario("crash_after_plan");
    assert!(acked.is_none(), "the crash happened before the answer");
    assert_eq!(truth(&id), "After", "the database applied the write");
    check("crash_after_plan", &id, &first_name, &acked);
}

#[test]
fn a_coordinator_that_dies_during_a_refill_serves_nothing_stale() {
    let _s = serial();
    let (id, first_name, acked) = scenario("crash_during_rehydrate");
    assert!(
        acked.is_some(),
        "the write itself was recorded and acknowledged"
    );
    check("crash_during_rehydrate", &id, &first_name, &acked);
}

#[test]
fn a_write_whose_answer_is_lost_is_invalidated_everywhere() {
    let _s = serial();
    let (id, first_name, acked) = scenario("answer_lost");
    assert!(acked.is_none(), "the client was told it failed");
    assert_eq!(truth(&id), "After", "the database applied the write");
    check("answer_lost", &id, &first_name, &acked);
}

#[test]
fn a_write_the_origin_fails_is_refused_and_serves_nothing_stale() {
    let _s = serial();
    let (id, first_name, acked) = scenario("origin_fails");
    assert!(acked.is_none(), "the client was told it failed");
    assert_eq!(truth(&id), "Test", "the write never reached the database");
    check("origin_fails", &id, &first_name, &acked);
}

/// The origin applies a write and answers only after the client stopped waiting: the client is
/// told the outcome is unknown (504), and the coordinator still records the write when the
/// answer comes, so no read serves the old row once it has.
#[test]
fn a_write_that_stalls_past_the_timeout_is_unknown_to_the_client_and_still_recorded() {
    const TIMEOUT_MS: u64 = 1_000;
    let w = Worker::start_with(&[("EDGECACHE_ORIGIN_TIMEOUT_MS", &TIMEOUT_MS.to_string())]);
    let first_name = unique("Stall").replace('-', "");
    let id = unique("stall");
    let body = json!({"id": id, "firstName": first_name, "lastName": "Test", "email": "s@x"});
    assert_eq!(w.send_json("POST", "/v1/users", &body).status, 201);
    let point = format!("/v1/users/{id}");
    let list = format!("/v1/users?firstName={first_name}&limit=5");
    for p in [&point, &list] {
        w.warm(p);
    }
    w.faults(json!({"next_write_fault": "stall_after_forward"}));
    let a = w.send_json("PATCH", &point, &json!({"lastName": "After"}));
    assert_eq!(
        (a.status, a.error_code().as_str()),
        (504, "write_outcome_unknown"),
        "{}",
        a.text()
    );
    // The stall ends 2 × timeout + 1 s after the origin applied it; then it is recorded.
    std::thread::sleep(Duration::from_millis(2 * TIMEOUT_MS + 2_500));
    let truth =
        w.get_with(&point, &[("cache-control", "no-cache")]).json()["data"]["lastName"].clone();
    assert_eq!(truth, "After", "the database applied the write");
    for p in [&point, &list] {
        let a = w.get(p);
        let seen = &a.json()["data"];
        let seen = if seen.is_array() { &seen[0] } else { seen };
        assert_eq!(
            seen["lastName"],
            "After",
            "{p} served {} stale",
            a.outcome()
        );
    }
}

/// Faults the workload below injects, in turn, between plain writes.
const WORKLOAD_FAULTS: [&str; 6] = [
    "crash_before_forward",
    "crash_after_forward",
    "crash_after_plan",
    "crash_during_rehydrate",
    "answer_lost",
    "origin_fails",
];

/// Every step's fault inside a concurrent workload, checked by the history checker: readers
/// read records and a list of all of them (some with the newest token they hold) while one
/// writer injects each fault in turn and another writes plainly. No read that starts after a
/// write was acknowledged shows an older version, reads show only versions of writes that had
/// begun, and the database ends with no acknowledged write lost.
#[test]
fn a_workload_with_a_crash_at_every_write_step_never_reads_older_than_an_acknowledged_write() {
    use common::history::{check, check_final, seen_in, versioned_users, Read, Write};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    const ROUNDS: usize = 1;
    const READERS: usize = 3;
    let w = &Worker::start_with(&[(
        "EDGECACHE_RULES",
        r#"[{"pattern":"/v1/*","max_staleness_ms":0}]"#,
    )]);
    let (users, list) = versioned_users(w, 3, "chaoswl");
    let t0 = Instant::now();
    let us = move || t0.elapsed().as_micros() as u64;
    let next_version = AtomicU64::new(1);
    let latest_token: Mutex<Option<String>> = Mutex::new(None);
    let writes: Mutex<Vec<Write>> = Mutex::new(Vec::new());
    let reads: Mutex<Vec<Read>> = Mutex::new(Vec::new());
    let failed_reads = AtomicU64::new(0);
    let writing = AtomicBool::new(true);

    // One write, recorded when its answer (or its failure) comes back: a write whose client got
    // no 200 is unacknowledged, and may or may not have landed.
    let write = |thread: usize, record: &str| {
        let version = next_version.fetch_add(1, Ordering::SeqCst);
        let start_us = us();
        let a = w.try_request(
            "PATCH",
            &format!("/v1/users/{record}"),
            &[("content-type", "application/json")],
            Some(
                json!({"lastName": format!("v{version}")})
                    .to_string()
                    .as_bytes(),
            ),
        );
        let end_us = us();
        let seq = match a {
            Ok(a) if a.status == 200 => {
                let token = Worker::token_of(&a);
                *latest_token.lock().unwrap() = Some(token.clone());
                Some(common::seq_of(&token))
            }
            _ => None,
        };
        writes.lock().unwrap().push(Write {
            thread,
            record: record.to_string(),
            version,
            seq,
            start_us,
            end_us,
        });
    };

    std::thread::scope(|s| {
        let (users, list, write) = (&users, &list, &write);
        let (reads, failed_reads, writing, latest_token) =
            (&reads, &failed_reads, &writing, &latest_token);
        let faulty = s.spawn(move || {
            for round in 0..ROUNDS {
                for (i, fault) in WORKLOAD_FAULTS.iter().enumerate() {
                    w.faults(json!({ "next_write_fault": fault }));
                    write(0, &users[(round + i) % users.len()]);
                    write(0, &users[(round + i + 1) % users.len()]);
                }
            }
        });
        let plain = s.spawn(move || {
            for k in 0..20 {
                write(1, &users[k % users.len()]);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        for thread in 0..READERS {
            s.spawn(move || {
                let mut k = thread;
                while writing.load(Ordering::SeqCst) {
                    k += 1;
                    let path = if k % 3 == 0 {
                        list.clone()
                    } else {
                        format!("/v1/users/{}", users[k % users.len()])
                    };
                    let token = latest_token.lock().unwrap().clone().filter(|_| k % 2 == 0);
                    let mut headers = vec![];
                    if let Some(t) = &token {
                        headers.push(("x-edgecache-min-seq", t.as_str()));
                    }
                    let start_us = us();
                    let answer = w.try_request("GET", &path, &headers, None);
                    let end_us = us();
                    std::thread::sleep(Duration::from_millis(10));
                    match answer {
                        Ok(a) if a.status == 200 => reads.lock().unwrap().push(Read {
                            thread: 2 + thread,
                            path,
                            token,
                            outcome: a.outcome().to_string(),
                            start_us,
                            end_us,
                            seen: seen_in(&a.json()),
                        }),
                        // A coordinator restarting may refuse a read for a moment; refusing is
                        // allowed, serving stale is not.
                        _ => {
                            failed_reads.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
            });
        }
        faulty.join().unwrap();
        plain.join().unwrap();
        writing.store(false, Ordering::SeqCst);
    });
    w.faults(json!({}));

    let writes = writes.into_inner().unwrap();
    let reads = reads.into_inner().unwrap();
    let finals: Vec<(String, u64)> = users
        .iter()
        .map(|id| {
            let a = w.get_with(&format!("/v1/users/{id}"), &[("cache-control", "no-cache")]);
            (id.clone(), seen_in(&a.json())[0].1)
        })
        .collect();
    let acked = writes.iter().filter(|w| w.seq.is_some()).count();
    let hits = reads
        .iter()
        .filter(|r| r.outcome.starts_with("HIT"))
        .count();
    eprintln!(
        "chaos workload: {} writes ({acked} acknowledged), {} reads ({hits} hits, {} refused)",
        writes.len(),
        reads.len(),
        failed_reads.load(Ordering::SeqCst)
    );
    assert!(
        acked < writes.len(),
        "no write failed: the faults were not injected, so this tested nothing"
    );
    assert!(
        hits > 0,
        "no read hit the cache: this tested nothing about it"
    );
    let mut violations = check(&users, &writes, &reads);
    violations.extend(check_final(&writes, &finals));
    assert!(
        violations.is_empty(),
        "{} violations; first ones:\n{}",
        violations.len(),
        violations
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}
