//! `edgecache learn …`: what EdgeCache learned about the tenant's origin (shadow counts,
//! learned rules, dependency candidates, hypotheses), forgetting a rule, a candidate, a
//! hypothesis or a table's learning, and freezing learning.

use std::fmt::Write as _;

use serde_json::Value;

use crate::api::AdminClient;
use crate::cli::LearnCommand;
use crate::error::CliError;
use crate::model::{
    ForgottenCandidates, ForgottenHypotheses, ForgottenLearning, ForgottenRule, LearnStatus,
    PatternCounts, TableLearning, TenantSettings,
};
use crate::table::Table;
use edgecache_core::learned_ref::{LearnedKind, LearnedRef};
use edgecache_core::semantics::{HypothesisKind, HypothesisStatus};

/// A command's answer: the server's JSON and its rendering.
pub struct Output {
    /// For `--json`.
    pub raw: Value,
    /// For people.
    pub human: String,
}

/// Runs a `learn` command on `tenant`.
pub fn run(client: &AdminClient, tenant: &str, command: LearnCommand) -> Result<Output, CliError> {
    match command {
        LearnCommand::Status { table } => {
            let raw = client.learn_status(tenant, table.as_deref())?;
            let status: LearnStatus = client.decode(raw.clone())?;
            let human = status_text(&status);
            Ok(Output { raw, human })
        }
        LearnCommand::Forget { target, all } => match ForgetTarget::of(&target, all)? {
            ForgetTarget::Rule(rule) => {
                let raw = client.forget_rule(tenant, rule)?;
                let gone: ForgottenRule = client.decode(raw.clone())?;
                let human = format!("forgot rule {}: {}\n", gone.id, gone.rule);
                Ok(Output { raw, human })
            }
            ForgetTarget::Hypothesis(id) => {
                let raw = client.forget_hypothesis(tenant, id)?;
                let gone: ForgottenHypotheses = client.decode(raw.clone())?;
                Ok(Output {
                    raw,
                    human: forgotten_text(&gone),
                })
            }
            ForgetTarget::Candidate(id) => {
                let raw = client.forget_candidate(tenant, id)?;
                let gone: ForgottenCandidates = client.decode(raw.clone())?;
                Ok(Output {
                    raw,
                    human: forgotten_candidates_text(&gone),
                })
            }
            ForgetTarget::Table(table) => {
                let raw = client.forget_table(tenant, table)?;
                let gone: ForgottenLearning = client.decode(raw.clone())?;
                let human = format!(
                    "forgot everything table {} learned: {} rule{}, {} hypothes{}; invalidated \
                     {} key{} kept under them\n",
                    gone.table,
                    gone.rules,
                    plural(gone.rules, "", "s"),
                    gone.hypotheses,
                    plural(gone.hypotheses, "is", "es"),
                    gone.invalidated,
                    plural(gone.invalidated, "", "s"),
                );
                Ok(Output { raw, human })
            }
        },
        LearnCommand::Freeze | LearnCommand::Unfreeze => {
            let frozen = matches!(command, LearnCommand::Freeze);
            let body = TenantSettings {
                learning_frozen: Some(frozen),
                ..TenantSettings::default()
            };
            let raw = client.update_tenant(tenant, &body)?;
            let human = match frozen {
                true => format!(
                    "learning frozen for {tenant}: no shadow checks, evidence or new rules; \
                     learned rules still apply\n"
                ),
                false => format!("learning resumed for {tenant}\n"),
            };
            Ok(Output { raw, human })
        }
    }
}

