//! Shadow verification and learned dependencies in the coordinator (the statistics and the
//! inference are `edgecache_core::shadow` and `edgecache_core::learned_rules`).
//!
//! * After a write of its own table, the coordinator queues checks of a sample of the keys the
//!   write invalidated and of those it kept (`queue_own_checks`, in the write's synchronous
//!   step, while the invalidated keys' registrations and digests are still there).
//! * The coordinator of the written table then tells the tenant's other tables' coordinators
//!   (`POST /observe`): each applies the learned rules that reach its keys (invalidating them at
//!   its own seq, so its readers' views and tokens see it) and queues checks of a sample of its
//!   kept keys, those the write's images point at first.
//! * The alarm refetches queued checks within the tenant's shadow budget (`shadow_checks`),
//!   counts them per (write pattern, key pattern), invalidates a kept key found changed at once,
//!   keeps a fresh refetch of an invalidated key (it doubles as its refill), and counts evidence
//!   for dependency hypotheses; a hypothesis with enough evidence becomes a rule.

use serde::{Deserialize, Serialize};

use super::answer_through::compare_refetch;
use super::graph::Graph;
use super::invalidate::invalidate;
use super::object::{TableCoordinator, MAX_KNOWN_TENANTS};
use super::semantics::{self, RevokeReason};
use super::store::{Store, StoreError};
use super::write::StepContext;
use crate::runtime::platform::now_ms;
use edgecache_core::key::CacheKey;
use edgecache_core::learned_rules::{action, evidence, Observation, RuleAction};
use edgecache_core::planner::{InvalidationPlan, InvalidationReason, WriteImages};
use edgecache_core::protocol::{
    CandidateView, Dependent, InvalidateRequest, LearnContext, ObserveRequest, ObserveResponse,
    PatternCounts, Registration, RuleView, TableLearning, MAX_LISTED_CANDIDATES,
};
use edgecache_core::ratelimit::{Limit, RateLimiter, Verdict};
use edgecache_core::schema::Relation;
use edgecache_core::shadow::{
    choose_sample, key_pattern, sample_offsets, Found, Planned, ShadowCounts,
};
use edgecache_core::{ApiError, Row};

/// Shadow checks run per alarm.
const SHADOW_BATCH: usize = 8;

/// One queued shadow check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowJob {
    /// The key to refetch.
    pub key: String,
    /// Its cached copy's digest when the write was planned.
    pub digest: String,
    /// What the write's plan did to it.
    pub planned: Planned,
    /// The written table.
    pub write_table: String,
    /// The write's route pattern.
    pub write_pattern: String,
    /// The key's pattern.
    pub key_pattern: String,
    /// The write's images (for dependency evidence).
    pub before: Option<Row>,
    /// The write's after image.
    pub after: Option<Row>,
    /// Records of this table the cached copy contained.
    pub records: Vec<String>,
    /// Whether the key is a single record's.
    pub is_record_key: bool,
    /// How many keys of its population (kept or invalidated by that write) it stands for.
    pub weight: u64,
    /// Count dependency evidence (a write of another table, learning not frozen).
    pub learn: bool,
    /// TTL for a refetched copy, where the key is refilled after invalidation.
    pub refill_ttl_secs: Option<u64>,
    /// The table's `writes_mark` once the write was recorded: if another write came after,
    /// a change the check finds is not evidence about this one.
    pub mark: (u64, u64),
}

/// The write a check is about.
pub struct SeenWrite<'a> {
    /// The written table.
    pub table: &'a str,
    /// Its route pattern.
    pub pattern: &'a str,
    /// The images.
    pub before: Option<&'a Row>,
    /// The after image.
    pub after: Option<&'a Row>,
    /// Count dependency evidence from the checks.
    pub learn: bool,
    /// The table's `writes_mark` with this write counted.
    pub mark: (u64, u64),
}

impl<'a> SeenWrite<'a> {
    /// A write of this coordinator's own table (its checks teach no dependency).
    fn own(images: &'a WriteImages, pattern: &'a str, mark: (u64, u64)) -> Self {
        SeenWrite {
            table: &images.table,
            pattern,
            before: images.before.as_ref(),
            after: images.after.as_ref(),
            learn: false,
            mark,
        }
    }
}

