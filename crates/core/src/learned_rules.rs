//! Learned dependencies: rules nobody declared, inferred from shadow checks, of the form
//! "a write of table A (route pattern) changes these responses of table B". A rule only ever
//! adds invalidations, so it is applied as soon as it is learned, whatever the tenant's
//! learning mode.
//!
//! Evidence comes from shadow checks of B's keys that a write of A kept (B's plan never sees
//! A's writes). A key found changed supports every binding `{side.column}` of the write's
//! images whose value is the key's record id; a key found unchanged although a binding points
//! at it contradicts that binding. A change no binding explains supports the route-wide rule
//! (every key of B). A hypothesis becomes a rule at [`MIN_SUPPORT`] supporting checks with no
//! counter-example.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::shadow::Found;
use crate::{id_text, Row};

/// Supporting checks, with no counter-example, before a hypothesis becomes a rule. A binding
/// field whose value is unrelated to the changed record agrees by coincidence with probability
/// about 1/(ids in play) per check, so three agreeing checks and no disagreeing one rule out
/// coincidence in practice; a wrong rule costs only extra invalidations.
pub const MIN_SUPPORT: u64 = 3;

/// Which image of the write a binding reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSide {
    /// The row before the write.
    Before,
    /// The row after the write.
    After,
}

/// A column of one image of the write: `after.userId`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ImageField {
    /// The image.
    pub side: ImageSide,
    /// The column.
    pub column: String,
}

impl fmt::Display for ImageField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = match self.side {
            ImageSide::Before => "before",
            ImageSide::After => "after",
        };
        write!(f, "{side}.{}", self.column)
    }
}

/// What of the target table a rule invalidates.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleTarget {
    /// The responses containing the record whose id is the field's value.
    Record {
        /// The binding.
        field: ImageField,
    },
    /// Every response of the table.
    Table,
}

/// A hypothesis, and once learned a rule: writes matching `write_pattern` of `write_table`
/// change `target` of `target_table`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dependency {
    /// The written table.
    pub write_table: String,
    /// The write's route pattern (`POST /v1/orders`).
    pub write_pattern: String,
    /// The table whose responses change.
    pub target_table: String,
    /// Which of them.
    pub target: RuleTarget,
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            RuleTarget::Record { field } => write!(
                f,
                "{} -> /v1/{}/{{{field}}}",
                self.write_pattern, self.target_table
            ),
            RuleTarget::Table => write!(f, "{} -> /v1/{}?*", self.write_pattern, self.target_table),
        }
    }
}

/// What the checks said of one hypothesis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Checks it explains.
    pub support: u64,
    /// Checks that contradict it.
    pub counter: u64,
    /// When it was first seen (ms).
    pub first_seen_ms: u64,
    /// When it was last seen (ms).
    pub last_seen_ms: u64,
}

impl Evidence {
    /// Counts one verdict seen at `at_ms`.
    pub fn count(&mut self, verdict: Verdict, at_ms: u64) {
        match verdict {
            Verdict::Supports => self.support += 1,
            Verdict::Contradicts => self.counter += 1,
        }
        if self.first_seen_ms == 0 {
            self.first_seen_ms = at_ms;
        }
        self.last_seen_ms = self.last_seen_ms.max(at_ms);
    }

    /// Whether the hypothesis is a rule now.
    pub fn is_ripe(&self) -> bool {
        self.support >= MIN_SUPPORT && self.counter == 0
    }
}

/// A check's bearing on a hypothesis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The check is explained by it.
    Supports,
    /// It predicted a change the check did not find.
    Contradicts,
}

/// A learned rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LearnedRule {
    /// Its id, unique in its target table's coordinator (the admin API names it
    /// `<table>:<id>`).
    pub id: u64,
    /// What it says.
    pub dependency: Dependency,
    /// The evidence, still counted after it was learned.
    pub evidence: Evidence,
    /// When it was learned (ms).
    pub learned_at_ms: u64,
    /// Shadow checks it took, from its first evidence, until it was learned.
    pub checks_to_learn: u64,
}

/// One shadow check of a key of `target_table` kept by a write of `write_table`.
#[derive(Clone, Debug)]
pub struct Observation<'a> {
    /// The written table.
    pub write_table: &'a str,
    /// The write's route pattern.
    pub write_pattern: &'a str,
    /// The checked key's table.
    pub target_table: &'a str,
    /// The write's before image.
    pub before: Option<&'a Row>,
    /// The write's after image.
    pub after: Option<&'a Row>,
    /// Ids of the target table's records the checked response contains.
    pub key_records: &'a [String],
    /// Whether the key is a single record's (`/v1/users/7`).
    pub is_record_key: bool,
    /// What the check found.
    pub found: Found,
}

/// The id-like values of the write's images, each with its field: the bindings a check can
/// test.
pub fn bindings(before: Option<&Row>, after: Option<&Row>) -> Vec<(ImageField, String)> {
    let mut out = Vec::new();
    for (side, image) in [(ImageSide::Before, before), (ImageSide::After, after)] {
        for (column, value) in image.into_iter().flatten() {
            if let Some(v) = id_text(value).filter(|v| !v.is_empty()) {
                out.push((
                    ImageField {
                        side,
                        column: column.clone(),
                    },
                    v,
                ));
            }
        }
    }
    out
}

