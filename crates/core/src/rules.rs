//! Per-route cache rules: glob patterns over the request path, each overriding some of the
//! default policy, and the duration syntax operators write them in.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::vary::VARY_BY_HEADERS;

/// Default time to live: a day, since freshness comes from invalidation, not expiry.
pub const DEFAULT_TTL_SECS: u64 = 86_400;
/// Default: responses are stored.
pub const DEFAULT_NO_STORE: bool = false;
/// Default longest time an edge serves hits without refreshing its view of the table.
pub const DEFAULT_MAX_STALENESS_MS: u64 = 1000;
/// Default: invalidated keys are refetched in the background.
pub const DEFAULT_REHYDRATE: bool = true;

/// Longest pattern, in bytes.
pub const MAX_PATTERN_BYTES: usize = 256;
/// Most `*` in one pattern.
pub const MAX_WILDCARDS: usize = 8;

/// One operator-written rule: a path pattern and the settings it overrides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Path glob: literal characters and `*` (any run of characters, `/` included).
    pub pattern: String,
    /// Time to live in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
    /// Never store responses of matching routes.
    #[serde(default)]
    pub no_store: bool,
    /// Longest time an edge may serve hits without refreshing (`0` = check on every hit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_staleness_ms: Option<u64>,
    /// Whether invalidated keys are refetched in the background.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rehydrate: Option<bool>,
    /// Request headers answers of matching routes are keyed by (lower-case, from
    /// [`VARY_BY_HEADERS`]): naming `authorization` or `cookie` lets an HTTP origin's answers
    /// to credentialed reads be stored, one entry per keyed hash of the credential.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vary_by: Vec<String>,
    /// Stale-while-revalidate, in seconds: for this long after its TTL ran out, an entry that
    /// no write has invalidated is served as `STALE` while one background refill runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swr_secs: Option<u64>,
}

/// Longest stale-while-revalidate window a rule may set: a week.
pub const MAX_SWR_SECS: u64 = 7 * 24 * 3600;

/// The settings in force for one path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutePolicy {
    /// Time to live in seconds ([`DEFAULT_TTL_SECS`]).
    pub ttl_secs: u64,
    /// Never store ([`DEFAULT_NO_STORE`]).
    pub no_store: bool,
    /// Staleness bound in milliseconds ([`DEFAULT_MAX_STALENESS_MS`]).
    pub max_staleness_ms: u64,
    /// Refetch invalidated keys ([`DEFAULT_REHYDRATE`]).
    pub rehydrate: bool,
    /// The pattern of the rule that applied, if any.
    pub rule: Option<String>,
    /// `ttl_secs` was set by a rule, so it wins over the origin's `max-age` (see
    /// `shared_cache::ttl_secs`).
    #[serde(default)]
    pub ttl_from_rule: bool,
    /// Request headers the route's answers are keyed by (the rule's `vary_by`).
    #[serde(default)]
    pub vary_by: Vec<String>,
    /// Stale-while-revalidate window in seconds (0: none).
    #[serde(default)]
    pub swr_secs: u64,
}

impl RoutePolicy {
    /// Whether an entry whose TTL ran out at `expired_at_ms` may still be served as `STALE`
    /// at `now_ms` while it is refilled. Only expiry is forgiven here: whether a write
    /// invalidated it is the views' question, asked as for any hit.
    pub fn may_revalidate(&self, expired_at_ms: u64, now_ms: u64) -> bool {
        self.swr_secs > 0 && now_ms < expired_at_ms.saturating_add(self.swr_secs * 1000)
    }
}

impl Default for RoutePolicy {
    fn default() -> Self {
        RoutePolicy {
            ttl_secs: DEFAULT_TTL_SECS,
            no_store: DEFAULT_NO_STORE,
            max_staleness_ms: DEFAULT_MAX_STALENESS_MS,
            rehydrate: DEFAULT_REHYDRATE,
            rule: None,
            ttl_from_rule: false,
            vary_by: Vec::new(),
            swr_secs: 0,
        }
    }
}

