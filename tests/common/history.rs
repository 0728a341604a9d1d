//! The history checker: every write and read of a concurrent run, with wall-clock start and
//! end, checked against the consistency model. Once a write is acknowledged, no read that
//! starts afterwards may show an older version of that record (invariants 1, 4 with
//! `max_staleness_ms: 0`, and 5); a read may show a version only of a write that had started
//! before the read ended; and the database ends with a version no acknowledged write
//! superseded (nothing acknowledged is lost).
//!
//! Records carry their version in `lastName` (`v<k>`, unique per write; `v0` at creation).
//! A write the client was not told succeeded (`seq: None`: an error, a crash, a lost answer)
//! may or may not have been applied: a read may show it, but it never makes older versions
//! stale, since nobody was promised it.

use std::collections::HashMap;

use serde_json::json;

use super::{unique, Worker};

/// One write as its client saw it.
#[derive(Debug, Clone)]
pub struct Write {
    /// Which client thread wrote it (shown in failure reports).
    pub thread: usize,
    pub record: String,
    pub version: u64,
    /// The acknowledged seq; `None` if the client was not told the write succeeded.
    pub seq: Option<u64>,
    pub start_us: u64,
    pub end_us: u64,
}

/// One read as its client saw it.
#[derive(Debug, Clone)]
pub struct Read {
    pub thread: usize,
    pub path: String,
    /// The token the read presented, if any (shown in failure reports).
    pub token: Option<String>,
    pub outcome: String,
    pub start_us: u64,
    pub end_us: u64,
    /// (record, version) pairs the response showed.
    pub seen: Vec<(String, u64)>,
}

/// Creates `n` users at `v0` in a city of their own and answers their ids and the list of all
/// of them (`/v1/users?city=…&limit=100`), for a workload to version.
pub fn versioned_users(w: &Worker, n: usize, prefix: &str) -> (Vec<String>, String) {
    let city = unique(&format!("{prefix}city"));
    let users = (0..n)
        .map(|_| {
            let id = unique(prefix);
            let a = w.send_json(
                "POST",
                "/v1/users",
                &json!({"id": id, "firstName": "Load", "lastName": "v0", "email": "w@example.com", "city": city}),
            );
            assert_eq!(a.status, 201, "{}", a.text());
            id
        })
        .collect();
    (users, format!("/v1/users?city={city}&limit=100"))
}

/// The version a `lastName` carries (`v<k>`).
pub fn version_of(last_name: &str) -> u64 {
    last_name
        .strip_prefix('v')
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("not a version: {last_name}"))
}

/// The (record, version) pairs of a `{"data": row}` or `{"data": [rows]}` body.
pub fn seen_in(body: &serde_json::Value) -> Vec<(String, u64)> {
    let rows = match body["data"].as_array() {
        Some(rows) => rows.clone(),
        None => vec![body["data"].clone()],
    };
    rows.iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_string(),
                version_of(r["lastName"].as_str().unwrap_or_default()),
            )
        })
        .collect()
}

/// The newest acknowledged write of `record` that ended before `t_us`.
fn newest_acked_before<'a>(writes: &'a [Write], record: &str, t_us: u64) -> Option<&'a Write> {
    writes
        .iter()
        .filter(|w| w.record == record && w.seq.is_some() && w.end_us < t_us)
        .max_by_key(|w| w.seq)
}

/// Describes every read that breaks the model; reads of a path with a query are lists that must
/// show every one of `users` exactly once.
pub fn check(users: &[String], writes: &[Write], reads: &[Read]) -> Vec<String> {
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
            let seen = if *version == 0 {
                None
            } else {
                match by_version.get(&(record.as_str(), *version)) {
                    Some(w) if w.start_us > r.end_us => {
                        out.push(format!(
                            "read a version written after it ended: {r:?}\n{w:?}"
                        ));
                        continue;
                    }
                    Some(w) => Some(*w),
                    None => {
                        out.push(format!("read a version never written to {record}: {r:?}"));
                        continue;
                    }
                }
            };
            let Some(newest) = newest_acked_before(writes, record, r.start_us) else {
                continue;
            };
            let fresh = match seen {
                // An acknowledged version is fresh if no acknowledged write came after it.
                Some(w) if w.seq.is_some() => w.seq >= newest.seq,
                // An unacknowledged one may have been applied after `newest` only if its
                // client had not given up before `newest` began.
                Some(w) => w.end_us >= newest.start_us,
                None => false,
            };
            if !fresh {
                out.push(stale_report(writes, r, record, *version, newest));
            }
        }
    }
    out
}

fn stale_report(writes: &[Write], r: &Read, record: &str, version: u64, newest: &Write) -> String {
    let mut around: Vec<&Write> = writes
        .iter()
        .filter(|w| {
            w.record == record
                && w.end_us + 2_000_000 > r.start_us
                && w.start_us < r.end_us + 1_000_000
        })
        .collect();
    around.sort_by_key(|w| w.start_us);
    format!(
        "{record}: read saw v{version} but v{} (seq {:?}) was acked at {} us, before the read \
         started at {} us\n  read: {r:?}\n  writes of {record} around it:\n    {}",
        newest.version,
        newest.seq,
        newest.end_us,
        r.start_us,
        around
            .iter()
            .map(|w| format!("{w:?}"))
            .collect::<Vec<_>>()
            .join("\n    ")
    )
}

/// Describes the records whose final version (as the database holds it after the run, by
/// record) shows an acknowledged write lost: superseded by an older acknowledged version, or by
/// an unacknowledged write whose client gave up before the newest acknowledged one began.
pub fn check_final(writes: &[Write], finals: &[(String, u64)]) -> Vec<String> {
    let mut out = Vec::new();
    for (record, version) in finals {
        let Some(newest) = newest_acked_before(writes, record, u64::MAX) else {
            continue;
        };
        let holds = writes
            .iter()
            .find(|w| &w.record == record && w.version == *version);
        let kept = match holds {
            Some(w) if w.seq.is_some() => w.seq >= newest.seq,
            Some(w) => w.end_us >= newest.start_us,
            None => false,
        };
        if !kept {
            out.push(format!(
                "{record}: the database holds v{version}, but v{} (seq {:?}) was acknowledged \
                 later",
                newest.version, newest.seq
            ));
        }
    }
    out
}