/// The hypotheses a check bears on, and how. A record key found changed supports each binding
/// whose value is its id; a record key found unchanged contradicts each binding whose value is
/// its id. A change that no binding explains (record or list) supports the route-wide rule.
pub fn evidence(obs: &Observation<'_>) -> Vec<(Dependency, Verdict)> {
    let dependency = |target| Dependency {
        write_table: obs.write_table.to_string(),
        write_pattern: obs.write_pattern.to_string(),
        target_table: obs.target_table.to_string(),
        target,
    };
    let pointing: Vec<ImageField> = bindings(obs.before, obs.after)
        .into_iter()
        .filter(|(_, v)| obs.key_records.contains(v))
        .map(|(field, _)| field)
        .collect();
    let mut out = Vec::new();
    if obs.is_record_key {
        let verdict = match obs.found {
            Found::Changed => Verdict::Supports,
            Found::Same => Verdict::Contradicts,
        };
        for field in &pointing {
            out.push((
                dependency(RuleTarget::Record {
                    field: field.clone(),
                }),
                verdict,
            ));
        }
    }
    if obs.found == Found::Changed && pointing.is_empty() {
        out.push((dependency(RuleTarget::Table), Verdict::Supports));
    }
    out
}

/// What a rule invalidates for one write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleAction {
    /// The keys containing this record of the target table.
    Record(String),
    /// Every key of the target table.
    Table,
}

/// What `dependency` invalidates for a write with these images; `None` where its binding has no
/// value in them.
pub fn action(
    dependency: &Dependency,
    before: Option<&Row>,
    after: Option<&Row>,
) -> Option<RuleAction> {
    match &dependency.target {
        RuleTarget::Table => Some(RuleAction::Table),
        RuleTarget::Record { field } => {
            let image = match field.side {
                ImageSide::Before => before,
                ImageSide::After => after,
            };
            image?
                .get(&field.column)
                .and_then(id_text)
                .filter(|v| !v.is_empty())
                .map(RuleAction::Record)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn row(v: serde_json::Value) -> Row {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_changed_record_supports_the_bindings_that_name_it() {
        let after = row(json!({"id": 9, "userId": 7, "qty": 7, "note": "x"}));
        let obs = Observation {
            write_table: "orders",
            write_pattern: "POST /v1/orders",
            target_table: "users",
            before: None,
            after: Some(&after),
            key_records: &["7".to_string()],
            is_record_key: true,
            found: Found::Changed,
        };
        let ev = evidence(&obs);
        let names: Vec<String> = ev.iter().map(|(d, _)| d.to_string()).collect();
        assert_eq!(
            names,
            [
                "POST /v1/orders -> /v1/users/{after.qty}",
                "POST /v1/orders -> /v1/users/{after.userId}"
            ]
        );
        assert!(ev.iter().all(|(_, v)| *v == Verdict::Supports));
        let same = Observation {
            found: Found::Same,
            ..obs.clone()
        };
        assert!(evidence(&same)
            .iter()
            .all(|(_, v)| *v == Verdict::Contradicts));
        let unexplained = Observation {
            key_records: &["3".to_string()],
            ..obs
        };
        let ev = evidence(&unexplained);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].0.to_string(), "POST /v1/orders -> /v1/users?*");
    }

    #[test]
    fn actions_read_the_binding_from_its_image() {
        let d = Dependency {
            write_table: "orders".into(),
            write_pattern: "POST /v1/orders".into(),
            target_table: "users".into(),
            target: RuleTarget::Record {
                field: ImageField {
                    side: ImageSide::After,
                    column: "userId".into(),
                },
            },
        };
        let after = row(json!({"userId": "u7"}));
        assert_eq!(
            action(&d, None, Some(&after)),
            Some(RuleAction::Record("u7".into()))
        );
        assert_eq!(action(&d, Some(&after), None), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]
        /// A hidden dependency `after.userId` with noise columns: checking the keys the
        /// images point at (as the coordinator's informed sample does) learns the true rule
        /// within a few dozen writes, and never a rule any check contradicted or a column
        /// whose values never named a changed record.
        #[test]
        fn the_planted_binding_is_learned_and_nothing_contradicted(
            writes in proptest::collection::vec((0u64..30, 0u64..30, 1u64..5), 40),
        ) {
            let mut book: BTreeMap<Dependency, Evidence> = BTreeMap::new();
            let mut ever_matched: BTreeMap<String, bool> = BTreeMap::new();
            for (at, (id, user, qty)) in writes.iter().enumerate() {
                let after = row(json!({"id": id + 100, "userId": user, "qty": qty}));
                for (field, value) in bindings(None, Some(&after)) {
                    let changed = value == user.to_string();
                    if changed {
                        ever_matched.insert(field.column.clone(), true);
                    }
                    let records = [value];
                    let obs = Observation {
                        write_table: "orders",
                        write_pattern: "POST /v1/orders",
                        target_table: "users",
                        before: None,
                        after: Some(&after),
                        key_records: &records,
                        is_record_key: true,
                        found: if changed { Found::Changed } else { Found::Same },
                    };
                    for (dep, verdict) in evidence(&obs) {
                        book.entry(dep).or_default().count(verdict, at as u64 + 1);
                    }
                }
            }
            let ripe: Vec<String> = book.iter().filter(|(_, e)| e.is_ripe()).map(|(d, _)| d.to_string()).collect();
            let truth = "POST /v1/orders -> /v1/users/{after.userId}".to_string();
            prop_assert!(ripe.contains(&truth), "{:?}", ripe);
            for (dep, e) in &book {
                if e.is_ripe() {
                    prop_assert_eq!(e.counter, 0);
                    if let RuleTarget::Record { field } = &dep.target {
                        prop_assert!(ever_matched.get(&field.column).copied().unwrap_or(false));
                    }
                }
            }
            // `id` (100..130) never names a user (0..30): never learned.
            let by_id = ripe.iter().any(|r| r.ends_with("{after.id}"));
            prop_assert!(!by_id, "{:?}", ripe);
        }
    }
}