/// What `learn forget` names: the ids `learn status` shows tell a rule (`users:1`) from a
/// hypothesis (`users:h0c1d2e3f`) and a dependency candidate (`users:c1a2b3c4d`) by the letter
/// after the colon; `--all` names a table. A candidate's id of another shape is a usage error
/// here; the server checks the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForgetTarget<'a> {
    /// A learned rule's id.
    Rule(&'a str),
    /// A hypothesis's id.
    Hypothesis(&'a str),
    /// A dependency candidate's id.
    Candidate(&'a str),
    /// Everything the table learned.
    Table(&'a str),
}

impl<'a> ForgetTarget<'a> {
    /// Reads `learn forget TARGET [--all]`.
    pub fn of(target: &'a str, all: bool) -> Result<ForgetTarget<'a>, CliError> {
        if all {
            return Ok(ForgetTarget::Table(target));
        }
        let letter = target
            .rsplit_once(':')
            .and_then(|(_, name)| name.chars().next());
        Ok(match letter {
            Some(l) if l == LearnedKind::Hypothesis.letter() => ForgetTarget::Hypothesis(target),
            Some(l) if l == LearnedKind::Candidate.letter() => {
                let kind = LearnedKind::Candidate;
                LearnedRef::parse(target, kind)
                    .ok_or_else(|| CliError::Usage(kind.bad_id(target)))?;
                ForgetTarget::Candidate(target)
            }
            _ => ForgetTarget::Rule(target),
        })
    }
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// `learn forget <hypothesis>` for people: each hypothesis forgotten, as `learn status` showed it.
fn forgotten_text(gone: &ForgottenHypotheses) -> String {
    let mut out = String::new();
    for route in &gone.forgotten {
        for h in &route.hypotheses {
            let _ = writeln!(
                out,
                "forgot hypothesis {}: {} {} {} {}",
                h.id,
                route.route,
                param_label(h),
                h.kind.as_str(),
                field_label(h)
            );
        }
    }
    let _ = writeln!(
        out,
        "invalidated {} key{} kept under {}",
        gone.invalidated,
        plural(gone.invalidated, "", "s"),
        if gone.forgotten.len() == 1 {
            "its route"
        } else {
            "their routes"
        }
    );
    out
}

/// `learn forget <candidate>` for people: each candidate forgotten, as `learn status` showed
/// it, and that nothing was invalidated (no plan used it).
fn forgotten_candidates_text(gone: &ForgottenCandidates) -> String {
    let mut out = String::new();
    for c in &gone.forgotten {
        let _ = writeln!(
            out,
            "forgot candidate {}: {} (support {}, against {})",
            c.id, c.rule, c.evidence.support, c.evidence.counter
        );
    }
    out.push_str("invalidated nothing: a candidate is not a rule, no plan used it\n");
    out
}

/// A hypothesis's PARAM column: its parameter, or what it is about without one.
fn param_label(h: &HypothesisStatus) -> String {
    match (&h.param, h.kind) {
        (Some(param), _) => param.clone(),
        (None, HypothesisKind::WriteAnswer) => "(write answer)".to_string(),
        (None, _) => "(default order)".to_string(),
    }
}

/// A hypothesis's FIELD column (`-f` for descending).
fn field_label(h: &HypothesisStatus) -> String {
    match (&h.field, h.descending) {
        (Some(f), true) => format!("-{f}"),
        (Some(f), false) => f.clone(),
        (None, _) => "-".to_string(),
    }
}

/// `learn status` for people: the setting, then per table its shadow counts, rules,
/// dependency candidates and hypotheses.
pub fn status_text(status: &LearnStatus) -> String {
    let mut out = String::new();
    let frozen = if status.learning.frozen {
        ", frozen"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "tenant {}: learning {}{frozen}",
        status.tenant,
        status.learning.mode.as_str()
    );
    for table in &status.tables {
        out.push('\n');
        out.push_str(&table_text(table));
    }
    out
}

fn table_text(t: &TableLearning) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "table {} ({} shadow check{} queued)",
        t.table,
        t.pending_checks,
        if t.pending_checks == 1 { "" } else { "s" }
    );
    let checked: Vec<&PatternCounts> = t
        .shadow
        .iter()
        .filter(|p| {
            let c = &p.counts;
            c.kept_changed + c.kept_same + c.invalidated_changed + c.invalidated_same > 0
        })
        .collect();
    if checked.is_empty() {
        out.push_str("  no shadow checks yet\n");
    } else {
        let mut table = Table::new(&[
            "WRITE",
            "KEYS",
            "PRECISION",
            "RECALL",
            "INV CHANGED",
            "INV SAME",
            "KEPT CHANGED",
            "KEPT SAME",
        ]);
        for p in checked {
            let c = &p.counts;
            let (write, keys) = match (p.write_pattern.as_str(), p.key_pattern.as_str()) {
                ("*", "*") => ("all writes".to_string(), "all keys".to_string()),
                (w, k) => (w.to_string(), k.to_string()),
            };
            table.row(vec![
                write,
                keys,
                percent(p.precision),
                percent(p.recall),
                c.invalidated_changed.to_string(),
                c.invalidated_same.to_string(),
                c.kept_changed.to_string(),
                c.kept_same.to_string(),
            ]);
        }
        out.push_str(&table.render());
    }
    if t.rules.is_empty() {
        out.push_str("  no learned rules\n");
    } else {
        let mut table = Table::new(&["RULE", "DEPENDENCY", "SUPPORT", "AGAINST", "LEARNED AFTER"]);
        for r in &t.rules {
            let e = &r.learned.evidence;
            table.row(vec![
                r.id.clone(),
                r.rule.clone(),
                e.support.to_string(),
                e.counter.to_string(),
                format!("{} checks", r.learned.checks_to_learn),
            ]);
        }
        out.push_str(&table.render());
    }
    if !t.candidates.is_empty() {
        let mut table = Table::new(&["CANDIDATE", "DEPENDENCY", "SUPPORT", "AGAINST"]);
        for c in &t.candidates {
            table.row(vec![
                c.id.clone(),
                c.rule.clone(),
                c.evidence.support.to_string(),
                c.evidence.counter.to_string(),
            ]);
        }
        out.push_str(&table.render());
    }
    let hypotheses: Vec<_> = t
        .hypotheses
        .iter()
        .flat_map(|r| r.hypotheses.iter().map(move |h| (&r.route, h)))
        .collect();
    if !hypotheses.is_empty() {
        let mut table = Table::new(&[
            "ID",
            "ROUTE",
            "PARAM",
            "MEANS",
            "FIELD",
            "SUPPORT",
            "AGAINST",
            "CONFIDENT",
        ]);
        for (route, h) in hypotheses {
            table.row(vec![
                h.id.clone(),
                route.clone(),
                param_label(h),
                h.kind.as_str().to_string(),
                field_label(h),
                h.support.to_string(),
                h.counter_examples.to_string(),
                if h.confident { "yes" } else { "no" }.to_string(),
            ]);
        }
        out.push_str(&table.render());
    }
    out
}

fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{:.1}%", v * 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_shows_estimates_with_their_counts_and_rules_with_evidence() {
        let status: LearnStatus = serde_json::from_value(json!({
            "tenant": "acme",
            "learning": {"mode": "observe", "frozen": true},
            "tables": [{
                "table": "users",
                "shadow": [
                    {"write_pattern": "*", "key_pattern": "*", "precision": null, "recall": 0.5,
                     "counts": {"kept_changed": 1, "kept_same": 3, "invalidated_changed": 0,
                                "invalidated_same": 0, "kept_population": 8,
                                "invalidated_population": 0}}
                ],
                "rules": [{"id": "users:1", "rule": "POST /v1/orders -> /v1/users/{after.userId}",
                           "learned": {"id": 1, "learned_at_ms": 5, "checks_to_learn": 3,
                             "dependency": {"write_table": "orders", "write_pattern": "POST /v1/orders",
                               "target_table": "users",
                               "target": {"record": {"field": {"side": "after", "column": "userId"}}}},
                             "evidence": {"support": 7, "counter": 0, "first_seen_ms": 1, "last_seen_ms": 9}}}],
                "candidates": [{"id": "users:c1a2b3c4d", "rule": "POST /v1/carts -> /v1/users?*",
                                "evidence": {"support": 2, "counter": 1, "first_seen_ms": 1, "last_seen_ms": 9}}],
                "hypotheses": [{"route": "/v1/users", "hypotheses": [
                    {"id": "users:h0c1d2e3f", "param": "city", "kind": "equals", "field": "city", "descending": false,
                     "support": 10, "counter_examples": 0, "confident": true,
                     "last_verified_ms": 9}]},
                    {"route": "PATCH /v1/users/{id}", "hypotheses": [
                    {"id": "users:h9a8b7c6d", "param": null, "kind": "write_answer", "field": null, "descending": false,
                     "support": 4, "counter_examples": 0, "confident": false,
                     "last_verified_ms": 9}]}],
                "pending_checks": 2
            }]
        }))
        .unwrap();
        let text = status_text(&status);
        assert!(
            text.starts_with("tenant acme: learning observe, frozen\n"),
            "{text}"
        );
        assert!(text.contains("50.0%"), "{text}");
        assert!(text.contains("users:1"), "{text}");
        assert!(
            text.contains("POST /v1/orders -> /v1/users/{after.userId}"),
            "{text}"
        );
        assert!(text.contains("3 checks"), "{text}");
        let cart = text.lines().find(|l| l.contains("POST /v1/carts"));
        assert!(
            cart.is_some_and(
                |l| l.trim_start().starts_with("users:c1a2b3c4d ") && l.contains("-> /v1/users?*")
            ),
            "{text}"
        );
        assert!(text.contains("CANDIDATE"), "{text}");
        let city = text
            .lines()
            .find(|l| l.contains("/v1/users") && l.contains("city"));
        assert!(
            city.is_some_and(|l| l.starts_with("users:h0c1d2e3f ")
                && l.contains("equals")
                && l.contains("yes")),
            "{text}"
        );
        let answer = text.lines().find(|l| l.contains("PATCH /v1/users/{id}"));
        assert!(
            answer.is_some_and(|l| l.starts_with("users:h9a8b7c6d ")
                && l.contains("(write answer)")
                && l.contains("write_answer")),
            "{text}"
        );
    }

    #[test]
    fn forget_tells_rules_hypotheses_and_candidates_apart_by_the_ids_status_shows() {
        let of = |target, all| ForgetTarget::of(target, all).unwrap();
        assert_eq!(of("users:1", false), ForgetTarget::Rule("users:1"));
        assert_eq!(
            of("users:h0c1d2e3f", false),
            ForgetTarget::Hypothesis("users:h0c1d2e3f")
        );
        assert_eq!(
            of("users:c1a2b3c4d", false),
            ForgetTarget::Candidate("users:c1a2b3c4d")
        );
        // Malformed rules and hypotheses: the server says what a good id looks like.
        assert_eq!(of("users:hx", false), ForgetTarget::Hypothesis("users:hx"));
        assert_eq!(of("users", false), ForgetTarget::Rule("users"));
        assert_eq!(of("users", true), ForgetTarget::Table("users"));
        assert_eq!(
            of("users:h0c1d2e3f", true),
            ForgetTarget::Table("users:h0c1d2e3f")
        );
        // A candidate's id of another shape is a usage error, saying what one looks like.
        for bad in [
            "users:c",
            "users:cx",
            "users:c1a2b3c4",
            "users:c1A2B3C4D",
            ":c1a2b3c4d",
        ] {
            let err = ForgetTarget::of(bad, false).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}");
            let message = err.to_string();
            assert!(
                message.contains("users:c0c1d2e3f") && message.contains(bad),
                "{message}"
            );
        }
    }

    #[test]
    fn forgotten_candidates_read_as_status_showed_them() {
        let gone: ForgottenCandidates = serde_json::from_value(json!({
            "id": "users:c1a2b3c4d",
            "forgotten": [{"id": "users:c1a2b3c4d", "rule": "POST /v1/carts -> /v1/users?*",
                           "evidence": {"support": 2, "counter": 1, "first_seen_ms": 1,
                                        "last_seen_ms": 9}}],
            "seq": 41
        }))
        .unwrap();
        assert_eq!(
            forgotten_candidates_text(&gone),
            "forgot candidate users:c1a2b3c4d: POST /v1/carts -> /v1/users?* (support 2, against 1)\n\
             invalidated nothing: a candidate is not a rule, no plan used it\n"
        );
    }

    #[test]
    fn forgotten_hypotheses_read_as_status_showed_them() {
        let gone: ForgottenHypotheses = serde_json::from_value(json!({
            "id": "users:h0c1d2e3f",
            "forgotten": [{"route": "/v1/users", "hypotheses": [
                {"id": "users:h0c1d2e3f", "param": "city", "kind": "equals", "field": "city",
                 "descending": false, "support": 10, "counter_examples": 0, "confident": true,
                 "last_verified_ms": 9}]}],
            "invalidated": 3,
            "seq": 41
        }))
        .unwrap();
        assert_eq!(
            forgotten_text(&gone),
            "forgot hypothesis users:h0c1d2e3f: /v1/users city equals city\n\
             invalidated 3 keys kept under its route\n"
        );
    }
}
