//! Shadow verification, the statistics: after a write, a coordinator refetches a sample of the
//! keys it invalidated and of those it kept, and compares each body's digest with the cached
//! copy's. This module chooses the sample (deterministic given a seed), names the patterns the
//! counts are kept under, and turns the counts into precision and recall estimates.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::protocol::{OriginConfig, WriteOp};

/// The digest of a response body as EdgeCache compares them: SHA-256 of the parsed JSON's
/// canonical text (keys in order), so whitespace or key order alone is not a change.
pub fn body_digest(json: &serde_json::Value) -> String {
    let hash = Sha256::digest(json.to_string().as_bytes());
    hash[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The digest a registration of `origin`'s answer carries for shadow checks: only an HTTP
/// origin's answers are shadow-checked (the D1 origin is planned exactly), and hashing a large
/// list page costs milliseconds of the isolate's thread on every fill and refill.
pub fn shadow_digest(origin: &OriginConfig, json: &serde_json::Value) -> Option<String> {
    matches!(origin, OriginConfig::Http { .. }).then(|| body_digest(json))
}

/// The route pattern of a write: `POST /v1/orders`, `PATCH /v1/orders/{id}`.
pub fn write_pattern(method: &str, path: &str) -> String {
    format!("{} {}", method.to_ascii_uppercase(), path_pattern(path))
}

/// The route pattern of a write operation on `table`.
pub fn op_pattern(op: &WriteOp, table: &str) -> String {
    match op {
        WriteOp::Create { .. } => write_pattern("POST", &format!("/v1/{table}")),
        WriteOp::Replace { .. } => write_pattern("PUT", &format!("/v1/{table}/{{id}}")),
        WriteOp::Patch { .. } => write_pattern("PATCH", &format!("/v1/{table}/{{id}}")),
        WriteOp::Delete { .. } => write_pattern("DELETE", &format!("/v1/{table}/{{id}}")),
        WriteOp::Forward { method, path, .. } => {
            write_pattern(method, path.split('?').next().unwrap_or(path))
        }
    }
}

/// The pattern of a cached key's path and query: `/v1/users/{id}`, `/v1/users` (a list without
/// a query) or `/v1/users?*` (a list with one).
pub fn key_pattern(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, !query.is_empty()),
        None => (path_and_query, false),
    };
    let pattern = path_pattern(path);
    match query {
        true => format!("{pattern}?*"),
        false => pattern,
    }
}

/// `/v1/<table>/<id>` → `/v1/<table>/{id}`; a list path stays as it is.
fn path_pattern(path: &str) -> String {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match segments.as_slice() {
        ["", "v1", table, _id] => format!("/v1/{table}/{{id}}"),
        _ => segments.join("/"),
    }
}

/// Whether a shadow-checked key was kept by the write's plan or invalidated by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Planned {
    /// The plan kept the key (it kept serving it).
    Kept,
    /// The plan invalidated the key.
    Invalidated,
}

/// What the refetch found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Found {
    /// The origin's body differs from the cached copy.
    Changed,
    /// The origin's body is the cached copy's.
    Same,
}

/// Shadow counts of one (write pattern, key pattern): each check lands in one cell, and the
/// populations the samples were drawn from are summed so estimates can weigh the cells.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowCounts {
    /// Kept keys found changed: recall misses (each was invalidated when found).
    pub kept_changed: u64,
    /// Kept keys found unchanged: rightly kept.
    pub kept_same: u64,
    /// Invalidated keys found changed: rightly invalidated.
    pub invalidated_changed: u64,
    /// Invalidated keys found unchanged: waste (precision).
    pub invalidated_same: u64,
    /// Keys the writes kept, summed over the writes sampled.
    pub kept_population: u64,
    /// Keys the writes invalidated, summed over the writes sampled.
    pub invalidated_population: u64,
}

