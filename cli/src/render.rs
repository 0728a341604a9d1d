//! Human renderings of admin API answers. Pure functions from model to text, so the exact
//! output is tested without a server.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::duration::{format_millis, format_secs};
use edgecache_core::lag::LagSummary;
use edgecache_core::protocol::{KeyAction, KeyReason, REDACTED};

use crate::model::{
    BetaList, CoordinatorStats, CreatedKey, CreatedTenant, EdgeStats, ExplainResponse,
    InvalidationResult, Key, KeyDeps, OriginConfig, RecordDeps, Rule, Stats, Tenant, Whoami,
};
use crate::table::Table;

/// Shown where the server's default applies, so "unset" is not mistaken for "zero".
const DEFAULT: &str = "default";

/// `login`: who the token is.
pub fn whoami(endpoint: &str, who: &Whoami) -> String {
    match (who.role.as_str(), who.tenant.as_deref()) {
        ("operator", _) => format!("logged in to {endpoint} as the operator\n"),
        ("tenant", Some(tenant)) => {
            format!("logged in to {endpoint} as the admin of tenant '{tenant}'\n")
        }
        (role, _) => format!("logged in to {endpoint} with role '{role}'\n"),
    }
}

/// One origin in a cell: `d1`, or `http <base_url>`; empty when the server gave none.
pub fn origin(origin: Option<&OriginConfig>) -> String {
    match origin {
        Some(OriginConfig::D1) => "d1".to_string(),
        Some(OriginConfig::Http { base_url, .. }) => format!("http {base_url}"),
        None => String::new(),
    }
}

/// `tenant create`: the secrets, then the tenant. The one-time warning goes to stderr
/// separately.
pub fn created_tenant(created: &CreatedTenant) -> String {
    format!(
        "created tenant '{}'\n\
         admin token:     {}\n\
         webhook secret:  {}\n\
         \n\
         {}",
        created.tenant.name,
        created.admin_token,
        created.webhook_secret,
        tenant_summary(&created.tenant)
    )
}

/// `tenant set`: the tenant as it now is.
pub fn updated_tenant(updated: &Tenant) -> String {
    format!("updated tenant '{}'\n\n{}", updated.name, tenant(updated))
}

