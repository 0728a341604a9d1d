//! Group commit in the real runtime: writes that queue behind one in flight to D1 are committed
//! together as one batch, each answered with its own seq in order; a write the database refuses
//! fails alone while the rest of its group lands; a coordinator that dies in the middle of a
//! group invalidates what it did not record when it wakes (invariant 6 for the batch).
//!
//! The `slow_forward` fault makes the first write's origin answer 400 ms late, so the writes
//! sent meanwhile are queued behind it and form the next group, deterministically.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{num, seq_of, unique, Answer, Faulted, Worker};
use serde_json::{json, Value};

fn w() -> &'static Worker {
    Worker::shared()
}

/// Faults (and views) are isolate-wide: one test at a time, faults cleared however it ends.
fn serial() -> Faulted<'static> {
    static M: Mutex<()> = Mutex::new(());
    Faulted::on(w(), &M)
}

/// The users coordinator's (writes, commits) counters.
fn counters() -> (u64, u64) {
    let stats = w().stats();
    (
        num(&stats, "coordinators.users.writes"),
        num(&stats, "coordinators.users.commits"),
    )
}

fn send(method: &str, path: &str, body: Option<Value>) -> Result<Answer, String> {
    let body = body.map(|b| b.to_string());
    w().try_request(
        method,
        path,
        &[("content-type", "application/json")],
        body.as_deref().map(str::as_bytes),
    )
}

/// Runs `first` (whose write carries `slow_forward`), then, 100 ms later while it is in flight,
/// each of `rest` at once, the first of them to reach the isolate carrying `rest_fault` if one
/// is given; answers every outcome, `first`'s first.
fn behind_a_slow_write(
    first: (&str, String, Option<Value>),
    rest: Vec<(&'static str, String, Option<Value>)>,
    rest_fault: Option<&str>,
) -> Vec<Result<Answer, String>> {
    w().faults(json!({"next_write_fault": "slow_forward"}));
    std::thread::scope(|s| {
        let (m, p, b) = first;
        let head = s.spawn(move || send(m, &p, b));
        std::thread::sleep(Duration::from_millis(100));
        if let Some(fault) = rest_fault {
            w().faults(json!({ "next_write_fault": fault }));
        }
        let tail: Vec<_> = rest
            .into_iter()
            .map(|(m, p, b)| s.spawn(move || send(m, &p, b)))
            .collect();
        std::iter::once(head)
            .chain(tail)
            .map(|h| h.join().unwrap())
            .collect()
    })
}

fn last_name(id: &str) -> Value {
    let a = w().get_with(&format!("/v1/users/{id}"), &[("cache-control", "no-cache")]);
    assert_eq!(a.status, 200, "{}", a.text());
    a.json()["data"]["lastName"].clone()
}

fn patch(id: &str, last: &str) -> (&'static str, String, Option<Value>) {
    (
        "PATCH",
        format!("/v1/users/{id}"),
        Some(json!({"lastName": last})),
    )
}

/// A PUT with the user's every required column: 200 if the record was there, else 201 (the
/// status says which before image the write had).
fn put(id: &str, last: &str) -> (&'static str, String, Option<Value>) {
    let body = json!({"firstName": "Group", "lastName": last, "email": "g@x"});
    ("PUT", format!("/v1/users/{id}"), Some(body))
}

/// The group also reads its records' before images in one statement: a PUT of an existing user
/// finds it there (200); of two PUTs of a new record in one group (sent at once, so in either
/// order), the first creates it (201) and the second finds the record as the first left it
/// (200), not as the group found it.
#[test]
fn writes_queued_behind_one_in_flight_are_committed_as_one_group_in_order() {
    let _s = serial();
    let ids: Vec<String> = (0..6).map(|_| w().create_user("group", "Group")).collect();
    let new = unique("grouped");
    let (writes0, commits0) = counters();
    let mut rest: Vec<_> = ids[1..5].iter().map(|id| patch(id, "Grouped")).collect();
    rest.extend([
        put(&ids[5], "Grouped"),
        put(&new, "Grouped"),
        put(&new, "Grouped"),
    ]);
    let answers = behind_a_slow_write(patch(&ids[0], "Head"), rest, None);
    let statuses: Vec<u16> = answers
        .iter()
        .map(|a| a.as_ref().expect("answered").status)
        .collect();
    assert_eq!(statuses[..6], [200; 6]);
    let seqs: Vec<u64> = answers
        .iter()
        .map(|a| seq_of(&Worker::token_of(a.as_ref().expect("answered"))))
        .collect();
    let (writes1, commits1) = counters();
    assert_eq!(writes1 - writes0, 8, "every write recorded");
    assert_eq!(
        commits1 - commits0,
        2,
        "the head alone, then the seven behind it together"
    );
    let mut distinct = seqs.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 8, "each write its own seq: {seqs:?}");
    assert!(
        seqs[1..].iter().all(|s| *s > seqs[0]),
        "the head first: {seqs:?}"
    );
    let (created, replaced) = match statuses[6] {
        201 => (6, 7),
        _ => (7, 6),
    };
    assert_eq!((statuses[created], statuses[replaced]), (201, 200));
    assert!(seqs[created] < seqs[replaced], "created first: {seqs:?}");
    assert_eq!(last_name(&ids[0]), "Head");
    for id in ids[1..].iter().chain([&new]) {
        assert_eq!(last_name(id), "Grouped");
    }
}