impl ShadowJob {
    /// A check of `reg`'s key; `None` for a key without a digest (registered before digests
    /// were recorded) or a variant (a refetch has no user's headers).
    fn of(
        reg: &Registration,
        planned: Planned,
        write: &SeenWrite<'_>,
        weight: u64,
    ) -> Option<Self> {
        let key = CacheKey::parse(&reg.key).ok()?;
        if key.variant().is_some() {
            return None;
        }
        Some(ShadowJob {
            key: reg.key.clone(),
            digest: reg.digest.clone()?,
            planned,
            write_table: write.table.to_string(),
            write_pattern: write.pattern.to_string(),
            key_pattern: key_pattern(key.path_and_query()),
            before: write.before.cloned(),
            after: write.after.cloned(),
            records: reg.records.clone(),
            is_record_key: reg.dependent == Dependent::Record,
            weight,
            learn: write.learn,
            refill_ttl_secs: reg.refills().then_some(reg.ttl_secs),
            mark: write.mark,
        })
    }
}

/// Queues `jobs` due now; answers how many.
fn enqueue<S: Store>(
    graph: &Graph<S>,
    jobs: Vec<ShadowJob>,
    now: u64,
) -> Result<usize, StoreError> {
    let n = jobs.len();
    for job in jobs {
        let json = serde_json::to_string(&job).map_err(|e| StoreError(e.to_string()))?;
        graph.enqueue_shadow(&json, now)?;
    }
    Ok(n)
}

/// Up to `n` of the tenant's registered keys outside `exclude`, drawn uniformly (seeded), and
/// how many keys that draw was made from.
fn sample_kept<S: Store>(
    graph: &Graph<S>,
    tenant: &str,
    exclude: &[String],
    n: usize,
    seed: u64,
) -> Result<(Vec<Registration>, u64), StoreError> {
    let prefix = format!("{tenant}:");
    let total = graph.count_keys(&prefix)?;
    let mut out = Vec::new();
    for offset in sample_offsets(total, n + exclude.len().min(n), seed) {
        if out.len() >= n {
            break;
        }
        if let Some(reg) = graph.key_at(&prefix, offset)? {
            if !exclude.contains(&reg.key) {
                out.push(reg);
            }
        }
    }
    let population = total.saturating_sub(exclude.len() as u64);
    Ok((out, population))
}

/// The weight of each of `sampled` checks drawn from `population` keys.
fn weight(population: u64, sampled: usize) -> u64 {
    match sampled {
        0 => 0,
        n => population.div_ceil(n as u64),
    }
}

/// After a write of the coordinator's own table, before it is recorded: queues checks of up to
/// `n` of `tenant`'s keys, half (rounded up) among those `plan` invalidates, the rest among
/// those it keeps. Answers how many were queued.
pub fn queue_own_checks<S: Store>(
    graph: &Graph<S>,
    (images, pattern): (&WriteImages, &str),
    plan: &InvalidationPlan,
    tenant: &str,
    n: usize,
    (seed, now): (u64, u64),
) -> Result<usize, StoreError> {
    if n == 0 {
        return Ok(0);
    }
    let prefix = format!("{tenant}:");
    let invalidated: Vec<String> = plan
        .entries
        .iter()
        .map(|e| e.key.as_str().to_string())
        .filter(|k| k.starts_with(&prefix))
        .collect();
    // Queued before `record` logs the write at the next seq.
    let (_, foreign) = graph.writes_mark()?;
    let write = SeenWrite::own(images, pattern, (graph.seq()? + 1, foreign));
    let chosen = choose_sample(&invalidated, &[], n.div_ceil(2), seed);
    let mut jobs = Vec::new();
    let w = weight(invalidated.len() as u64, chosen.len());
    for key in &chosen {
        if let Some(reg) = graph.registration(key)? {
            jobs.extend(ShadowJob::of(&reg, Planned::Invalidated, &write, w));
        }
    }
    let (kept, population) = sample_kept(graph, tenant, &invalidated, n - chosen.len(), seed)?;
    let w = weight(population, kept.len());
    jobs.extend(
        kept.iter()
            .filter_map(|reg| ShadowJob::of(reg, Planned::Kept, &write, w)),
    );
    enqueue(graph, jobs, now)
}