/// Why a rule or a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The pattern does not start with `/`.
    #[error("pattern `{0}` must start with '/'")]
    PatternStart(String),
    /// The pattern is too long.
    #[error("pattern is {len} bytes; the limit is {max}")]
    PatternTooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The pattern has too many `*`.
    #[error("pattern `{pattern}` has {count} '*'; the limit is {max}")]
    TooManyWildcards {
        /// The pattern.
        pattern: String,
        /// How many `*` it has.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The duration is empty.
    #[error("empty duration: write e.g. 500ms, 30s, 5m, 1h, 2d, or a number of seconds")]
    EmptyDuration,
    /// The duration does not start with a non-negative integer.
    #[error("bad duration `{0}`: expected a whole number followed by ms, s, m, h or d")]
    BadDuration(String),
    /// The duration's unit is not one of `ms`, `s`, `m`, `h`, `d`.
    #[error("unknown unit `{unit}` in duration `{input}`: use ms, s, m, h or d")]
    UnknownUnit {
        /// The whole duration.
        input: String,
        /// The unit found.
        unit: String,
    },
    /// The duration does not fit in 64-bit milliseconds.
    #[error("duration `{0}` is too large")]
    DurationOverflow(String),
}

/// Checks a pattern: starts with `/`, at most [`MAX_PATTERN_BYTES`], at most
/// [`MAX_WILDCARDS`] `*`.
pub fn validate_pattern(p: &str) -> Result<(), RuleError> {
    if !p.starts_with('/') {
        return Err(RuleError::PatternStart(p.chars().take(64).collect()));
    }
    if p.len() > MAX_PATTERN_BYTES {
        return Err(RuleError::PatternTooLong {
            len: p.len(),
            max: MAX_PATTERN_BYTES,
        });
    }
    let count = p.matches('*').count();
    if count > MAX_WILDCARDS {
        return Err(RuleError::TooManyWildcards {
            pattern: p.to_string(),
            count,
            max: MAX_WILDCARDS,
        });
    }
    Ok(())
}

/// Whether `path` matches the glob `pattern`, in O(pattern × path) time at worst.
///
/// On a mismatch after a `*`, only the most recent `*` is retried one byte further on: earlier
/// stars never need revisiting, because the latest star can absorb anything they could.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), path.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // (pattern index after the latest `*`, path index that star's run ends at)
    let mut retry: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            pi += 1;
            retry = Some((pi, ti));
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((star_pi, star_ti)) = retry {
            pi = star_pi;
            ti = star_ti + 1;
            retry = Some((star_pi, ti));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// The policy for `path`: the matching rule with the most literal characters (the first listed
/// on a tie) overrides the defaults with the fields it sets; invalid patterns never match.
pub fn resolve(rules: &[RouteRule], path: &str) -> RoutePolicy {
    let literal = |r: &RouteRule| r.pattern.chars().filter(|&c| c != '*').count();
    let mut best: Option<&RouteRule> = None;
    for rule in rules {
        if validate_pattern(&rule.pattern).is_ok()
            && glob_match(&rule.pattern, path)
            && best.is_none_or(|b| literal(rule) > literal(b))
        {
            best = Some(rule);
        }
    }
    let mut policy = RoutePolicy::default();
    if let Some(rule) = best {
        policy.ttl_secs = rule.ttl_secs.unwrap_or(policy.ttl_secs);
        policy.no_store = rule.no_store;
        policy.max_staleness_ms = rule.max_staleness_ms.unwrap_or(policy.max_staleness_ms);
        policy.rehydrate = rule.rehydrate.unwrap_or(policy.rehydrate);
        policy.rule = Some(rule.pattern.clone());
        policy.ttl_from_rule = rule.ttl_secs.is_some();
        policy.vary_by = rule.vary_by.clone();
        policy.swr_secs = rule.swr_secs.unwrap_or(0);
    }
    policy
}

/// Parses `500ms`, `30s`, `5m`, `1h`, `2d`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, RuleError> {
    if s.is_empty() {
        return Err(RuleError::EmptyDuration);
    }
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(RuleError::BadDuration(s.to_string()));
    }
    let (number, unit) = s.split_at(digits);
    let overflow = || RuleError::DurationOverflow(s.to_string());
    let n: u64 = number.parse().map_err(|_| overflow())?;
    // Anything but letters after the number is a malformed number ("1.5h", "5 s"), not a unit.
    if !unit.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(RuleError::BadDuration(s.to_string()));
    }
    let ms_per_unit: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(RuleError::UnknownUnit {
                input: s.to_string(),
                unit: unit.to_string(),
            })
        }
    };
    n.checked_mul(ms_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(overflow)
}