/// `tenant list`.
pub fn tenant_list(tenants: &[Tenant]) -> String {
    if tenants.is_empty() {
        return "no tenants yet; `edgecache tenant create NAME` creates one\n".to_string();
    }
    let mut table = Table::new(&["NAME", "ORIGIN", "RULES", "CREATED"]);
    for tenant in tenants {
        table.row(vec![
            tenant.name.clone(),
            origin(tenant.origin.as_ref()),
            tenant.rules.len().to_string(),
            tenant.created_at.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    table.render()
}

/// `beta list`.
pub fn beta_list(list: &BetaList) -> String {
    if list.signups.is_empty() {
        return "no beta sign-ups yet\n".to_string();
    }
    let mut table = Table::new(&["EMAIL", "SIGN-UPS", "FIRST", "LATEST"]);
    for signup in &list.signups {
        table.row(vec![
            signup.email.clone(),
            signup.count.to_string(),
            signup.created_at.clone(),
            signup.updated_at.clone(),
        ]);
    }
    let mut out = table.render();
    let _ = writeln!(out, "{} addresses", list.signups.len());
    out
}

/// `tenant show`.
pub fn tenant(tenant: &Tenant) -> String {
    let mut out = tenant_summary(tenant);
    out.push('\n');
    out.push_str(&rules(&tenant.rules));
    out.push('\n');
    if tenant.views.is_empty() {
        out.push_str("no views\n");
    } else {
        let mut table = Table::new(&["VIEW", "TABLES"]);
        for (view, decl) in &tenant.views {
            let bind = decl.bind();
            let tables: Vec<String> = decl
                .tables()
                .into_iter()
                .map(|t| match bind.get(&t) {
                    Some(column) => format!("{t} ({column} = id)"),
                    None => t,
                })
                .collect();
            table.row(vec![view.clone(), tables.join(", ")]);
        }
        out.push_str(&table.render());
    }
    out
}

/// Name, origin with its credential headers (by name), creation time and access settings.
///
/// A credential's value is never printed: every one reads [`REDACTED`], as the server shows it,
/// even if a server (an old one, say) sent the value itself.
fn tenant_summary(tenant: &Tenant) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "name:     {}", tenant.name);
    let _ = writeln!(out, "origin:   {}", origin(tenant.origin.as_ref()));
    let http = matches!(tenant.origin, Some(OriginConfig::Http { .. }));
    if let Some(OriginConfig::Http { headers, .. }) = &tenant.origin {
        for header in headers {
            let _ = writeln!(out, "          {}: {REDACTED}", header.name);
        }
    }
    if let Some(created) = &tenant.created_at {
        let _ = writeln!(out, "created:  {created}");
    }
    let access = &tenant.access;
    let reads = if access.private_reads {
        "key required (read or write scope)"
    } else {
        "public"
    };
    let _ = writeln!(out, "reads:    {reads}");
    if let Some(learning) = &tenant.learning {
        let frozen = if learning.frozen { ", frozen" } else { "" };
        let _ = writeln!(out, "learning: {}{frozen}", learning.mode.as_str());
    }
    let writes = match (&tenant.origin, access.require_write_key) {
        (Some(OriginConfig::D1), _) | (None, true) => "write key required",
        (Some(OriginConfig::Http { .. }), true) => {
            "write key required (x-edgecache-key), then the origin's own auth"
        }
        (Some(OriginConfig::Http { .. }), false) => "left to the origin's own auth",
        (None, false) => "-",
    };
    let _ = writeln!(out, "writes:   {writes}");
    if http || !access.forward_headers.is_empty() {
        let forwarded: Vec<&str> = ["authorization", "cookie"]
            .into_iter()
            .chain(access.forward_headers.iter().map(String::as_str))
            .collect();
        let _ = writeln!(out, "forward:  {} (on writes)", forwarded.join(", "));
    }
    if http {
        let tables = match tenant.tables.is_empty() {
            true => "none known yet (learned when the origin answers a read with a 2xx)".into(),
            false => tenant.tables.join(", "),
        };
        let _ = writeln!(out, "tables:   {tables}");
    }
    out
}

/// `rules list`, `rules set` and the rules part of `tenant show`.
pub fn rules(rules: &[Rule]) -> String {
    if rules.is_empty() {
        return "no rules; the defaults apply to every route\n".to_string();
    }
    let mut table = Table::new(&[
        "PATTERN",
        "TTL",
        "STORE",
        "MAX STALENESS",
        "REHYDRATE",
        "VARY BY",
    ]);
    for rule in rules {
        table.row(vec![
            rule.pattern.clone(),
            rule.ttl_secs
                .map(format_secs)
                .unwrap_or_else(|| DEFAULT.into()),
            if rule.no_store { "no" } else { "yes" }.into(),
            rule.max_staleness_ms
                .map(format_millis)
                .unwrap_or_else(|| DEFAULT.into()),
            match rule.rehydrate {
                Some(true) => "yes".into(),
                Some(false) => "no".into(),
                None => DEFAULT.into(),
            },
            if rule.vary_by.is_empty() {
                "-".into()
            } else {
                rule.vary_by.join(",")
            },
        ]);
    }
    table.render()
}

/// `keys create`: the key, shown this once. The warning goes to stderr separately.
pub fn created_key(tenant: &str, created: &CreatedKey) -> String {
    format!(
        "created {} key '{}' for tenant '{tenant}'\n\
         key:  {}\n\
         send it as `x-edgecache-key: <key>` (or, on the built-in D1 origin, \
         `Authorization: Bearer <key>`)\n",
        created.info.scope, created.info.name, created.key
    )
}

/// `keys list`: names, scopes and times.
pub fn keys(tenant: &str, keys: &[Key]) -> String {
    if keys.is_empty() {
        return format!(
            "tenant '{tenant}' has no keys; `edgecache keys create NAME --scope read|write` \
             creates one\n"
        );
    }
    let mut table = Table::new(&["NAME", "SCOPE", "CREATED", "LAST USED"]);
    for key in keys {
        table.row(vec![
            key.name.clone(),
            key.scope.clone(),
            key.created_at.clone().unwrap_or_else(|| "-".into()),
            key.last_used_at.clone().unwrap_or_else(|| "never".into()),
        ]);
    }
    table.render()
}

/// `invalidate`.
pub fn invalidated(answer: &InvalidationResult) -> String {
    let mut out = match answer.invalidated.len() {
        0 => "no cached keys matched; nothing was purged\n".to_string(),
        1 => "invalidated 1 key\n".to_string(),
        n => format!("invalidated {n} keys\n"),
    };
    if !answer.invalidated.is_empty() {
        let mut table = Table::new(&["KEY", "REASON"]);
        for item in &answer.invalidated {
            table.row(vec![item.key.clone(), item.reason.as_str().to_string()]);
        }
        out.push_str(&table.render());
    }
    if !answer.seqs.is_empty() {
        let seqs: Vec<String> = answer
            .seqs
            .iter()
            .map(|(table, seq)| format!("{table}={seq}"))
            .collect();
        let _ = writeln!(out, "seqs: {}", seqs.join(" "));
    }
    out
}

/// `deps <url>`: what a key was built from.
pub fn key_deps(deps: &KeyDeps) -> String {
    let Some(entry) = &deps.entry else {
        return format!(
            "key {} is not cached, so nothing would purge it\n{}",
            deps.key,
            last_invalidations(deps)
        );
    };
    let mut out = String::new();
    let _ = writeln!(out, "key:      {}", deps.key);
    if !entry.kind.is_empty() {
        let _ = writeln!(out, "kind:     {}", entry.kind);
    }
    if !entry.route.is_empty() {
        let _ = writeln!(out, "route:    {}", entry.route);
    }
    let tables: Vec<String> = entry
        .tables
        .iter()
        .map(|(table, seq)| format!("{table} (filled at seq {seq})"))
        .collect();
    let _ = writeln!(out, "tables:   {}", none_if_empty(&tables));
    let _ = writeln!(out, "records:  {}", none_if_empty(&entry.records));
    out.push_str(&last_invalidations(deps));
    out.push_str(
        "a write to any of these records, or a change to these tables that affects this \
         response, purges it\n",
    );
    out
}

/// Each table's last invalidation of the key and why (a learned rule by its id).
fn last_invalidations(deps: &KeyDeps) -> String {
    let mut out = String::new();
    for (table, at) in &deps.coordinators {
        if let Some(last) = &at.last_invalidated {
            let _ = writeln!(
                out,
                "last invalidated in {table} at seq {}: {}",
                last.seq,
                last.reason.label(table)
            );
        }
    }
    out
}

/// `explain`: what a write would do, key by key.
pub fn explained(method: &str, path: &str, answer: &ExplainResponse) -> String {
    let count = |action: KeyAction| answer.keys.iter().filter(|k| k.action == action).count();
    let (invalidate, refresh, spare) = (
        count(KeyAction::Invalidate),
        count(KeyAction::Refresh) + count(KeyAction::RefreshInPlace),
        count(KeyAction::Spare),
    );
    let mut out =
        format!(
        "{method} {path} (not written) would invalidate {invalidate}, refresh {refresh} and spare \
         {spare}{} cached key{}\n",
        if answer.truncated { "+" } else { "" },
        if invalidate + refresh + spare == 1 { "" } else { "s" }
    );
    if !answer.unpredictable.is_empty() {
        let _ = writeln!(
            out,
            "the database decides {} (planned as unknown)",
            answer.unpredictable.join(", ")
        );
    }
    if answer.keys.is_empty() {
        return out;
    }
    let mut table = Table::new(&["ACTION", "KEY", "REASON"]);
    for key in &answer.keys {
        let action = match key.action {
            KeyAction::Invalidate => "invalidate",
            KeyAction::Refresh => "refresh",
            KeyAction::RefreshInPlace => "refresh in place",
            KeyAction::Spare => "spare",
        };
        let reason = match key.reason {
            KeyReason::Invalidation(r) => r.as_str(),
            KeyReason::Page(c) => c.as_str(),
            KeyReason::Spared(r) => r.as_str(),
        };
        table.row(vec![action.into(), key.key.clone(), reason.into()]);
    }
    out.push_str(&table.render());
    if answer.truncated {
        out.push_str("(more spared keys not listed)\n");
    }
    out
}

/// `deps --record`: which keys contain a record.
pub fn record_deps(deps: &RecordDeps) -> String {
    if deps.keys.is_empty() {
        return format!(
            "no cached key contains {}; writing it purges nothing\n",
            deps.record
        );
    }
    let mut out = format!(
        "{} cached key{} contain{} {}; writing it purges:\n",
        deps.keys.len(),
        if deps.keys.len() == 1 { "" } else { "s" },
        if deps.keys.len() == 1 { "s" } else { "" },
        deps.record
    );
    for key in &deps.keys {
        let _ = writeln!(out, "  {key}");
    }
    out
}

fn none_if_empty(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

/// `stats`: hit ratios per tier and per route, then the coordinators.
///
/// A tier's hit ratio is hits / (hits + misses) where a tier's misses are the lookups it passed
/// on: L1 passes on every L2 hit and every miss, L2 passes on the misses. Stale and bypassed
/// responses are not lookups that could have hit, so they are shown but not counted.
pub fn stats(tenant: &str, stats: &Stats) -> String {
    let mut out = format!("tenant {tenant}\n\n");
    let edge = &stats.edge;
    out.push_str(&tiers(edge));
    out.push('\n');
    if edge.routes.is_empty() {
        out.push_str("no route traffic yet\n");
    } else {
        let routes = edge
            .routes
            .iter()
            .map(|(route, counts)| (route.clone(), counts.hits, counts.misses));
        out.push_str(&hit_table("ROUTE", routes));
    }
    out.push('\n');
    out.push_str(&coordinators(&stats.coordinators, &stats.views));
    out
}

/// The hit ratio of each tier, the uncounted outcomes and L1's memory.
fn tiers(edge: &EdgeStats) -> String {
    let l1_misses = edge.hits_l2.saturating_add(edge.misses);
    let all_hits = edge.hits_l1.saturating_add(edge.hits_l2);
    let mut out = hit_table(
        "TIER",
        [
            ("L1".to_string(), edge.hits_l1, l1_misses),
            ("L2".to_string(), edge.hits_l2, edge.misses),
            ("all".to_string(), all_hits, edge.misses),
        ],
    );
    let _ = writeln!(
        out,
        "stale {}  bypass {}  coalesced {}",
        edge.stale, edge.bypass, edge.coalesced
    );
    if let Some(l1) = &edge.l1 {
        let _ = writeln!(
            out,
            "L1 memory: {} entries, {} of {}, {} evictions",
            l1.entries,
            bytes(l1.bytes),
            bytes(l1.max_bytes),
            l1.evictions
        );
    }
    out
}

/// A table of `(name, hits, misses)` rows with their hit ratios; `first` heads the names.
fn hit_table(first: &str, rows: impl IntoIterator<Item = (String, u64, u64)>) -> String {
    let mut table = Table::new(&[first, "HITS", "MISSES", "HIT RATIO"]);
    for (name, hits, misses) in rows {
        table.row(vec![
            name,
            hits.to_string(),
            misses.to_string(),
            ratio(hits, misses),
        ]);
    }
    table.render()
}

/// Each table coordinator, with how long its writes took to reach the answering isolate's view
/// (invalidation lag) and how often that view was refreshed from the data centre's relay; then
/// the rehydrates pending across them.
fn coordinators(
    coordinators: &BTreeMap<String, CoordinatorStats>,
    views: &BTreeMap<String, LagSummary>,
) -> String {
    let mut out = String::new();
    if coordinators.is_empty() {
        out.push_str("no coordinators yet\n");
    } else {
        let mut table = Table::new(&[
            "TABLE",
            "SEQ",
            "KEYS",
            "PENDING REHYDRATES",
            "LAG P50",
            "LAG P99",
            "RELAY",
        ]);
        for (name, c) in coordinators {
            let view = views.get(name).cloned().unwrap_or_default();
            let (p50, p99) = match view.samples {
                0 => ("-".to_string(), "-".to_string()),
                _ => (format!("{} ms", view.p50_ms), format!("{} ms", view.p99_ms)),
            };
            table.row(vec![
                name.clone(),
                c.seq.to_string(),
                c.keys.to_string(),
                c.pending_rehydrates.to_string(),
                p50,
                p99,
                ratio(view.relay_refreshes, view.coordinator_refreshes),
            ]);
        }
        out.push_str(&table.render());
    }
    let pending: u64 = coordinators.values().map(|c| c.pending_rehydrates).sum();
    let _ = writeln!(out, "pending rehydrates: {pending}");
    out
}

/// `hits / (hits + misses)` as a percentage, `-` when there were no lookups.
fn ratio(hits: u64, misses: u64) -> String {
    let total = hits.saturating_add(misses);
    if total == 0 {
        "-".to_string()
    } else {
        // Counters stay far below 2^52, so the conversion to f64 is exact.
        format!("{:.1}%", hits as f64 * 100.0 / total as f64)
    }
}

/// Bytes in binary units, one decimal.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = "B";
    for next in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_explained_write_lists_each_key_with_its_action_and_reason() {
        let answer: ExplainResponse = serde_json::from_value(json!({
            "before": {"id": "1", "city": "Lima"},
            "after": {"id": "1"},
            "unpredictable": ["city"],
            "keys": [
                {"key": "acme:/v1/users/1", "action": "refresh", "reason": "record_written"},
                {"key": "acme:/v1/users?limit=5&order=-id", "action": "invalidate", "reason": "shifts_page"},
                {"key": "acme:/v1/users?city=Oslo", "action": "spare", "reason": "filters_exclude_row"}
            ],
            "truncated": true
        }))
        .unwrap();
        assert_eq!(
            explained("PATCH", "/v1/users/1", &answer),
            "PATCH /v1/users/1 (not written) would invalidate 1, refresh 1 and spare 1+ cached keys\n\
             the database decides city (planned as unknown)\n\
             ACTION      KEY                               REASON\n\
             refresh     acme:/v1/users/1                  record_written\n\
             invalidate  acme:/v1/users?limit=5&order=-id  shifts_page\n\
             spare       acme:/v1/users?city=Oslo          filters_exclude_row\n\
             (more spared keys not listed)\n"
        );
    }

    fn tenant_json() -> Tenant {
        serde_json::from_value(json!({
            "name": "acme",
            "origin": {"kind": "http", "base_url": "https://api.example.com",
                       "headers": [{"name": "x-origin-key", "value": "[redacted]"},
                                   {"name": "authorization", "value": "[redacted]"}]},
            "access": {"private_reads": true, "require_write_key": true,
                       "forward_headers": ["x-tenant-id"]},
            "rules": [
                {"pattern": "/v1/users*", "ttl_secs": 3600, "no_store": false,
                 "max_staleness_ms": 500, "rehydrate": true},
                {"pattern": "/v1/admin*", "no_store": true}
            ],
            "views": {"usersWithOrders": ["users", "orders"]},
            "created_at": "2026-11-25T12:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn renders_a_tenant() {
        assert_eq!(
            tenant(&tenant_json()),
            "name:     acme\n\
             origin:   http https://api.example.com\n\
             \x20         x-origin-key: [redacted]\n\
             \x20         authorization: [redacted]\n\
             created:  2026-11-25T12:00:00Z\n\
             reads:    key required (read or write scope)\n\
             writes:   write key required (x-edgecache-key), then the origin's own auth\n\
             forward:  authorization, cookie, x-tenant-id (on writes)\n\
             tables:   none known yet (learned when the origin answers a read with a 2xx)\n\
             \n\
             PATTERN     TTL      STORE  MAX STALENESS  REHYDRATE  VARY BY\n\
             /v1/users*  1h       yes    500ms          yes        -\n\
             /v1/admin*  default  no     default        default    -\n\
             \n\
             VIEW             TABLES\n\
             usersWithOrders  users, orders\n"
        );
    }

    #[test]
    fn renders_access_of_d1_and_default_http_tenants() {
        let d1: Tenant =
            serde_json::from_value(json!({"name": "globex", "origin": {"kind": "d1"}})).unwrap();
        assert!(tenant(&d1).starts_with(
            "name:     globex\n\
             origin:   d1\n\
             reads:    public\n\
             writes:   write key required\n\
             \n"
        ));
        let http: Tenant = serde_json::from_value(json!({
            "name": "initech",
            "origin": {"kind": "http", "base_url": "https://api.example.com"},
            "access": {"private_reads": false}
        }))
        .unwrap();
        assert!(tenant(&http).starts_with(
            "name:     initech\n\
             origin:   http https://api.example.com\n\
             reads:    public\n\
             writes:   left to the origin's own auth\n\
             forward:  authorization, cookie (on writes)\n\
             tables:   none known yet (learned when the origin answers a read with a 2xx)\n\
             \n"
        ));
    }

    #[test]
    fn origin_header_values_are_never_printed() {
        // A server that (wrongly) sent a value: the rendering still shows only the name.
        let leaky: Tenant = serde_json::from_value(json!({
            "name": "acme",
            "origin": {"kind": "http", "base_url": "https://api.example.com",
                       "headers": [{"name": "x-origin-key", "value": "s3cr3t"}]}
        }))
        .unwrap();
        let created = CreatedTenant {
            tenant: leaky.clone(),
            admin_token: "eca_1".into(),
            webhook_secret: "ecw_1".into(),
        };
        for text in [
            tenant(&leaky),
            updated_tenant(&leaky),
            created_tenant(&created),
            tenant_list(std::slice::from_ref(&leaky)),
        ] {
            assert!(!text.contains("s3cr3t"), "{text}");
        }
        assert!(tenant(&leaky).contains("          x-origin-key: [redacted]\n"));
    }

    #[test]
    fn renders_a_created_tenant_with_its_secrets_and_access() {
        let created: CreatedTenant = serde_json::from_value(json!({
            "tenant": {"name": "acme", "origin": {"kind": "d1"},
                       "access": {"private_reads": true}},
            "admin_token": "eca_abc", "webhook_secret": "ecw_def"
        }))
        .unwrap();
        assert_eq!(
            created_tenant(&created),
            "created tenant 'acme'\n\
             admin token:     eca_abc\n\
             webhook secret:  ecw_def\n\
             \n\
             name:     acme\n\
             origin:   d1\n\
             reads:    key required (read or write scope)\n\
             writes:   write key required\n"
        );
    }

    #[test]
    fn renders_keys() {
        let created: CreatedKey = serde_json::from_value(json!({
            "name": "ci", "scope": "write", "created_at": "2026-01-01T00:00:00Z",
            "key": "eck_0123"
        }))
        .unwrap();
        let text = created_key("acme", &created);
        assert!(
            text.starts_with("created write key 'ci' for tenant 'acme'\nkey:  eck_0123\n"),
            "{text}"
        );
        let list: crate::model::KeyList = serde_json::from_value(json!({"keys": [
            {"name": "ci", "scope": "write", "created_at": "2026-01-01T00:00:00Z",
             "last_used_at": "2026-01-02T10:11:00Z"},
            {"name": "dashboard", "scope": "read", "created_at": "2026-01-03T00:00:00Z"}
        ]}))
        .unwrap();
        assert_eq!(
            keys("acme", &list.keys),
            "NAME       SCOPE  CREATED               LAST USED\n\
             ci         write  2026-01-01T00:00:00Z  2026-01-02T10:11:00Z\n\
             dashboard  read   2026-01-03T00:00:00Z  never\n"
        );
        assert!(keys("acme", &[]).contains("edgecache keys create"));
    }

    #[test]
    fn renders_tenant_lists() {
        let d1: Tenant =
            serde_json::from_value(json!({"name": "globex", "origin": {"kind": "d1"}})).unwrap();
        assert_eq!(
            tenant_list(&[tenant_json(), d1]),
            "NAME    ORIGIN                        RULES  CREATED\n\
             acme    http https://api.example.com  2      2026-11-25T12:00:00Z\n\
             globex  d1                            0      -\n"
        );
        assert!(tenant_list(&[]).contains("edgecache tenant create"));
    }

    #[test]
    fn renders_invalidations() {
        let answer: InvalidationResult = serde_json::from_value(json!({
            "invalidated": [{"key": "acme:/v1/users?limit=10", "reason": "manual"}],
            "seqs": {"users": 19, "orders": 4}
        }))
        .unwrap();
        assert_eq!(
            invalidated(&answer),
            "invalidated 1 key\n\
             KEY                      REASON\n\
             acme:/v1/users?limit=10  manual\n\
             seqs: orders=4 users=19\n"
        );
        let none: InvalidationResult = serde_json::from_value(json!({})).unwrap();
        assert!(invalidated(&none).starts_with("no cached keys matched"));
    }

    #[test]
    fn renders_deps() {
        let cached: KeyDeps = serde_json::from_value(json!({
            "key": "acme:/v1/users?limit=10",
            "entry": {"tables": {"users": 17}, "records": ["users:123-abc"],
                      "kind": "list", "route": "/v1/users?limit=10"}
        }))
        .unwrap();
        let text = key_deps(&cached);
        assert!(
            text.contains("tables:   users (filled at seq 17)\n"),
            "{text}"
        );
        assert!(text.contains("records:  users:123-abc\n"), "{text}");
        assert!(text.contains("kind:     list\n"), "{text}");
        let uncached: KeyDeps =
            serde_json::from_value(json!({"key": "acme:/v1/x", "entry": null})).unwrap();
        assert!(key_deps(&uncached).contains("not cached"));

        let record: RecordDeps = serde_json::from_value(
            json!({"record": "users:1", "keys": ["acme:/v1/users/1", "acme:/v1/users"]}),
        )
        .unwrap();
        assert_eq!(
            record_deps(&record),
            "2 cached keys contain users:1; writing it purges:\n  acme:/v1/users/1\n  acme:/v1/users\n"
        );
    }

    #[test]
    fn renders_stats_with_ratios() {
        let answer: Stats = serde_json::from_value(json!({
            "edge": {"hits_l1": 6, "hits_l2": 2, "misses": 2, "stale": 1, "bypass": 3,
                     "coalesced": 4,
                     "l1": {"entries": 10, "bytes": 1536, "max_bytes": 33554432, "evictions": 0},
                     "routes": {"/v1/users": {"hits": 3, "misses": 1},
                                "/v1/orders": {"hits": 0, "misses": 0}}},
            "coordinators": {"users": {"seq": 17, "keys": 120, "pending_rehydrates": 2},
                             "orders": {"seq": 4, "keys": 3, "pending_rehydrates": 1}},
            "views": {"users": {"samples": 40, "p50_ms": 12, "p99_ms": 480,
                                "relay_refreshes": 3, "coordinator_refreshes": 1}}
        }))
        .unwrap();
        assert_eq!(
            stats("acme", &answer),
            "tenant acme\n\
             \n\
             TIER  HITS  MISSES  HIT RATIO\n\
             L1    6     4       60.0%\n\
             L2    2     2       50.0%\n\
             all   8     2       80.0%\n\
             stale 1  bypass 3  coalesced 4\n\
             L1 memory: 10 entries, 1.5 KiB of 32.0 MiB, 0 evictions\n\
             \n\
             ROUTE       HITS  MISSES  HIT RATIO\n\
             /v1/orders  0     0       -\n\
             /v1/users   3     1       75.0%\n\
             \n\
             TABLE   SEQ  KEYS  PENDING REHYDRATES  LAG P50  LAG P99  RELAY\n\
             orders  4    3     1                   -        -        -\n\
             users   17   120   2                   12 ms    480 ms   75.0%\n\
             pending rehydrates: 3\n"
        );
    }

    #[test]
    fn renders_empty_stats() {
        let text = stats("acme", &Stats::default());
        assert!(text.contains("all   0     0       -"), "{text}");
        assert!(text.contains("no route traffic yet"));
        assert!(text.contains("pending rehydrates: 0"));
    }

    #[test]
    fn formats_bytes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(32 * 1024 * 1024), "32.0 MiB");
    }

    #[test]
    fn whoami_lines() {
        let op = Whoami {
            role: "operator".into(),
            tenant: None,
        };
        assert_eq!(
            whoami("http://x", &op),
            "logged in to http://x as the operator\n"
        );
        let t = Whoami {
            role: "tenant".into(),
            tenant: Some("acme".into()),
        };
        assert!(whoami("http://x", &t).contains("tenant 'acme'"));
    }
}