/// After a write of route `pattern` with `images` was written through from its answer
/// (`answer_through`): queues a check of each of `regs`, the rebuilt copies, as kept keys (a
/// copy found changed is a recall miss and is invalidated at once); the refetch is also
/// compared with the answer, which verifies the route's hypothesis. Answers how many.
pub fn queue_verification<S: Store>(
    graph: &Graph<S>,
    regs: &[Registration],
    (images, pattern): (&WriteImages, &str),
    now: u64,
) -> Result<usize, StoreError> {
    let write = SeenWrite::own(images, pattern, graph.writes_mark()?);
    let jobs = regs
        .iter()
        .filter_map(|reg| ShadowJob::of(reg, Planned::Kept, &write, 1))
        .collect();
    enqueue(graph, jobs, now)
}

/// `POST /observe` of `tenant`, one synchronous step: applies the learned rules the write
/// reaches (each at one new seq of this table, reason `learned`), then, unless the tenant's
/// learning is frozen, queues checks of up to `n` of the tenant's keys: those the write's
/// images point at first (whatever the rules did to them), then a uniform draw of the rest.
pub fn observe<S: Store>(
    graph: &Graph<S>,
    req: &ObserveRequest,
    tenant: &str,
    n: usize,
    ctx: StepContext,
) -> Result<ObserveResponse, StoreError> {
    let (before, after) = (req.before.as_ref(), req.after.as_ref());
    let mut resp = ObserveResponse::default();
    graph.note_foreign_write()?;
    let mut invalidated_keys: Vec<String> = Vec::new();
    // Registrations are forgotten when invalidated: keep those a check may need.
    let mut pointed: Vec<Registration> = Vec::new();
    for (_, value) in edgecache_core::learned_rules::bindings(before, after) {
        for key in graph.keys_for_record(&value)? {
            if key.starts_with(&format!("{tenant}:")) && !pointed.iter().any(|r| r.key == key) {
                pointed.extend(graph.registration(&key)?);
            }
        }
    }
    for rule in graph.rules()? {
        let d = &rule.dependency;
        if d.write_table != req.write_table || d.write_pattern != req.write_pattern {
            continue;
        }
        let target = match action(d, before, after) {
            Some(RuleAction::Record(id)) if !graph.keys_for_record(&id)?.is_empty() => {
                InvalidateRequest {
                    records: vec![id],
                    ..InvalidateRequest::default()
                }
            }
            Some(RuleAction::Table) if graph.count_keys("")? > 0 => InvalidateRequest {
                all: true,
                ..InvalidateRequest::default()
            },
            _ => continue,
        };
        let done = invalidate(
            graph,
            &target,
            ctx,
            InvalidationReason::Learned { rule: rule.id },
        )?;
        resp.seq = Some(done.seq);
        resp.invalidated += done.invalidated.len();
        invalidated_keys.extend(done.invalidated.into_iter().map(|i| i.key));
    }
    if n == 0 || req.learning.frozen {
        return Ok(resp);
    }
    let write = SeenWrite {
        table: &req.write_table,
        pattern: &req.write_pattern,
        before,
        after,
        learn: true,
        mark: graph.writes_mark()?,
    };
    let planned = |key: &str| match invalidated_keys.iter().any(|k| k == key) {
        true => Planned::Invalidated,
        false => Planned::Kept,
    };
    let mut jobs: Vec<ShadowJob> = pointed
        .iter()
        .take(n)
        .filter_map(|reg| ShadowJob::of(reg, planned(&reg.key), &write, 1))
        .collect();
    let mut exclude: Vec<String> = pointed.iter().map(|r| r.key.clone()).collect();
    exclude.extend(invalidated_keys.iter().cloned());
    let (kept, population) = sample_kept(
        graph,
        tenant,
        &exclude,
        n.saturating_sub(jobs.len()),
        req.seed,
    )?;
    let w = weight(population, kept.len());
    jobs.extend(
        kept.iter()
            .filter_map(|reg| ShadowJob::of(reg, Planned::Kept, &write, w)),
    );
    resp.checks = enqueue(graph, jobs, ctx.now_ms)?;
    Ok(resp)
}