/// Checks a rule before it is stored.
pub fn check_rule(rule: &RouteRule) -> Result<(), ApiError> {
    validate_pattern(&rule.pattern)
        .map_err(|e| ApiError::new(400, "invalid_rule", e.to_string()))?;
    if rule.ttl_secs == Some(0) {
        return Err(ApiError::new(
            400,
            "invalid_rule",
            "ttl_secs must be at least 1; use no_store to disable caching",
        ));
    }
    if rule.swr_secs.is_some_and(|s| s > MAX_SWR_SECS) {
        return Err(ApiError::new(
            400,
            "invalid_rule",
            format!("swr_secs is at most {MAX_SWR_SECS} (a week)"),
        ));
    }
    check_vary_by(&rule.vary_by).map_err(|m| ApiError::new(400, "invalid_rule", m))
}

/// Checks a rule's `vary_by`: names from [`VARY_BY_HEADERS`], lower-case, each once.
pub fn check_vary_by(names: &[String]) -> Result<(), String> {
    let known = VARY_BY_HEADERS.join(", ");
    for (i, name) in names.iter().enumerate() {
        if !VARY_BY_HEADERS.contains(&name.as_str()) {
            return Err(format!(
                "vary_by: `{}` is not one of {known} (lower-case)",
                name.chars().take(64).collect::<String>()
            ));
        }
        if names[..i].contains(name) {
            return Err(format!("vary_by names `{name}` twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rules_are_checked() {
        let rule = |p: &str, ttl| RouteRule {
            pattern: p.into(),
            ttl_secs: ttl,
            no_store: false,
            max_staleness_ms: None,
            rehydrate: None,
            vary_by: Vec::new(),
            swr_secs: None,
        };
        assert!(check_rule(&rule("/v1/users*", Some(60))).is_ok());
        assert_eq!(
            check_rule(&rule("users", None)).unwrap_err().code,
            "invalid_rule"
        );
        assert_eq!(
            check_rule(&rule("/v1/*", Some(0))).unwrap_err().code,
            "invalid_rule"
        );
    }

    fn rule(pattern: &str) -> RouteRule {
        RouteRule {
            pattern: pattern.into(),
            ttl_secs: None,
            no_store: false,
            max_staleness_ms: None,
            rehydrate: None,
            vary_by: Vec::new(),
            swr_secs: None,
        }
    }

    #[test]
    fn vary_by_is_checked_and_reaches_the_policy() {
        let with = |names: &[&str]| RouteRule {
            vary_by: names.iter().map(|s| s.to_string()).collect(),
            swr_secs: None,
            ..rule("/v1/me*")
        };
        for ok in [&[][..], &["authorization"], &["cookie", "accept-language"]] {
            assert!(check_rule(&with(ok)).is_ok(), "{ok:?}");
        }
        for bad in [
            &["Authorization"][..],
            &["x-user"],
            &["authorization", "authorization"],
            &[""],
        ] {
            assert_eq!(
                check_rule(&with(bad)).unwrap_err().code,
                "invalid_rule",
                "{bad:?}"
            );
        }
        let p = resolve(&[with(&["authorization"])], "/v1/me");
        assert_eq!(p.vary_by, vec!["authorization"]);
        assert!(!p.ttl_from_rule);
        let timed = RouteRule {
            ttl_secs: Some(5),
            ..rule("/v1/me")
        };
        assert!(resolve(&[timed], "/v1/me").ttl_from_rule);
        let json: RouteRule =
            serde_json::from_str(r#"{"pattern":"/v1/me","vary_by":["authorization"]}"#).unwrap();
        let expected = RouteRule {
            pattern: "/v1/me".into(),
            ..with(&["authorization"])
        };
        assert_eq!(json, expected);
        assert!(!serde_json::to_string(&rule("/x"))
            .unwrap()
            .contains("vary_by"));
    }

    #[test]
    fn globs() {
        assert!(glob_match("/v1/users", "/v1/users"));
        assert!(!glob_match("/v1/users", "/v1/users/1"));
        assert!(glob_match("/v1/users/*", "/v1/users/1"));
        assert!(glob_match("/v1/users/*", "/v1/users/"));
        assert!(glob_match("/v1/*", "/v1/users/1/x"));
        assert!(glob_match("/v1/*/posts", "/v1/users/1/posts"));
        assert!(!glob_match("/v1/*/posts", "/v1/users/1/posts/2"));
        assert!(glob_match("*", "/anything"));
        assert!(glob_match("/a*b*c", "/aXbYbZc"));
        assert!(!glob_match("/a*b*c", "/aXbYbZ"));
    }

    #[test]
    fn glob_is_fast_on_adversarial_input() {
        let pattern = format!("/{}b", "a*".repeat(MAX_WILDCARDS));
        let path = format!("/{}", "a".repeat(2048));
        assert!(validate_pattern(&pattern).is_ok());
        assert!(!glob_match(&pattern, &path));
    }

    #[test]
    fn validates_patterns() {
        assert!(validate_pattern("/v1/*").is_ok());
        assert!(matches!(
            validate_pattern("v1/*"),
            Err(RuleError::PatternStart(_))
        ));
        assert!(matches!(
            validate_pattern(""),
            Err(RuleError::PatternStart(_))
        ));
        assert!(validate_pattern(&format!("/{}", "a".repeat(255))).is_ok());
        assert_eq!(
            validate_pattern(&format!("/{}", "a".repeat(256))),
            Err(RuleError::PatternTooLong { len: 257, max: 256 })
        );
        assert!(validate_pattern(&format!("/{}", "*".repeat(8))).is_ok());
        assert!(matches!(
            validate_pattern(&format!("/{}", "*".repeat(9))),
            Err(RuleError::TooManyWildcards { count: 9, .. })
        ));
    }

    #[test]
    fn most_literal_rule_wins() {
        let rules = vec![
            RouteRule {
                ttl_secs: Some(60),
                ..rule("/v1/*")
            },
            RouteRule {
                no_store: true,
                ..rule("/v1/secrets/*")
            },
            RouteRule {
                max_staleness_ms: Some(0),
                ..rule("/v1/users/*")
            },
            RouteRule {
                ttl_secs: Some(5),
                ..rule("/v1/user*/*")
            },
            RouteRule {
                rehydrate: Some(false),
                ..rule("/v1/users/*")
            },
            rule("no-slash*"),
        ];
        let p = resolve(&rules, "/v1/users/1");
        assert_eq!(
            p,
            RoutePolicy {
                max_staleness_ms: 0,
                rule: Some("/v1/users/*".into()),
                ..RoutePolicy::default()
            }
        );
        assert!(resolve(&rules, "/v1/secrets/x").no_store);
        assert_eq!(resolve(&rules, "/v1/orders").ttl_secs, 60);
        assert_eq!(resolve(&rules, "/v2/x"), RoutePolicy::default());
        assert_eq!(resolve(&[], "/v1/x"), RoutePolicy::default());
        assert_eq!(RoutePolicy::default().ttl_secs, 86_400);
    }

    #[test]
    fn rules_deserialise_with_defaults() {
        let rules: Vec<RouteRule> =
            serde_json::from_str(r#"[{"pattern": "/v1/*", "ttl_secs": 30}]"#).unwrap();
        assert_eq!(
            rules,
            vec![RouteRule {
                ttl_secs: Some(30),
                ..rule("/v1/*")
            }]
        );
        assert!(
            serde_json::from_str::<Vec<RouteRule>>(r#"[{"pattern": "/", "ttl": 30}]"#).is_err()
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(""), Err(RuleError::EmptyDuration));
        for bad in ["-5s", "s", " 5s", "1.5h", "+5", "5 s", "5s "] {
            assert!(
                matches!(parse_duration(bad), Err(RuleError::BadDuration(_))),
                "{bad}"
            );
        }
        for bad in ["5w", "5S", "5sec", "5dd"] {
            assert!(
                matches!(parse_duration(bad), Err(RuleError::UnknownUnit { .. })),
                "{bad}"
            );
        }
        for bad in [
            "99999999999999999999",
            "18446744073709551615s",
            "300000000000000d",
        ] {
            assert!(
                matches!(parse_duration(bad), Err(RuleError::DurationOverflow(_))),
                "{bad}"
            );
        }
    }

    /// The obvious exponential matcher, as an oracle.
    fn oracle(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| oracle(rest, &t[i..])),
            Some((c, rest)) => t.first() == Some(c) && oracle(rest, &t[1..]),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn glob_agrees_with_oracle(pattern in "[ab/é*]{0,8}", path in "[ab/é]{0,10}") {
            let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), path.chars().collect());
            prop_assert_eq!(glob_match(&pattern, &path), oracle(&p, &t));
        }

        #[test]
        fn durations_round_trip(n in 0u64..1_000_000, unit in prop::sample::select(vec![("ms", 1u64), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)])) {
            prop_assert_eq!(parse_duration(&format!("{n}{}", unit.0)), Ok(Duration::from_millis(n * unit.1)));
        }
    }
}
