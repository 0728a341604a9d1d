//! How `learn status` names what a table is learning and `learn forget` finds it: a hypothesis
//! (a list parameter's meaning, a default order, a write route's write-through) is
//! `<table>:h<8 hex>`, a dependency candidate (a dependency with evidence that is not a rule
//! yet, `learned_rules`) `<table>:c<8 hex>`: the start of a digest of what it is. A digest
//! rather than a number: the name stays the same while others come and go (a position would
//! shift under the operator's feet), needs no storage, and is the same again if it is learned
//! again. (A learned rule has a stored number, `<table>:<n>`: it is kept until forgotten.)

use std::fmt;

use crate::learned_rules::Dependency;
use crate::semantics::{digest, HypothesisId};

/// Hex digits of a [`LearnedRef`]: two of one table and kind share a name with probability
/// about n²/2³³ (n of them); if they do, forgetting the name forgets both, which is safe
/// (forgetting only ever makes EdgeCache more conservative until it learns again).
pub const REF_DIGITS: usize = 8;

/// What a [`LearnedRef`] names, told by the letter before its digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LearnedKind {
    /// A hypothesis of a route (`semantics`, `answer_through`): `h`.
    Hypothesis,
    /// A dependency candidate (`learned_rules::Dependency` with evidence, not a rule): `c`.
    Candidate,
}

impl LearnedKind {
    /// The letter between the table and the digest.
    pub fn letter(self) -> char {
        match self {
            LearnedKind::Hypothesis => 'h',
            LearnedKind::Candidate => 'c',
        }
    }

    /// Its name in messages and error codes (`bad_candidate_id`).
    pub fn as_str(self) -> &'static str {
        match self {
            LearnedKind::Hypothesis => "hypothesis",
            LearnedKind::Candidate => "candidate",
        }
    }

    /// What the admin API and the CLI say of `id`, not a name of this kind.
    pub fn bad_id(self, id: &str) -> String {
        format!(
            "a {}'s id looks like `users:{}0c1d2e3f` (`learn status` shows them), not `{id}`",
            self.as_str(),
            self.letter()
        )
    }
}

/// The name of a hypothesis or a dependency candidate of one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LearnedRef {
    /// What it names.
    pub kind: LearnedKind,
    /// The table whose coordinator holds it.
    pub table: String,
    /// The digest's first [`REF_DIGITS`] hex digits.
    pub digest: String,
}

impl LearnedRef {
    /// The name of hypothesis `id` of `route` (a list route, or a write route's pattern) in
    /// `table`.
    pub fn hypothesis(table: &str, route: &str, id: &HypothesisId) -> LearnedRef {
        LearnedRef::named(LearnedKind::Hypothesis, table, &format!("{route}\n{id}"))
    }

    /// The name of the dependency candidate `dependency` in `table` (its target table).
    pub fn candidate(table: &str, dependency: &Dependency) -> LearnedRef {
        LearnedRef::named(
            LearnedKind::Candidate,
            table,
            &format!("{table}\n{dependency}"),
        )
    }

    fn named(kind: LearnedKind, table: &str, text: &str) -> LearnedRef {
        LearnedRef {
            kind,
            table: table.to_string(),
            digest: digest(text)[..REF_DIGITS].to_string(),
        }
    }

    /// Reads `<table>:<letter><8 hex>` of `kind`; `None` for anything else (a rule's id
    /// `users:3`, or a name of the other kind, included).
    pub fn parse(text: &str, kind: LearnedKind) -> Option<LearnedRef> {
        let (table, name) = text.rsplit_once(':')?;
        let digest = name.strip_prefix(kind.letter())?;
        let hex = digest.len() == REF_DIGITS
            && digest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        (!table.is_empty() && hex).then(|| LearnedRef {
            kind,
            table: table.to_string(),
            digest: digest.to_string(),
        })
    }
}

impl fmt::Display for LearnedRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}{}", self.table, self.kind.letter(), self.digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learned_rules::{ImageField, ImageSide, RuleTarget};
    use crate::semantics::HypothesisKind;

    const BAD: [&str; 8] = [
        "users:1",
        "users:{}",
        "users:{}0c1d2e3",
        "users:{}0c1d2e3f4",
        "users:{}0C1D2E3F",
        "users:{}xyz12345",
        ":{}0c1d2e3f",
        "{}0c1d2e3f",
    ];

    #[test]
    fn a_hypothesis_is_named_by_its_table_route_and_self_and_read_back() {
        let id = HypothesisId {
            param: Some("city".into()),
            kind: HypothesisKind::Equals,
            field: Some("city".into()),
            descending: false,
        };
        let name = LearnedRef::hypothesis("users", "/v1/users", &id);
        let text = name.to_string();
        assert!(text.starts_with("users:h") && text.len() == "users:h".len() + 8);
        let kind = LearnedKind::Hypothesis;
        assert_eq!(LearnedRef::parse(&text, kind), Some(name.clone()));
        assert_eq!(
            LearnedRef::hypothesis("users", "/v1/users", &id),
            name,
            "stable"
        );
        let other = HypothesisId {
            field: Some("town".into()),
            ..id.clone()
        };
        assert_ne!(LearnedRef::hypothesis("users", "/v1/users", &other), name);
        assert_ne!(LearnedRef::hypothesis("users", "/v1/people", &id), name);
        for bad in BAD.map(|b| b.replace("{}", "h")) {
            assert_eq!(LearnedRef::parse(&bad, kind), None, "{bad}");
        }
        assert_eq!(LearnedRef::parse(&text, LearnedKind::Candidate), None);
    }

    #[test]
    fn a_candidate_is_named_by_its_table_and_dependency_and_read_back() {
        let user_of = |column: &str| Dependency {
            write_table: "orders".into(),
            write_pattern: "POST /v1/orders".into(),
            target_table: "users".into(),
            target: RuleTarget::Record {
                field: ImageField {
                    side: ImageSide::After,
                    column: column.into(),
                },
            },
        };
        let name = LearnedRef::candidate("users", &user_of("userId"));
        let text = name.to_string();
        assert!(text.starts_with("users:c") && text.len() == "users:c".len() + 8);
        let kind = LearnedKind::Candidate;
        assert_eq!(LearnedRef::parse(&text, kind), Some(name.clone()));
        assert_eq!(
            LearnedRef::candidate("users", &user_of("userId")),
            name,
            "stable"
        );
        // Distinct for another binding, another target, another table.
        assert_ne!(LearnedRef::candidate("users", &user_of("buyerId")), name);
        let table_wide = Dependency {
            target: RuleTarget::Table,
            ..user_of("userId")
        };
        assert_ne!(LearnedRef::candidate("users", &table_wide), name);
        assert_ne!(
            LearnedRef::candidate("people", &user_of("userId")).digest,
            name.digest
        );
        for bad in BAD.map(|b| b.replace("{}", "c")) {
            assert_eq!(LearnedRef::parse(&bad, kind), None, "{bad}");
        }
        assert_eq!(LearnedRef::parse(&text, LearnedKind::Hypothesis), None);
    }
}