/// What settling a check asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCheck {
    /// Nothing more.
    Done,
    /// Keep the refetched copy (a fresh copy of an invalidated key: its refill).
    KeepCopy {
        /// Its TTL.
        ttl_secs: u64,
    },
}

/// Settles a check whose refetch has digest `fetched` (`None`: the origin's answer could not
/// be compared, so nothing is counted): counts it; invalidates a kept key still registered
/// with another digest (its copy is stale: reason `shadow_changed`); where no other write
/// came since (the table's `writes_mark` has not moved), counts dependency evidence and
/// learns the hypotheses it makes ripe.
pub fn settle_check<S: Store>(
    graph: &Graph<S>,
    table: &str,
    job: &ShadowJob,
    fetched: Option<&str>,
    ctx: StepContext,
) -> Result<AfterCheck, StoreError> {
    let Some(fetched) = fetched else {
        return Ok(AfterCheck::Done);
    };
    let found = match fetched == job.digest {
        true => Found::Same,
        false => Found::Changed,
    };
    graph.count_shadow(
        &job.write_pattern,
        &job.key_pattern,
        job.planned,
        found,
        job.weight,
    )?;
    // Evidence only where no other write came between the write and the check.
    if job.learn && job.write_table != table && graph.writes_mark()? == job.mark {
        let obs = Observation {
            write_table: &job.write_table,
            write_pattern: &job.write_pattern,
            target_table: table,
            before: job.before.as_ref(),
            after: job.after.as_ref(),
            key_records: &job.records,
            is_record_key: job.is_record_key,
            found,
        };
        for (dependency, verdict) in evidence(&obs) {
            let e = graph.count_evidence(&dependency, verdict, ctx.now_ms)?;
            if e.is_ripe() && graph.add_rule(&dependency, e, ctx.now_ms)?.is_some() {
                continue;
            }
            graph.update_rule_evidence(&dependency, e)?;
        }
    }
    match (job.planned, found) {
        (Planned::Kept, Found::Changed) => {
            let current = graph.registration(&job.key)?;
            if current.is_some_and(|reg| reg.digest.as_deref() != Some(fetched)) {
                let req = InvalidateRequest {
                    keys: vec![job.key.clone()],
                    ..InvalidateRequest::default()
                };
                invalidate(graph, &req, ctx, InvalidationReason::ShadowChanged)?;
                // A kept list that changed may have been kept under learned semantics: those
                // are wrong somewhere, so the route loses them and every key kept under them.
                if let Some(route) = semantics::route_of(&job.key) {
                    semantics::revoke(graph, &route, RevokeReason::ShadowMiss)?;
                }
            }
            Ok(AfterCheck::Done)
        }
        (Planned::Invalidated, _) => match job.refill_ttl_secs {
            Some(ttl_secs) if graph.registration(&job.key)?.is_none() => {
                Ok(AfterCheck::KeepCopy { ttl_secs })
            }
            _ => Ok(AfterCheck::Done),
        },
        (Planned::Kept, Found::Same) => Ok(AfterCheck::Done),
    }
}

/// What this coordinator has learned, for `learn status`.
pub fn table_learning<S: Store>(
    graph: &Graph<S>,
    table: &str,
) -> Result<TableLearning, StoreError> {
    let mut totals = ShadowCounts::default();
    let mut patterns = Vec::new();
    for (write_pattern, key_pattern, counts) in graph.shadow_counts()? {
        totals.add(&counts);
        patterns.push(PatternCounts::new(&write_pattern, &key_pattern, counts));
    }
    let mut shadow = vec![PatternCounts::new("*", "*", totals)];
    shadow.extend(patterns);
    let rules: Vec<RuleView> = graph
        .rules()?
        .into_iter()
        .map(|learned| RuleView {
            id: format!("{table}:{}", learned.id),
            rule: learned.dependency.to_string(),
            learned,
        })
        .collect();
    let mut candidates: Vec<CandidateView> = graph
        .candidates()?
        .into_iter()
        .map(|(d, evidence)| CandidateView::new(table, &d, evidence))
        .collect();
    candidates.sort_by(|a, b| (b.evidence.support, &a.rule).cmp(&(a.evidence.support, &b.rule)));
    candidates.truncate(MAX_LISTED_CANDIDATES);
    Ok(TableLearning {
        table: table.to_string(),
        shadow,
        rules,
        candidates,
        hypotheses: semantics::hypotheses(graph, table)?,
        pending_checks: graph.pending_shadow()?,
    })
}