impl ShadowCounts {
    /// Counts one check.
    pub fn record(&mut self, planned: Planned, found: Found) {
        let cell = match (planned, found) {
            (Planned::Kept, Found::Changed) => &mut self.kept_changed,
            (Planned::Kept, Found::Same) => &mut self.kept_same,
            (Planned::Invalidated, Found::Changed) => &mut self.invalidated_changed,
            (Planned::Invalidated, Found::Same) => &mut self.invalidated_same,
        };
        *cell += 1;
    }

    /// Adds another pattern's counts (a table's totals).
    pub fn add(&mut self, other: &ShadowCounts) {
        self.kept_changed += other.kept_changed;
        self.kept_same += other.kept_same;
        self.invalidated_changed += other.invalidated_changed;
        self.invalidated_same += other.invalidated_same;
        self.kept_population += other.kept_population;
        self.invalidated_population += other.invalidated_population;
    }

    /// Share of invalidated keys that had changed, from the invalidated keys checked; `None`
    /// before any was.
    pub fn precision(&self) -> Option<f64> {
        ratio(
            self.invalidated_changed,
            self.invalidated_changed + self.invalidated_same,
        )
    }

    /// Share of changed keys that were invalidated. The two samples come from populations of
    /// different sizes, so each sample's rate of change is scaled by its population:
    /// `inv_rate·inv_pop / (inv_rate·inv_pop + kept_rate·kept_pop)`. `None` before any key of
    /// either kind was checked or when no change was seen at all.
    pub fn recall(&self) -> Option<f64> {
        let rate = |changed: u64, same: u64| ratio(changed, changed + same);
        let caught = rate(self.invalidated_changed, self.invalidated_same)
            .map(|r| r * self.invalidated_population as f64);
        let missed =
            rate(self.kept_changed, self.kept_same).map(|r| r * self.kept_population as f64);
        match (caught, missed) {
            (None, None) => None,
            (c, m) => {
                let (c, m) = (c.unwrap_or(0.0), m.unwrap_or(0.0));
                (c + m > 0.0).then(|| c / (c + m))
            }
        }
    }
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// A small deterministic generator (SplitMix64): the same seed picks the same sample, so a
/// test can say which keys a write checks.
#[derive(Clone, Debug)]
pub struct SampleRng(u64);

impl SampleRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SampleRng(seed)
    }

    /// The next number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n.max(1)
    }
}

/// At most `n` keys to check: first those in `preferred` (keys a write's images point at, the
/// ones a learned dependency could explain), in order, then a uniform draw without replacement
/// from the rest of `candidates`. Deterministic given `seed`; no key twice.
pub fn choose_sample(
    candidates: &[String],
    preferred: &[String],
    n: usize,
    seed: u64,
) -> Vec<String> {
    let mut chosen: Vec<String> = Vec::with_capacity(n);
    for key in preferred {
        if chosen.len() >= n {
            return chosen;
        }
        if !chosen.contains(key) {
            chosen.push(key.clone());
        }
    }
    let mut rest: Vec<&String> = candidates.iter().filter(|k| !chosen.contains(k)).collect();
    rest.sort();
    rest.dedup();
    let mut rng = SampleRng::new(seed);
    while chosen.len() < n && !rest.is_empty() {
        let i = rng.below(rest.len() as u64) as usize;
        chosen.push(rest.swap_remove(i).clone());
    }
    chosen
}