#[test]
fn a_write_the_database_refuses_fails_alone_and_the_rest_of_its_group_lands() {
    let _s = serial();
    let ids: Vec<String> = (0..3)
        .map(|_| w().create_user("refuse", "Refuse"))
        .collect();
    let existing = json!({"id": ids[2], "firstName": "Dup", "lastName": "Dup", "email": "d@x"});
    let (_, commits0) = counters();
    let answers = behind_a_slow_write(
        patch(&ids[0], "Head"),
        vec![
            ("POST", "/v1/users".to_string(), Some(existing)),
            patch(&ids[1], "Landed"),
            ("DELETE", format!("/v1/users/{}", unique("missing")), None),
            patch(&ids[2], "Landed"),
        ],
        None,
    );
    let statuses: Vec<u16> = answers
        .iter()
        .map(|a| a.as_ref().expect("answered").status)
        .collect();
    assert_eq!(statuses, [200, 409, 200, 404, 200]);
    assert_eq!(
        counters().1 - commits0,
        2,
        "the four behind the head were one group"
    );
    assert_eq!(last_name(&ids[1]), "Landed");
    assert_eq!(
        last_name(&ids[2]),
        "Landed",
        "the refused create changed nothing"
    );
}

/// Chaos (e): the coordinator dies after recording the first write of a group. The batch was
/// applied; the writes it did not record are invalidated when it wakes, so no cached copy of
/// them is served, and the acknowledged head is not lost.
#[test]
fn a_coordinator_that_dies_mid_group_invalidates_the_rest_when_it_wakes() {
    let _s = serial();
    let ids: Vec<String> = (0..4).map(|_| w().create_user("midgroup", "Mid")).collect();
    for id in &ids {
        w().warm(&format!("/v1/users/{id}"));
    }
    // The three behind the head queue as one group; one of them carries the crash.
    let answers = behind_a_slow_write(
        patch(&ids[0], "After"),
        ids[1..].iter().map(|id| patch(id, "After")).collect(),
        Some("crash_mid_group"),
    );
    w().faults(json!({}));
    let acked: Vec<bool> = answers
        .iter()
        .map(|a| a.as_ref().is_ok_and(|a| a.status == 200))
        .collect();
    assert!(acked[0], "the head was committed alone and acknowledged");
    assert!(
        acked[1..].iter().any(|a| !a),
        "the crash left a write of the group unacknowledged: {acked:?}"
    );
    // Wait out the restart and the staleness bound, then every path shows the database.
    let deadline = Instant::now() + Duration::from_secs(30);
    while w()
        .try_request("GET", "/v1/users?limit=1", &[], None)
        .map(|a| a.status)
        != Ok(200)
    {
        assert!(Instant::now() < deadline, "the worker never came back");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(1_200));
    for (id, acked) in ids.iter().zip(acked) {
        let truth = last_name(id);
        if acked {
            assert_eq!(truth, "After", "{id}: an acknowledged write was lost");
        }
        let served = w().get(&format!("/v1/users/{id}"));
        assert_eq!(
            served.json()["data"]["lastName"],
            truth,
            "{id}: served {} older than the database",
            served.outcome()
        );
    }
}