impl TableCoordinator {
    /// How many of `wanted` shadow checks `tenant`'s budget allows now (per tenant per second,
    /// `EDGECACHE_SHADOW_PER_SEC`; apart from refills), capped per write
    /// (`EDGECACHE_SHADOW_PER_WRITE`).
    pub(super) fn shadow_allowance(&self, tenant: &str) -> Result<usize, ApiError> {
        let wanted = usize::try_from(self.config()?.shadow_per_write).unwrap_or(usize::MAX);
        self.shadow_draw(tenant, wanted)
    }

    /// How many of `wanted` shadow checks `tenant`'s per-second budget allows now.
    pub(super) fn shadow_draw(&self, tenant: &str, wanted: usize) -> Result<usize, ApiError> {
        let config = self.config()?;
        let now = now_ms();
        let mut budget = self.shadow_budget.borrow_mut();
        let budget = budget.get_or_insert_with(|| {
            RateLimiter::new(
                Limit {
                    max: u32::try_from(config.shadow_per_sec).unwrap_or(u32::MAX),
                    window_ms: 1_000,
                },
                MAX_KNOWN_TENANTS,
            )
        });
        let mut allowed = 0;
        while allowed < wanted && budget.check(tenant, now) == Verdict::Allowed {
            allowed += 1;
        }
        Ok(allowed)
    }

    /// `POST /observe` from the coordinator of another table of `tenant`.
    pub(super) async fn observe(
        &self,
        graph: &Graph<worker::SqlStorage>,
        req: ObserveRequest,
        tenant: &str,
    ) -> Result<ObserveResponse, ApiError> {
        let ctx = StepContext {
            now_ms: now_ms(),
            log_limit: self.config()?.invalidation_log,
        };
        let n = self.shadow_allowance(tenant)?;
        let resp = observe(graph, &req, tenant, n, ctx)?;
        self.schedule_rehydrate(graph).await?;
        Ok(resp)
    }

    /// Tells the tenant's other tables' coordinators of a recorded write (`/observe`); answers
    /// the seq of each whose learned rules invalidated something. Best effort: a coordinator
    /// that cannot be reached only misses this write's checks and rules.
    pub(super) async fn tell_siblings(
        &self,
        learn: &LearnContext,
        (tenant, origin): (&str, &edgecache_core::protocol::OriginConfig),
        images: &WriteImages,
        (pattern, seq): (&str, u64),
    ) -> std::collections::BTreeMap<String, u64> {
        let mut related = std::collections::BTreeMap::new();
        let Some(id) = self.id() else {
            return related;
        };
        let req = ObserveRequest {
            write_table: images.table.clone(),
            write_pattern: pattern.to_string(),
            before: images.before.clone(),
            after: images.after.clone(),
            learning: learn.learning,
            seed: seq,
        };
        // All siblings at once: a write waits for the slowest, not for the sum.
        let siblings = learn.siblings.iter().filter(|t| **t != images.table);
        let told = futures_util::future::join_all(siblings.map(|table| {
            let sibling = edgecache_core::CoordinatorId::new(&id.source(), table);
            let client =
                super::client::Coordinator::of(&self.env, &sibling).for_tenant(tenant, origin);
            let req = &req;
            async move { (table, client.observe(req).await) }
        }))
        .await;
        for (table, answer) in told {
            match answer {
                Ok(ObserveResponse { seq: Some(seq), .. }) => {
                    related.insert(table.clone(), seq);
                }
                Ok(_) => {}
                Err(e) => worker::console_warn!("observe {table}: {} {}", e.code, e.message),
            }
        }
        related
    }

    /// The alarm's shadow checks: up to [`SHADOW_BATCH`] due ones, one at a time.
    pub(super) async fn shadow_checks(&self, relation: &Relation) -> Result<(), ApiError> {
        let due = self.graph()?.due_shadow(now_ms(), SHADOW_BATCH)?;
        for stored in due {
            // Dropped once settled (or found uncheckable), so a pending count of zero means
            // every check's outcome is recorded.
            let outcome = self.shadow_check(relation, &stored.job).await;
            self.graph()?.finish_shadow(stored.id as u64)?;
            outcome?;
        }
        Ok(())
    }