/// Offsets into a table of `population` rows for a uniform draw of at most `n` distinct rows,
/// deterministic given `seed` (how a coordinator samples kept keys without loading them all).
pub fn sample_offsets(population: u64, n: usize, seed: u64) -> Vec<u64> {
    let mut rng = SampleRng::new(seed);
    let mut out: Vec<u64> = Vec::new();
    let n = (n as u64).min(population);
    // Floyd's algorithm: n draws, each distinct, uniform over all n-subsets.
    for j in (population - n)..population {
        let t = rng.below(j + 1);
        out.push(if out.contains(&t) { j } else { t });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn only_an_http_origins_answers_carry_a_digest() {
        let body = json!({"data": [{"id": "a"}]});
        let http = OriginConfig::Http {
            base_url: "http://127.0.0.1:1".into(),
            headers: Vec::new(),
        };
        assert_eq!(shadow_digest(&http, &body), Some(body_digest(&body)));
        assert_eq!(shadow_digest(&OriginConfig::D1, &body), None);
    }

    #[test]
    fn patterns_name_routes_not_records() {
        assert_eq!(write_pattern("post", "/v1/orders"), "POST /v1/orders");
        assert_eq!(
            write_pattern("PATCH", "/v1/orders/7"),
            "PATCH /v1/orders/{id}"
        );
        assert_eq!(key_pattern("/v1/users/7"), "/v1/users/{id}");
        assert_eq!(key_pattern("/v1/users?limit=5"), "/v1/users?*");
        assert_eq!(key_pattern("/v1/users"), "/v1/users");
    }

    #[test]
    fn digests_ignore_formatting_but_not_values() {
        let a: serde_json::Value = serde_json::from_str(r#"{"b":1, "a":2}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"a":2,"b":1}"#).unwrap();
        assert_eq!(body_digest(&a), body_digest(&b));
        assert_ne!(body_digest(&a), body_digest(&json!({"a": 2, "b": 2})));
    }

    #[test]
    fn estimates_weigh_each_sample_by_its_population() {
        let mut c = ShadowCounts::default();
        assert_eq!((c.precision(), c.recall()), (None, None));
        // 10 invalidated keys, 2 checked, 1 changed: precision 0.5, ~5 changed among them.
        c.invalidated_population = 10;
        c.record(Planned::Invalidated, Found::Changed);
        c.record(Planned::Invalidated, Found::Same);
        // 90 kept keys, 3 checked, 1 changed: ~30 changed were kept.
        c.kept_population = 90;
        c.record(Planned::Kept, Found::Changed);
        c.record(Planned::Kept, Found::Same);
        c.record(Planned::Kept, Found::Same);
        assert_eq!(c.precision(), Some(0.5));
        let recall = c.recall().unwrap();
        assert!((recall - 5.0 / 35.0).abs() < 1e-9, "{recall}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn samples_are_deterministic_distinct_bounded_and_preferred_first(
            keys in proptest::collection::vec("[a-e]{1,2}", 0..20),
            preferred in proptest::collection::vec("[a-e]{1,2}", 0..4),
            n in 0usize..8,
            seed in any::<u64>(),
        ) {
            let s = choose_sample(&keys, &preferred, n, seed);
            prop_assert_eq!(&s, &choose_sample(&keys, &preferred, n, seed));
            let mut unique = s.clone();
            unique.sort();
            unique.dedup();
            prop_assert_eq!(unique.len(), s.len());
            let mut pool: Vec<String> = keys.iter().chain(&preferred).cloned().collect();
            pool.sort();
            pool.dedup();
            prop_assert_eq!(s.len(), n.min(pool.len()));
            prop_assert!(s.iter().all(|k| pool.contains(k)));
            let mut want_first: Vec<String> = Vec::new();
            for p in &preferred {
                if !want_first.contains(p) { want_first.push(p.clone()); }
            }
            want_first.truncate(n);
            prop_assert_eq!(&s[..want_first.len()], &want_first[..]);
        }

        #[test]
        fn offsets_are_distinct_and_in_range(population in 0u64..50, n in 0usize..60, seed in any::<u64>()) {
            let o = sample_offsets(population, n, seed);
            prop_assert_eq!(o.len() as u64, (n as u64).min(population));
            let mut u = o.clone();
            u.sort();
            u.dedup();
            prop_assert_eq!(u.len(), o.len());
            prop_assert!(o.iter().all(|&x| x < population));
        }

        #[test]
        fn estimates_stay_between_zero_and_one(cells in proptest::array::uniform6(0u64..50)) {
            let c = ShadowCounts {
                kept_changed: cells[0], kept_same: cells[1], invalidated_changed: cells[2],
                invalidated_same: cells[3], kept_population: cells[4], invalidated_population: cells[5],
            };
            for v in [c.precision(), c.recall()].into_iter().flatten() {
                prop_assert!((0.0..=1.0).contains(&v));
            }
        }
    }
}