    /// One check: refetch (stamp first), compare, settle, and keep a fresh copy of an
    /// invalidated key as its refill. An unreadable job, a key this object cannot refetch or
    /// an unreachable origin says nothing about the plan, so it is not counted.
    async fn shadow_check(&self, relation: &Relation, job: &str) -> Result<(), ApiError> {
        let Ok(job) = serde_json::from_str::<ShadowJob>(job) else {
            return Ok(());
        };
        let Ok(key) = CacheKey::parse(&job.key) else {
            return Ok(());
        };
        let Some(source) = self.refetchable(relation, &key)? else {
            return Ok(());
        };
        let Ok(fetched) = self.read_fresh(relation, &key, source).await else {
            return Ok(());
        };
        let digest = fetched.checked_digest();
        let ctx = StepContext {
            now_ms: now_ms(),
            log_limit: self.config()?.invalidation_log,
        };
        let graph = self.graph()?;
        compare_refetch(
            &graph,
            &job.key,
            fetched.own_stamp(),
            digest.as_deref(),
            ctx.now_ms,
        )?;
        let after = settle_check(&graph, &relation.name, &job, digest.as_deref(), ctx)?;
        if let AfterCheck::KeepCopy { ttl_secs } = after {
            self.keep_copy(relation, &key, fetched, ttl_secs).await?;
            self.graph()?.finish_rehydrate(&job.key)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::coordinator::fixtures::{ctx, graph, registration, row, user_reg, BORN};
    use edgecache_core::protocol::Learning;

    fn order_for(user: &str) -> ObserveRequest {
        ObserveRequest {
            write_table: "orders".into(),
            write_pattern: "POST /v1/orders".into(),
            before: None,
            after: Some(row(json!({"id": "o1", "userId": user}))),
            learning: Learning::default(),
            seed: 7,
        }
    }

    fn jobs<S: Store>(g: &Graph<S>) -> Vec<ShadowJob> {
        g.due_shadow(u64::MAX >> 12, 100)
            .unwrap()
            .iter()
            .map(|j| serde_json::from_str(&j.job).unwrap())
            .collect()
    }

    #[test]
    fn a_foreign_write_checks_the_keys_its_images_point_at_first() {
        let g = graph();
        for id in ["1", "2", "3", "4", "5"] {
            g.register(&user_reg(id, "Ann", BORN)).unwrap();
        }
        let resp = observe(&g, &order_for("4"), "acme", 2, ctx(1000)).unwrap();
        assert_eq!((resp.seq, resp.checks), (None, 2));
        let queued = jobs(&g);
        assert_eq!(queued[0].key, user_reg("4", "Ann", BORN).key);
        assert!(queued.iter().all(|j| j.planned == Planned::Kept && j.learn));
        assert_ne!(queued[1].key, queued[0].key);
    }

    #[test]
    fn three_changed_checks_learn_the_binding_and_it_then_invalidates() {
        let g = graph();
        for id in ["1", "2", "3"] {
            g.register(&user_reg(id, "Ann", BORN)).unwrap();
        }
        for id in ["1", "2", "3"] {
            observe(&g, &order_for(id), "acme", 1, ctx(1000)).unwrap();
            for stored in g.due_shadow(u64::MAX >> 12, 10).unwrap() {
                let job: ShadowJob = serde_json::from_str(&stored.job).unwrap();
                // The origin bumped the user's order count: the pointed-at user changed.
                settle_check(&g, "users", &job, Some("changed"), ctx(2000)).unwrap();
                g.finish_shadow(stored.id as u64).unwrap();
            }
        }
        let learned = table_learning(&g, "users").unwrap();
        let rules: Vec<&str> = learned.rules.iter().map(|r| r.rule.as_str()).collect();
        assert_eq!(rules, ["POST /v1/orders -> /v1/users/{after.userId}"]);
        // Each kept key found changed was invalidated at once.
        assert_eq!(g.counts().unwrap().0, 0);
        let totals = &learned.shadow[0].counts;
        assert_eq!((totals.kept_changed, totals.kept_same), (3, 0));

        let ann = user_reg("1", "Ann", BORN + 10);
        g.register(&ann).unwrap();
        let resp = observe(&g, &order_for("1"), "acme", 0, ctx(3000)).unwrap();
        assert_eq!(resp.invalidated, 1);
        let (_, reason) = g.last_invalidation(&ann.key).unwrap().unwrap();
        assert_eq!(reason, InvalidationReason::Learned { rule: 1 });
    }

    #[test]
    fn a_check_overtaken_by_another_write_is_no_evidence() {
        let g = graph();
        g.register(&user_reg("1", "Ann", BORN)).unwrap();
        observe(&g, &order_for("1"), "acme", 1, ctx(1000)).unwrap();
        let first = jobs(&g).remove(0);
        // Another order arrives before the first write's check runs.
        observe(&g, &order_for("2"), "acme", 1, ctx(1000)).unwrap();
        settle_check(&g, "users", &first, Some("changed"), ctx(2000)).unwrap();
        assert!(g.evidence().unwrap().is_empty());
        let c = &table_learning(&g, "users").unwrap().shadow[0].counts;
        assert_eq!(c.kept_changed, 1, "still counted: the copy was stale");
    }

    #[test]
    fn frozen_learning_checks_nothing_and_forget_removes_a_rule() {
        let g = graph();
        g.register(&user_reg("1", "Ann", BORN)).unwrap();
        let frozen = ObserveRequest {
            learning: Learning {
                frozen: true,
                ..Learning::default()
            },
            ..order_for("1")
        };
        let resp = observe(&g, &frozen, "acme", 3, ctx(1000)).unwrap();
        assert_eq!(resp.checks, 0);
        assert!(jobs(&g).is_empty());

        let dep = edgecache_core::learned_rules::Dependency {
            write_table: "orders".into(),
            write_pattern: "POST /v1/orders".into(),
            target_table: "users".into(),
            target: edgecache_core::learned_rules::RuleTarget::Table,
        };
        let e = g
            .count_evidence(&dep, edgecache_core::learned_rules::Verdict::Supports, 5)
            .unwrap();
        let id = g.add_rule(&dep, e, 5).unwrap().unwrap();
        assert_eq!(g.forget_rule(id).unwrap().map(|r| r.dependency), Some(dep));
        assert!(g.rules().unwrap().is_empty() && g.evidence().unwrap().is_empty());
    }

    #[test]
    fn own_writes_check_invalidated_and_kept_keys_and_keep_fresh_refetches() {
        let g = graph();
        let list = registration("/v1/users?limit=5", json!({"data": []}), BORN);
        g.register(&list).unwrap();
        for id in ["1", "2", "3"] {
            g.register(&user_reg(id, "Ann", BORN)).unwrap();
        }
        let images = WriteImages {
            table: "users".into(),
            id: "9".into(),
            id_column: "id".into(),
            before: None,
            after: Some(row(json!({"id": "9", "firstName": "Zed", "age": 3}))),
        };
        let planned = crate::coordinator::write::plan(&g, &images, &[]).unwrap();
        let n = queue_own_checks(
            &g,
            (&images, "POST /v1/users"),
            &planned,
            "acme",
            3,
            (1, 1000),
        )
        .unwrap();
        assert_eq!(n, 3);
        let queued = jobs(&g);
        assert_eq!(queued[0].key, list.key);
        assert_eq!(queued[0].planned, Planned::Invalidated);
        assert!(queued[1..]
            .iter()
            .all(|j| j.planned == Planned::Kept && !j.learn));
        g.invalidate(
            &list.key,
            BORN + 1,
            InvalidationReason::ListPredicateMatched,
        )
        .unwrap();
        let after = settle_check(&g, "users", &queued[0], Some("new"), ctx(2000)).unwrap();
        assert_eq!(
            after,
            AfterCheck::KeepCopy {
                ttl_secs: list.ttl_secs
            }
        );
        // A kept key found unchanged stays registered.
        let same = queued[1].digest.clone();
        settle_check(&g, "users", &queued[1], Some(&same), ctx(2000)).unwrap();
        assert!(g.registration(&queued[1].key).unwrap().is_some());
        let c = &table_learning(&g, "users").unwrap().shadow[0].counts;
        assert_eq!((c.invalidated_changed, c.kept_same), (1, 1));
    }
}
