//! The write path, for a group of writes (`queue`: one, or those that queued behind a batch in
//! flight), as explicit phases: **intent** (recorded for each before the origin sees any,
//! invariant 6) → **forward** (to the origin, one batch for D1, the only await) → **settle** (what the origin's
//! answer means: a refusal changes nothing, an unknown outcome invalidates everything) →
//! **plan** and **apply** (one synchronous step: bump, log, plan, invalidate, queue refills,
//! drop the intent) → **rehydrate/purge** (schedule the refills, free stale L2 copies).

use super::answer_through;
use super::graph::{Candidates, Graph};
use super::object::TableCoordinator;
use super::queue::{PendingWrite, WriteOutcome, WriteTiming};
use super::rehydrate::{page_patch, refilled_copy, PagePatch, PATCH_GRACE_MS};
use super::semantics::{self, LearnedPlanning};
use super::shadow::{queue_own_checks, queue_verification};
use super::store::{Store, StoreError};
use crate::cache::l2;
use crate::origin::d1::D1Origin;
use crate::origin::AnyOrigin;
use crate::runtime::platform::now_ms;
use edgecache_core::answer_through as answer_through_core;
use edgecache_core::entry::CachedEntry;
use edgecache_core::explain::{
    predicted_after, spare_reason, split_unpredictable, unsupported_origin,
};
use edgecache_core::fill::record_body;
use edgecache_core::key::CacheKey;
use edgecache_core::origin::{OriginError, OriginWrite, ReadTarget};
use edgecache_core::planner::{
    plan_write, InvalidationPlan, InvalidationReason, ViewChanges, ViewRead, WriteImages,
};
use edgecache_core::protocol::{
    Dependent, ExplainRequest, ExplainResponse, ExplainedKey, KeyAction, KeyReason, OriginConfig,
    Registration, StaleKey, WriteExplanation, WriteFault, WriteOp, WriteRequest, WriteResponse,
    MAX_EXPLAINED_KEYS, SLOW_FORWARD_MS,
};
use edgecache_core::route;
use edgecache_core::schema::{BoundView, Relation, Scope, ViewDecl, ViewDecls};
use edgecache_core::shadow::{body_digest, op_pattern};
use edgecache_core::shared_cache::OriginHeaders;
use edgecache_core::ApiError;
use std::collections::BTreeMap;

/// L2 copies purged after one write; the rest expire or fail validation.
const MAX_PURGE_PER_WRITE: usize = 100;

/// What one synchronous step of the coordinator needs to know besides the graph.
#[derive(Debug, Clone, Copy)]
pub struct StepContext {
    /// Now, for the refill queue's due times.
    pub now_ms: u64,
    /// Invalidations the log keeps (`Config::invalidation_log`).
    pub log_limit: u64,
}

/// A write recorded in the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// The table's seq after the write.
    pub seq: u64,
    /// How many keys the write made stale.
    pub invalidated: usize,
    /// Stale keys with no refill queued, whose L2 copies to purge (bounded).
    pub purge: Vec<CacheKey>,
    /// Each stale key, why, and whether it is refilled (at most `MAX_EXPLAINED_KEYS`).
    pub stale: Vec<StaleKey>,
    /// Record copies rebuilt from the write's after image, registered at `seq`, to store in
    /// L2 (write-through: no origin read).
    pub written_through: Vec<(CacheKey, CachedEntry)>,
    /// List pages to patch in place from their L2 copies (their refills wait meanwhile).
    pub patches: Vec<PagePatch>,
}

impl TableCoordinator {
    /// Commits a group of writes (see `queue`) in the write queue's turn, in order, and answers
    /// each writer.
    pub(super) async fn commit_group(&self, group: Vec<PendingWrite>) {
        let mut timing = WriteTiming {
            taken_ms: now_ms(),
            group: group.len(),
            ..WriteTiming::default()
        };
        let outcomes = match self.write_group(&group, &mut timing).await {
            Ok(outcomes) => outcomes,
            Err(e) => group.iter().map(|_| Err(e.clone())).collect(),
        };
        self.commits.set(self.commits.get() + 1);
        timing.answered_ms = now_ms();
        for (pending, outcome) in group.into_iter().zip(outcomes) {
            pending.answer(outcome, timing);
        }
    }

    /// The write path for a group: intents for all, one forward, then each write settled,
    /// planned and recorded in its order (one synchronous step each), then refills scheduled
    /// once. One outcome per write; `Err` when nothing of the group could start.
    async fn write_group(
        &self,
        group: &[PendingWrite],
        timing: &mut WriteTiming,
    ) -> Result<Vec<WriteOutcome>, ApiError> {
        let table = self.table()?.to_string();
        let log_limit = self.config()?.invalidation_log;
        let relation = self.relation(&table).await?;
        let mut outcomes: Vec<Option<WriteOutcome>> = group
            .iter()
            .map(|p| {
                (p.req.table != table).then(|| {
                    Err(ApiError::new(
                        400,
                        "bad_request",
                        "write sent to another table's coordinator",
                    ))
                })
            })
            .collect();
        let live: Vec<usize> = (0..group.len())
            .filter(|&i| outcomes[i].is_none())
            .collect();
        // Intent, then forward: the only await between them and the record.
        let intents = {
            let graph = self.graph()?;
            live.iter()
                .map(|&i| graph.begin_intent(group[i].req.op.id().unwrap_or("")))
                .collect::<Result<Vec<i64>, StoreError>>()?
        };
        let faulted = |fault| self.group_fault(live.iter().map(|&i| &group[i].req), fault);
        faulted(WriteFault::CrashBeforeForward)?;
        if faulted(WriteFault::SlowForward)? {
            worker::Delay::from(std::time::Duration::from_millis(SLOW_FORWARD_MS)).await;
        }
        let mut results = match faulted(WriteFault::OriginFails)? {
            true => live
                .iter()
                .map(|_| {
                    Err(OriginError::Unavailable(
                        "test hook: the origin is unreachable".into(),
                    ))
                })
                .collect(),
            false => {
                self.forward(&relation, live.iter().map(|&i| &group[i]))
                    .await
            }
        };
        faulted(WriteFault::CrashAfterForward)?;
        if faulted(WriteFault::AnswerLost)? {
            for r in &mut results {
                *r = Err(OriginError::Unavailable(
                    "test hook: the origin's answer was lost".into(),
                ));
            }
        }
        if faulted(WriteFault::StallAfterForward)? {
            let stall = 2 * self.config()?.origin_timeout_ms + 1_000;
            worker::Delay::from(std::time::Duration::from_millis(stall)).await;
        }
        timing.forwarded_ms = now_ms();
        let graph = self.graph()?;
        let planned = group_candidates(&graph, &table, &relation.id_column, &results)?;
        let mut purge = Vec::new();
        let mut seen = Vec::new();
        let writes = live.iter().zip(intents).zip(results).zip(planned);
        for (n, (((&i, intent), result), planned)) in writes.enumerate() {
            let pending = &group[i];
            let outcome = self.settle_one(&graph, &relation, pending, intent, result, planned);
            outcomes[i] = Some(outcome.map(|settled| {
                purge.extend(settled.purge);
                if let Some(images) = settled.seen {
                    seen.push((i, images, settled.resp.seq));
                }
                settled.resp
            }));
            if n == 0 && live.len() > 1 {
                self.group_fault([&pending.req], WriteFault::CrashMidGroup)?;
            }
        }
        graph.prune(log_limit)?;
        self.schedule_rehydrate(&graph).await?;
        self.purge_later(purge);
        // The tenant's other tables hear of each write before its writer is answered, so the
        // keys learned rules invalidate there are invalidated before the token is given out.
        for (i, (images, pattern), seq) in seen {
            let pending = &group[i];
            let Some(learn) = pending
                .req
                .learn
                .as_ref()
                .filter(|l| !l.siblings.is_empty())
            else {
                continue;
            };
            let related = self
                .tell_siblings(
                    learn,
                    (&pending.tenant, &pending.origin),
                    &images,
                    (&pattern, seq),
                )
                .await;
            if let Some(Some(Ok(resp))) = outcomes.get_mut(i) {
                resp.related = related;
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(ApiError::internal("a write of the group was lost"))))
            .collect())
    }

    /// One write of a group after the origin answered: settle, plan, record (no await), and
    /// the answer with the keys whose L2 copies to purge. `planned` is the write's images and
    /// candidate keys where the origin changed the record.
    fn settle_one<S: Store>(
        &self,
        graph: &Graph<S>,
        relation: &Relation,
        pending: &PendingWrite,
        intent: i64,
        result: Result<OriginWrite, OriginError>,
        planned: Option<ToPlan>,
    ) -> Result<SettledWrite, ApiError> {
        let forwarded = match settle(graph, intent, result)? {
            Settled::Changed(forwarded) => forwarded,
            Settled::Unchanged(resp) => {
                return Ok(SettledWrite {
                    resp,
                    purge: Vec::new(),
                    seen: None,
                })
            }
        };
        let (images, candidates) =
            planned.ok_or_else(|| ApiError::internal("a changed write was not planned"))?;
        let ctx = StepContext {
            now_ms: now_ms(),
            log_limit: self.config()?.invalidation_log,
        };
        let learned =
            LearnedPlanning::of(graph, pending.req.learn.as_ref(), &pending.req.op, &images)?;
        let (plan, spared) = plan_among(graph, &images, &candidates, &forwarded.views, learned)?;
        semantics::record_spared(graph, &spared, &plan)?;
        let pattern = op_pattern(&pending.req.op, &images.table);
        if pending
            .req
            .learn
            .as_ref()
            .is_some_and(|l| !l.learning.frozen)
        {
            let n = self.shadow_allowance(&pending.tenant)?;
            let seed = graph.seq()?;
            queue_own_checks(
                graph,
                (&images, &pattern),
                &plan,
                &pending.tenant,
                n,
                (seed, ctx.now_ms),
            )?;
        }
        self.fault_hook(&pending.req, WriteFault::CrashAfterPlan)?;
        if self.fault_hook(&pending.req, WriteFault::CrashDuringRehydrate)? {
            self.crash_next_refill.set(true);
        }
        if self.fault_hook(&pending.req, WriteFault::SlowRefill)? {
            self.slow_next_refill.set(true);
        }
        // A D1 write's after image is the row as a read would answer it; an HTTP write's answer
        // is the record's GET where that is learned (`answer_through`).
        let learn = pending.req.learn.as_ref();
        let answer =
            answer_through::answer_digest(&pending.req.op, learn, &forwarded, &relation.id_column);
        let through = match &pending.origin {
            OriginConfig::D1 => Some(Through::AfterImage(relation)),
            _ if answer.is_some() && answer_through::writes_through(graph, &pattern, learn)? => {
                Some(Through::Answer(relation, &forwarded.body))
            }
            _ => None,
        };
        let own = match answer {
            Some(_) => answer_through::own_keys(graph, relation, &images)?,
            None => Vec::new(),
        };
        let recorded = record(graph, intent, &images, &plan, ctx, through)?;
        if !matches!(pending.origin, OriginConfig::D1) {
            let to_verify = answer_through::note_answer(
                graph,
                (&images.id, recorded.seq),
                answer.as_deref().map(|digest| (pattern.as_str(), digest)),
                &own,
                answer_through_core::verify(recorded.seq),
            )?;
            if !to_verify.is_empty() && self.shadow_draw(&pending.tenant, 1)? == 1 {
                queue_verification(graph, &to_verify, (&images, &pattern), ctx.now_ms)?;
            }
        }
        self.writes.set(self.writes.get() + 1);
        let copies = recorded.written_through.len() as u64;
        self.written_through
            .set(self.written_through.get() + copies);
        self.store_later(recorded.written_through);
        self.patch_later(relation, &images, recorded.seq, recorded.patches);
        let explained = match pending.req.explain {
            true => Some(explain(graph, &pending.tenant, recorded.stale)?),
            false => None,
        };
        Ok(SettledWrite {
            resp: WriteResponse {
                status: forwarded.status,
                body: forwarded.body,
                seq: recorded.seq,
                invalidated: recorded.invalidated,
                explained,
                related: Default::default(),
            },
            purge: recorded.purge,
            seen: Some((images, pattern)),
        })
    }

    /// `POST /explain` of `tenant`: what the write would do to the tenant's cached keys, planned
    /// on the record as the origin holds it now and as the write would leave it. Nothing is
    /// written; it takes its turn after the writes queued before it.
    pub(super) async fn explain_write(
        &self,
        req: ExplainRequest,
        tenant: &str,
        origin: &OriginConfig,
    ) -> Result<ExplainResponse, ApiError> {
        let table = self.table()?.to_string();
        if req.table != table {
            return Err(ApiError::new(
                400,
                "bad_request",
                "explain sent to another table's coordinator",
            ));
        }
        if !matches!(origin, OriginConfig::D1) {
            return Err(unsupported_origin());
        }
        let relation = self.relation(&table).await?;
        let id = match &req.op {
            WriteOp::Create { row } => row
                .get(&relation.id_column)
                .and_then(edgecache_core::id_text)
                .unwrap_or_default(),
            other => other.id().unwrap_or_default().to_string(),
        };
        let before = D1Origin::new(self.env.d1("DB")?)
            .get(&relation, &id)
            .await?;
        let after = predicted_after(&relation, before.as_ref(), &req.op)?;
        let images = WriteImages {
            table,
            id,
            id_column: relation.id_column.clone(),
            before,
            after,
        };
        let (keys, truncated) = explain_keys(&self.graph()?, tenant, &images)?;
        let (after, unpredictable) = split_unpredictable(images.after);
        Ok(ExplainResponse {
            before: images.before,
            after,
            unpredictable,
            keys,
            truncated,
        })
    }

    /// The view reads a D1 write of `relation` makes for the view responses registered here
    /// (`Graph::view_reads`), each checked against the database's catalogue (the view exists
    /// with an id column, the table has the column) so that no read can fail the write's batch;
    /// a view response whose read is left out is stale on every write.
    async fn view_reads(&self, relation: &Relation) -> Result<Vec<ViewRead>, ApiError> {
        let reads = self.graph()?.view_reads(&relation.name)?;
        if reads.is_empty() {
            return Ok(Vec::new());
        }
        let decls: ViewDecls = reads
            .iter()
            .map(|r| {
                let bind = BTreeMap::from([(relation.name.clone(), r.column.clone())]);
                let view = BoundView {
                    bind,
                    tables: Vec::new(),
                };
                (r.view.clone(), ViewDecl::Bound(view))
            })
            .collect();
        let schema = D1Origin::new(self.env.d1("DB")?)
            .schema(&decls, Scope::All)
            .await?;
        Ok(reads
            .into_iter()
            .filter(|r| {
                schema
                    .relation(&r.view)
                    .is_some_and(|v| v.bind.get(&relation.name) == Some(&r.column))
            })
            .collect())
    }

    /// Forward: the writes go to their origin, with their tenant's credentials; writes to the
    /// built-in database as one batch (a group only ever holds more than one of those), each
    /// reading the rows of the views it touches around it (none if they cannot be listed:
    /// then every view response is stale).
    async fn forward<'a>(
        &self,
        relation: &Relation,
        group: impl Iterator<Item = &'a PendingWrite>,
    ) -> Vec<Result<OriginWrite, OriginError>> {
        let group: Vec<&PendingWrite> = group.collect();
        let Some(first) = group.first() else {
            return Vec::new();
        };
        match AnyOrigin::open(&self.env, &first.origin) {
            Ok(AnyOrigin::D1(d1)) => {
                let ops: Vec<&WriteOp> = group.iter().map(|p| &p.req.op).collect();
                let views = self.view_reads(relation).await.unwrap_or_default();
                d1.write_group(relation, &ops, &views).await
            }
            Ok(AnyOrigin::Http(http)) => {
                let mut results = Vec::with_capacity(group.len());
                for p in &group {
                    results.push(self.learned_write(&http, relation, p).await);
                }
                results
            }
            Err(e) => group.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// Test hooks only: whether any of `reqs` asks for `fault` here (see `fault_hook`).
    fn group_fault<'a>(
        &self,
        reqs: impl IntoIterator<Item = &'a WriteRequest>,
        fault: WriteFault,
    ) -> Result<bool, ApiError> {
        let mut any = false;
        for req in reqs {
            any |= self.fault_hook(req, fault)?;
        }
        Ok(any)
    }

    /// Test hooks only: whether `req` asks for `fault` here. A crash aborts the instance, so
    /// the runtime starts a fresh one, as after a real crash; the other faults are the
    /// caller's to apply.
    fn fault_hook(&self, req: &WriteRequest, fault: WriteFault) -> Result<bool, ApiError> {
        if req.fault != Some(fault) || !self.config()?.test_hooks {
            return Ok(false);
        }
        match fault {
            WriteFault::CrashBeforeForward
            | WriteFault::CrashAfterForward
            | WriteFault::CrashAfterPlan
            | WriteFault::CrashMidGroup => panic!("test hook: coordinator crashed ({fault:?})"),
            WriteFault::CrashDuringRehydrate
            | WriteFault::AnswerLost
            | WriteFault::StallAfterForward
            | WriteFault::OriginFails
            | WriteFault::SlowForward
            | WriteFault::SlowRefill => Ok(true),
        }
    }

    /// Write-through: stores the record copies the write rebuilt, after the response. A copy
    /// that lands after a later write's invalidation is stamped before it, so never served.
    fn store_later(&self, copies: Vec<(CacheKey, CachedEntry)>) {
        if copies.is_empty() {
            return;
        }
        self.state.wait_until(async move {
            for (key, entry) in copies {
                let _ = l2::put(&key, &entry).await;
            }
        });
    }

    /// Purge: frees this data centre's stale L2 copies after the response. Best effort and
    /// bounded: a stale copy fails validation anyway, so nothing depends on this.
    fn purge_later(&self, keys: Vec<CacheKey>) {
        self.state.wait_until(async move {
            for key in keys {
                l2::purge(&key).await;
            }
        });
    }
}

/// One write of a group once settled: its answer, the keys whose L2 copies to purge and, where
/// it changed the record, its images and route pattern (for the tenant's other tables).
struct SettledWrite {
    resp: WriteResponse,
    purge: Vec<CacheKey>,
    seen: Option<(WriteImages, String)>,
}

/// What the origin's answer to a forwarded write means for the cache.
#[derive(Debug)]
pub enum Settled {
    /// The origin changed the record: plan and record the write.
    Changed(OriginWrite),
    /// Nothing changed: the answer for the client, intent dropped.
    Unchanged(WriteResponse),
}

/// Settle: the failure policy. A refusal (by the origin or the database) changes nothing; an
/// unavailable or timed-out origin may or may not have applied the write, so every entry of the
/// table is invalidated as if it had.
pub fn settle<S: Store>(
    graph: &Graph<S>,
    intent: i64,
    result: Result<OriginWrite, OriginError>,
) -> Result<Settled, ApiError> {
    match result {
        Ok(f) if f.changed => Ok(Settled::Changed(f)),
        Ok(f) => {
            graph.end_intent(intent)?;
            Ok(Settled::Unchanged(WriteResponse {
                status: f.status,
                body: f.body,
                seq: graph.seq()?,
                invalidated: 0,
                explained: None,
                related: Default::default(),
            }))
        }
        Err(e @ (OriginError::Unavailable(_) | OriginError::Timeout(_))) => {
            let seq = graph.bump()?;
            graph.invalidate_all(seq, InvalidationReason::Recovery)?;
            graph.end_intent(intent)?;
            Err(e.into())
        }
        Err(e) => {
            graph.end_intent(intent)?;
            Err(e.into())
        }
    }
}

/// Records a planned write as one synchronous step with its planning (no await until the
/// intent is gone): bumps the seq, logs the write for late registrations, invalidates what it
/// made stale and drops the intent. The caller keeps the logs bounded ([`Graph::prune`]) once
/// its step has recorded all it records (a group's writes).
///
/// `through` says what the record's own refillable copies are rebuilt from, where the write
/// knows what a record read answers now (see [`Through`]); they are then registered at once
/// instead of queued for an origin read.
pub fn record<S: Store>(
    graph: &Graph<S>,
    intent: i64,
    images: &WriteImages,
    plan: &InvalidationPlan,
    ctx: StepContext,
    through: Option<Through<'_>>,
) -> Result<Recorded, StoreError> {
    let seq = graph.bump()?;
    graph.log_write(seq, images)?;
    let applied = apply(graph, seq, images, plan, ctx, through)?;
    graph.end_intent(intent)?;
    Ok(Recorded {
        seq,
        invalidated: plan.entries.len(),
        purge: applied.purge,
        stale: applied.stale,
        written_through: applied.written_through,
        patches: applied.patches,
    })
}

/// What a write's record copy is rebuilt from (write-through), and so which origin it is.
#[derive(Debug, Clone, Copy)]
pub enum Through<'a> {
    /// The D1 origin: the after image is the row a record read answers (`fill::record_body`),
    /// and list pages showing it can be patched in place.
    AfterImage(&'a Relation),
    /// An HTTP origin whose write answers are learned to be the record's `GET`
    /// (`answer_through`): the answer's body.
    Answer(&'a Relation, &'a serde_json::Value),
}

impl<'a> Through<'a> {
    fn relation(self) -> &'a Relation {
        match self {
            Through::AfterImage(relation) | Through::Answer(relation, _) => relation,
        }
    }
}

/// A changed write's images, and the keys to plan it among.
pub type ToPlan = (WriteImages, Vec<String>);

/// The images of each write the origin changed (`None` for the others), with the keys to plan
/// it among: one pass over the list indexes for the group ([`Graph::candidate_keys`]); each
/// write is then planned with [`plan_among`] when its turn comes.
pub fn group_candidates<S: Store>(
    graph: &Graph<S>,
    table: &str,
    id_column: &str,
    results: &[Result<OriginWrite, OriginError>],
) -> Result<Vec<Option<ToPlan>>, StoreError> {
    let images: Vec<Option<WriteImages>> = results
        .iter()
        .map(|r| match r {
            Ok(f) if f.changed => Some(WriteImages {
                table: table.to_string(),
                id: f.id.clone(),
                id_column: id_column.to_string(),
                before: f.before.clone(),
                after: f.after.clone(),
            }),
            _ => None,
        })
        .collect();
    let changed: Vec<&WriteImages> = images.iter().flatten().collect();
    let mut candidates = graph.candidate_keys(&changed)?.into_iter();
    Ok(images
        .into_iter()
        .map(|images| images.map(|i| (i, candidates.next().unwrap_or_default())))
        .collect())
}

/// Plan: the keys the write makes stale, from the record's keys and the lists, view responses
/// (on the view rows it touched, `views`) and opaque entries its images could affect. The
/// images are taken as the record before and after the write (a D1 write's, an explanation's).
pub fn plan<S: Store>(
    graph: &Graph<S>,
    images: &WriteImages,
    views: &[ViewChanges],
) -> Result<InvalidationPlan, StoreError> {
    let candidates = graph.candidate_keys(&[images])?;
    let among = candidates.first().map_or(&[][..], Vec::as_slice);
    Ok(plan_among(graph, images, among, views, LearnedPlanning::Images)?.0)
}

/// Plan among `candidates`, the keys [`Graph::candidate_keys`] found for these images (for a
/// group, before its first write was recorded): those still registered are planned, so a
/// write sees what the group's earlier writes invalidated, as if it had come alone after them.
/// With [`LearnedPlanning::Images`], lists whose route's semantics are learned are planned under
/// them; the keys kept so are answered with their routes, for the write to record
/// (`semantics::record_spared`) and an explanation not to.
pub fn plan_among<S: Store>(
    graph: &Graph<S>,
    images: &WriteImages,
    candidates: &[String],
    views: &[ViewChanges],
    learned: LearnedPlanning,
) -> Result<(InvalidationPlan, Vec<(CacheKey, String)>), StoreError> {
    let record_keys: Vec<CacheKey> = graph
        .keys_for_record(&images.id)?
        .iter()
        .filter_map(|k| CacheKey::parse(k).ok())
        .collect();
    let Candidates {
        mut lists,
        views: view_responses,
        mut opaque,
    } = graph.dependents(candidates)?;
    let spared = match learned {
        LearnedPlanning::Images => semantics::plan_learned(graph, images, &mut lists, &mut opaque)?,
        LearnedPlanning::Off => Vec::new(),
    };
    let plan = plan_write(
        images,
        &record_keys,
        &lists,
        &view_responses,
        views,
        &opaque,
    );
    Ok((plan, spared))
}

/// What `apply` did besides invalidating.
struct Applied {
    purge: Vec<CacheKey>,
    stale: Vec<StaleKey>,
    written_through: Vec<(CacheKey, CachedEntry)>,
    patches: Vec<PagePatch>,
}

/// Apply: invalidates each planned key at `seq`; a refillable copy of the written record is
/// rebuilt from the after image (with `through`) and registered at `seq`, every other key that
/// gets a refill is queued for one (the refill purges before it refills); answers the others'
/// keys to purge, and the first stale keys with their reasons.
fn apply<S: Store>(
    graph: &Graph<S>,
    seq: u64,
    images: &WriteImages,
    plan: &InvalidationPlan,
    ctx: StepContext,
    through: Option<Through<'_>>,
) -> Result<Applied, StoreError> {
    let mut applied = Applied {
        purge: Vec::new(),
        stale: Vec::new(),
        written_through: Vec::new(),
        patches: Vec::new(),
    };
    for planned in &plan.entries {
        let reg = graph.registration(planned.key.as_str())?;
        graph.invalidate(planned.key.as_str(), seq, planned.reason)?;
        let refilled = match reg.filter(|r| r.refills()) {
            Some(reg) => {
                let rebuilt = through.and_then(|through| {
                    rebuilt(&planned.key, &reg, through, images, (seq, ctx.now_ms))
                });
                // A page the D1 write changed only where it shows the row is patched from its
                // L2 copy after the answer; its refill waits in case that fails.
                let patch = match through {
                    Some(Through::AfterImage(_)) => page_patch(&planned.key, &reg, images),
                    _ => None,
                };
                match (rebuilt, patch) {
                    (Some((copy, entry)), _) => {
                        graph.register(&copy)?;
                        applied.written_through.push((planned.key.clone(), entry));
                    }
                    (None, Some(patch)) => {
                        let due = ctx.now_ms + PATCH_GRACE_MS;
                        graph.enqueue_rehydrate(&reg, due)?;
                        applied.patches.push(patch);
                    }
                    (None, None) => graph.enqueue_rehydrate(&reg, ctx.now_ms)?,
                }
                true
            }
            None => {
                if applied.purge.len() < MAX_PURGE_PER_WRITE {
                    applied.purge.push(planned.key.clone());
                }
                false
            }
        };
        if applied.stale.len() < MAX_EXPLAINED_KEYS {
            applied.stale.push(StaleKey {
                key: planned.key.as_str().to_string(),
                reason: planned.reason,
                refilled,
            });
        }
    }
    Ok(applied)
}

/// Whether `key` (registered as `reg`) is the written record's own key: `/v1/<table>/<id>`,
/// no query, no variant; the only key a write's answer or after image can stand for.
pub fn own_record_key(
    key: &CacheKey,
    reg: &Registration,
    relation: &Relation,
    images: &WriteImages,
) -> bool {
    reg.dependent == Dependent::Record
        && key.variant().is_none()
        && key.query_pairs().is_empty()
        && route::resource(key.encoded_path()).is_some_and(|resource| {
            resource.relation == relation.name && resource.id.as_deref() == Some(images.id.as_str())
        })
}

/// The copy of `key` a write rebuilds (from its after image or its answer, `through`), stamped
/// `seq` and filled at `now_ms`: only the written record's own key ([`own_record_key`]) of a
/// write that left a row. The route's TTL is the registration's (as the fill that registered it
/// capped it by the origin's `Cache-Control`, which a refill would apply again).
fn rebuilt(
    key: &CacheKey,
    reg: &Registration,
    through: Through<'_>,
    images: &WriteImages,
    (seq, now_ms): (u64, u64),
) -> Option<(Registration, CachedEntry)> {
    let after = images.after.as_ref()?;
    let relation = through.relation();
    if !own_record_key(key, reg, relation, images) {
        return None;
    }
    // An HTTP origin's copy carries its digest, as its fills do: shadow checks compare it.
    let (json, digest) = match through {
        Through::AfterImage(_) => (record_body(after), None),
        Through::Answer(_, answer) => (answer.clone(), Some(body_digest(answer))),
    };
    let body = serde_json::to_vec(&json).ok()?;
    let no_headers = OriginHeaders {
        cache_control: None,
        vary: None,
    };
    refilled_copy(
        key,
        relation,
        &ReadTarget::Record(images.id.clone()),
        (&json, body),
        no_headers,
        (
            &relation.name,
            BTreeMap::from([(relation.name.clone(), seq)]),
        ),
        (now_ms, reg.ttl_secs),
    )
    .map(|(reg, entry)| (Registration { digest, ..reg }, entry))
}

/// What a write did to `tenant`'s keys: those it made stale and those still registered that
/// it spared (a record copy the write rebuilt is registered again, but was stale). A
/// coordinator serves every tenant of its data source; other tenants' keys are left out.
pub fn explain<S: Store>(
    graph: &Graph<S>,
    tenant: &str,
    stale: Vec<StaleKey>,
) -> Result<WriteExplanation, StoreError> {
    let prefix = format!("{tenant}:");
    let stale: Vec<StaleKey> = stale
        .into_iter()
        .filter(|k| k.key.starts_with(&prefix))
        .collect();
    let spared = graph
        .registered(&prefix, MAX_EXPLAINED_KEYS + stale.len())?
        .into_iter()
        .filter(|k| !stale.iter().any(|s| s.key == k.key))
        .take(MAX_EXPLAINED_KEYS)
        .collect();
    Ok(WriteExplanation { stale, spared })
}

/// What a write with these images would do to `tenant`'s keys: every key its plan stales
/// (refreshed where the key is refilled, else invalidated), then the keys it spares with the
/// planner's reason (at most [`MAX_EXPLAINED_KEYS`]; the flag says whether more were left out).
pub fn explain_keys<S: Store>(
    graph: &Graph<S>,
    tenant: &str,
    images: &WriteImages,
) -> Result<(Vec<ExplainedKey>, bool), StoreError> {
    let prefix = format!("{tenant}:");
    // Without the write, no view rows were read: its view responses are planned stale.
    let planned = plan(graph, images, &[])?;
    let mut keys = Vec::new();
    for entry in &planned.entries {
        let key = entry.key.as_str();
        if !key.starts_with(&prefix) {
            continue;
        }
        let action = match graph.registration(key)?.filter(|r| r.refills()) {
            Some(reg) if page_patch(&entry.key, &reg, images).is_some() => {
                KeyAction::RefreshInPlace
            }
            Some(_) => KeyAction::Refresh,
            None => KeyAction::Invalidate,
        };
        keys.push(ExplainedKey {
            key: key.to_string(),
            action,
            reason: entry
                .cause
                .map_or(KeyReason::Invalidation(entry.reason), KeyReason::Page),
        });
    }
    let stale = keys.len();
    let registered = graph.registered(&prefix, stale + MAX_EXPLAINED_KEYS + 1)?;
    let mut truncated = false;
    for listed in registered {
        let Ok(key) = CacheKey::parse(&listed.key) else {
            continue;
        };
        if planned.reason_for(&key).is_some() {
            continue;
        }
        if keys.len() - stale == MAX_EXPLAINED_KEYS {
            truncated = true;
            break;
        }
        let Some(reg) = graph.registration(&listed.key)? else {
            continue;
        };
        keys.push(ExplainedKey {
            key: listed.key,
            action: KeyAction::Spare,
            reason: KeyReason::Spared(spare_reason(images, &key, &reg.dependent)),
        });
    }
    Ok((keys, truncated))
}

/// Invariant 6: an intent left by a coordinator that died between forwarding a write and
/// recording it means the origin may have changed in ways nobody planned for, so every
/// entry of the table is invalidated.
pub fn recover<S: Store>(graph: &Graph<S>) -> Result<(), StoreError> {
    let intents = graph.pending_intents()?;
    if intents.is_empty() {
        return Ok(());
    }
    let seq = graph.bump()?;
    graph.invalidate_all(seq, InvalidationReason::Recovery)?;
    for id in intents {
        graph.end_intent(id)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use edgecache_core::Row;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::coordinator::fixtures::{
        self, ctx, graph, key_of, registration, rename, user_reg, view_reg, BORN,
    };
    use crate::coordinator::register::register;
    use edgecache_core::freshness::ALL_KEYS;
    use edgecache_core::protocol::Registration;

    fn accepted_write(changed: bool) -> OriginWrite {
        OriginWrite {
            changed,
            status: if changed { 200 } else { 404 },
            id: "1".into(),
            before: None,
            after: None,
            views: Vec::new(),
            body: json!({"ok": changed}),
        }
    }

    #[test]
    fn a_write_invalidates_its_record_and_the_lists_it_can_change() {
        let g = graph();
        let user = user_reg("1", "Ann", BORN);
        let beas = registration("/v1/users?firstName=Bea", json!({"data": []}), BORN);
        let zoes = registration("/v1/users?firstName=Zoe", json!({"data": []}), BORN);
        for reg in [&user, &beas, &zoes] {
            g.register(reg).unwrap();
        }
        let images = rename("1", "Ann", "Bea");
        let planned = plan(&g, &images, &[]).unwrap();
        assert_eq!(
            planned.reason_for(&key_of(&user)),
            Some(InvalidationReason::RecordWritten)
        );
        assert_eq!(
            planned.reason_for(&key_of(&beas)),
            Some(InvalidationReason::ListPredicateMatched)
        );
        assert_eq!(planned.reason_for(&key_of(&zoes)), None);

        let recorded = fixtures::write(&g, &images);
        assert_eq!((recorded.seq, recorded.invalidated), (BORN + 1, 2));
        let explained: Vec<_> = recorded
            .stale
            .iter()
            .map(|k| (k.key.as_str(), k.reason, k.refilled))
            .collect();
        assert_eq!(
            explained,
            vec![
                (user.key.as_str(), InvalidationReason::RecordWritten, true),
                (
                    beas.key.as_str(),
                    InvalidationReason::ListPredicateMatched,
                    true
                ),
            ]
        );
        let tenant = user.key.split(':').next().unwrap();
        let shown = explain(&g, tenant, recorded.stale.clone()).unwrap();
        assert_eq!(shown.stale, recorded.stale);
        assert_eq!(shown.spared.len(), 1);
        assert_eq!(
            (shown.spared[0].key.as_str(), shown.spared[0].kind.as_str()),
            (zoes.key.as_str(), "list")
        );
        let other = explain(&g, "someone-else", recorded.stale.clone()).unwrap();
        assert!(
            other.stale.is_empty() && other.spared.is_empty(),
            "only the writer's keys"
        );
        assert_eq!(g.registration(&zoes.key).unwrap(), Some(zoes));
        assert_eq!(g.registration(&user.key).unwrap(), None);
        assert_eq!(g.last_write("1").unwrap(), Some(BORN + 1));
        assert!(g.pending_intents().unwrap().is_empty());
    }

    #[test]
    fn explain_names_each_key_with_its_action_and_reason_and_writes_nothing() {
        let g = graph();
        let user = user_reg("1", "Ann", BORN);
        let other = user_reg("2", "Cy", BORN);
        let anns = registration(
            "/v1/users?firstName=Ann&limit=1",
            json!({"data": [{"id": "1", "firstName": "Ann", "age": 30}]}),
            BORN,
        );
        let zoes = registration("/v1/users?firstName=Zoe", json!({"data": []}), BORN);
        let quiet = Registration {
            rehydrate: false,
            ..registration("/v1/users?firstName=Bea", json!({"data": []}), BORN)
        };
        for reg in [&user, &other, &anns, &zoes, &quiet] {
            g.register(reg).unwrap();
        }
        let (keys, truncated) = explain_keys(&g, "acme", &rename("1", "Ann", "Bea")).unwrap();
        let got: Vec<_> = keys
            .iter()
            .map(|k| (k.key.as_str(), k.action, k.reason))
            .collect();
        use edgecache_core::planner::{SpareReason, StaleCause};
        assert_eq!(
            got,
            vec![
                (
                    user.key.as_str(),
                    KeyAction::Refresh,
                    KeyReason::Invalidation(InvalidationReason::RecordWritten)
                ),
                (
                    anns.key.as_str(),
                    KeyAction::Refresh,
                    KeyReason::Invalidation(InvalidationReason::RecordWritten)
                ),
                (
                    quiet.key.as_str(),
                    KeyAction::Invalidate,
                    KeyReason::Page(StaleCause::MayFillEmptyPage)
                ),
                (
                    other.key.as_str(),
                    KeyAction::Spare,
                    KeyReason::Spared(SpareReason::OtherRecord)
                ),
                (
                    zoes.key.as_str(),
                    KeyAction::Spare,
                    KeyReason::Spared(SpareReason::FiltersExcludeRow)
                ),
            ]
        );
        assert!(!truncated);
        let (keys, _) = explain_keys(&g, "someone-else", &rename("1", "Ann", "Bea")).unwrap();
        assert!(keys.is_empty(), "only the tenant's keys");
        // Nothing was written: every key is still registered, the seq unchanged.
        assert_eq!((g.seq().unwrap(), g.counts().unwrap()), (BORN, (5, 0)));
    }

    /// A view's key is refreshed like a table's: explained so, and queued for a refill that
    /// carries its registration (the view, its bindings and both tables to stamp).
    #[test]
    fn a_view_key_a_write_stales_is_queued_for_a_refill_of_the_view() {
        let g = graph();
        let view = view_reg("1", BORN);
        g.register(&view).unwrap();
        let images = rename("1", "Ann", "Bea");
        let (keys, _) = explain_keys(&g, "acme", &images).unwrap();
        let explained: Vec<_> = keys.iter().map(|k| (k.key.as_str(), k.action)).collect();
        assert_eq!(explained, [(view.key.as_str(), KeyAction::Refresh)]);
        let recorded = fixtures::write(&g, &images);
        assert!(recorded.purge.is_empty(), "refilled, so not purged");
        let due = g.due_rehydrates(0, 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].key, view.key);
        let queued: Registration = serde_json::from_str(due[0].view.as_deref().unwrap()).unwrap();
        assert_eq!(queued, view);
        // A table's key needs no registration to be refilled.
        let user = user_reg("2", "Cy", BORN);
        g.enqueue_rehydrate(&user, 0).unwrap();
        let due = g.due_rehydrates(0, 10).unwrap();
        assert_eq!(due.iter().find(|d| d.key == user.key).unwrap().view, None);
    }

    #[test]
    fn the_written_records_copy_is_rebuilt_from_the_after_image() {
        let g = graph();
        let user = user_reg("1", "Ann", BORN);
        let other = user_reg("2", "Cy", BORN);
        let beas = registration("/v1/users?firstName=Bea", json!({"data": []}), BORN);
        for reg in [&user, &other, &beas] {
            g.register(reg).unwrap();
        }
        let intent = g.begin_intent("1").unwrap();
        let images = rename("1", "Ann", "Bea");
        let planned = plan(&g, &images, &[]).unwrap();
        let users = fixtures::users();
        let recorded = record(
            &g,
            intent,
            &images,
            &planned,
            ctx(1000),
            Some(Through::AfterImage(&users)),
        )
        .unwrap();
        // The record's key: registered again at the write's seq, its copy built, no refill.
        let copy = g
            .registration(&user.key)
            .unwrap()
            .expect("registered again");
        assert_eq!(
            (copy.stamp, copy.records.clone()),
            (recorded.seq, vec!["1".to_string()])
        );
        let [(key, entry)] = recorded.written_through.as_slice() else {
            panic!("one copy: {:?}", recorded.written_through);
        };
        assert_eq!(key, &key_of(&user));
        let expected = serde_json::to_vec(&record_body(images.after.as_ref().unwrap())).unwrap();
        assert_eq!(entry.body, expected);
        assert_eq!(entry.stamps.get("users"), Some(&recorded.seq));
        // The list that gains the row is refilled from the origin as before.
        let due: Vec<String> = g
            .due_rehydrates(0, 10)
            .unwrap()
            .into_iter()
            .map(|i| i.key)
            .collect();
        assert_eq!(due, vec![beas.key.clone()]);
        assert_eq!(g.registration(&other.key).unwrap(), Some(other.clone()));
        let shown = explain(&g, "acme", recorded.stale.clone()).unwrap();
        let spared: Vec<&str> = shown.spared.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(
            spared,
            vec![other.key.as_str()],
            "the rebuilt copy was stale, not spared"
        );
        // A delete leaves no row to rebuild from: its record is refilled (and found gone).
        let intent = g.begin_intent("1").unwrap();
        let gone = WriteImages {
            before: images.after.clone(),
            after: None,
            ..images
        };
        let planned = plan(&g, &gone, &[]).unwrap();
        let recorded = record(
            &g,
            intent,
            &gone,
            &planned,
            ctx(1000),
            Some(Through::AfterImage(&users)),
        )
        .unwrap();
        assert!(recorded.written_through.is_empty());
        assert!(g
            .due_rehydrates(0, 10)
            .unwrap()
            .iter()
            .any(|i| i.key == user.key));
    }

    #[test]
    fn refillable_keys_are_queued_and_the_others_purged() {
        let g = graph();
        let user = user_reg("1", "Ann", BORN);
        g.register(&user).unwrap();
        let intent = g.begin_intent("1").unwrap();
        let images = rename("1", "Ann", "Bea");
        let planned = plan(&g, &images, &[]).unwrap();
        let recorded = record(&g, intent, &images, &planned, ctx(1000), None).unwrap();
        assert!(recorded.purge.is_empty(), "the refill purges");
        let due = g.due_rehydrates(0, 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].key, user.key);

        let g = graph();
        let no_rehydrate = Registration {
            rehydrate: false,
            ..user
        };
        g.register(&no_rehydrate).unwrap();
        let intent = g.begin_intent("1").unwrap();
        let images = rename("1", "Ann", "Bea");
        let planned = plan(&g, &images, &[]).unwrap();
        let recorded = record(&g, intent, &images, &planned, ctx(1000), None).unwrap();
        assert_eq!(recorded.purge, vec![key_of(&no_rehydrate)]);
        assert!(g.due_rehydrates(0, 10).unwrap().is_empty());
    }

    #[test]
    fn a_refused_write_changes_nothing() {
        let g = graph();
        g.register(&user_reg("1", "Ann", BORN)).unwrap();
        let intent = g.begin_intent("1").unwrap();
        let settled = settle(&g, intent, Ok(accepted_write(false))).unwrap();
        let Settled::Unchanged(resp) = settled else {
            panic!("a refusal is not planned");
        };
        assert_eq!((resp.status, resp.seq, resp.invalidated), (404, BORN, 0));
        assert_eq!(g.counts().unwrap(), (1, 0));
        assert!(g.pending_intents().unwrap().is_empty());

        let intent = g.begin_intent("1").unwrap();
        let err = settle(&g, intent, Err(OriginError::Constraint("no".into()))).unwrap_err();
        assert_eq!(err.code, "constraint_failed");
        assert_eq!((g.seq().unwrap(), g.counts().unwrap()), (BORN, (1, 0)));
        assert!(g.pending_intents().unwrap().is_empty());
    }

    #[test]
    fn an_unknown_outcome_invalidates_the_whole_table() {
        let g = graph();
        g.register(&user_reg("1", "Ann", BORN)).unwrap();
        let intent = g.begin_intent("1").unwrap();
        let err = settle(&g, intent, Err(OriginError::Timeout(10))).unwrap_err();
        assert_eq!(err.code, "origin_timeout");
        assert_eq!(
            g.last_invalidation(ALL_KEYS).unwrap(),
            Some((BORN + 1, InvalidationReason::Recovery))
        );
        assert_eq!(g.counts().unwrap(), (0, 0));
        assert!(g.pending_intents().unwrap().is_empty());
    }

    #[test]
    fn a_pending_intent_on_startup_invalidates_everything() {
        let g = graph();
        let user = user_reg("1", "Ann", BORN);
        g.register(&user).unwrap();
        g.enqueue_rehydrate(&user, 0).unwrap();
        // The coordinator forwarded a write and died before recording it.
        g.begin_intent("1").unwrap();
        recover(&g).unwrap();
        assert_eq!(g.seq().unwrap(), BORN + 1);
        assert_eq!(
            g.last_invalidation(ALL_KEYS).unwrap(),
            Some((BORN + 1, InvalidationReason::Recovery))
        );
        assert_eq!(
            g.counts().unwrap(),
            (0, 0),
            "registrations and refills dropped"
        );
        assert!(g.pending_intents().unwrap().is_empty());
        let changes = g.changes_since(BORN).unwrap();
        assert_eq!(changes.keys, vec![(ALL_KEYS.to_string(), BORN + 1)]);
        // A fill that started before the crash cannot register afterwards.
        let late = register(&g, &[user_reg("1", "Ann", BORN)], &fixtures::users()).unwrap();
        assert_eq!(late.accepted, vec![false]);
        // Once recovered, a second start has nothing to do.
        recover(&g).unwrap();
        assert_eq!(g.seq().unwrap(), late.seq);
    }

    /// A scenario for the group/serial comparison: each id's row, and a write as
    /// `(id, new first name or None for a delete)`.
    fn group_scenario() -> impl Strategy<Value = Vec<(usize, Option<usize>)>> {
        proptest::collection::vec(
            (0usize..6, proptest::option::weighted(0.8, 0usize..4)),
            1..8,
        )
    }

    const NAMES: [&str; 4] = ["Ann", "Bea", "Bo", "Cy"];

    /// Users 0..4 (ids 4 and 5 are created by the writes that name them), and every kind of
    /// key the planner knows, over them: record copies, lists by first name, by first-name
    /// prefix, plain pages in two orders, and a list the planner cannot evaluate.
    fn group_graph() -> (
        Graph<crate::coordinator::store::memory::MemoryStore>,
        Vec<Row>,
    ) {
        let g = graph();
        let rows: Vec<Row> = (0..4)
            .map(|i| {
                fixtures::row(json!({"id": i.to_string(), "firstName": NAMES[i], "age": 30 + i}))
            })
            .collect();
        let body = |rows: Vec<&Row>| json!({ "data": rows });
        for r in &rows {
            let id = r["id"].as_str().unwrap();
            g.register(&registration(
                &format!("/v1/users/{id}"),
                json!({ "data": r }),
                BORN,
            ))
            .unwrap();
        }
        for name in NAMES {
            let matching = rows.iter().filter(|r| r["firstName"] == name).collect();
            g.register(&registration(
                &format!("/v1/users?firstName={name}"),
                body(matching),
                BORN,
            ))
            .unwrap();
        }
        let bs = rows
            .iter()
            .filter(|r| r["firstName"].as_str().unwrap().starts_with('B'))
            .collect();
        g.register(&registration("/v1/users?firstName=B*", body(bs), BORN))
            .unwrap();
        for (order, sorted) in [
            ("", rows.iter().collect::<Vec<_>>()),
            ("order=-age&", rows.iter().rev().collect()),
        ] {
            for offset in [0, 2, 4] {
                let page = sorted.iter().skip(offset).take(2).copied().collect();
                g.register(&registration(
                    &format!("/v1/users?{order}limit=2&offset={offset}"),
                    body(page),
                    BORN,
                ))
                .unwrap();
            }
        }
        g.register(&registration(
            "/v1/users?age=gt.31",
            body(rows.iter().collect()),
            BORN,
        ))
        .unwrap();
        (g, rows)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

        /// A group's writes, planned among candidates looked up once for the group and recorded
        /// in order, do exactly what the same writes do one at a time: each write's seq, stale
        /// keys and reasons, purges, rebuilt copies, and the graph left behind.
        #[test]
        fn a_group_plans_and_records_each_write_as_if_it_came_alone(writes in group_scenario()) {
            let (grouped, rows) = group_graph();
            let (serial, _) = group_graph();
            let users = fixtures::users();
            let mut current: Vec<Option<Row>> = (0..6).map(|i| rows.get(i).cloned()).collect();
            let mut results = Vec::new();
            for (id, name) in &writes {
                let before = current[*id].clone();
                let after = name.map(|n| {
                    let mut r = before.clone().unwrap_or_else(|| fixtures::row(json!({"id": id.to_string(), "age": 40})));
                    r.insert("firstName".into(), json!(NAMES[n]));
                    r
                });
                current[*id] = after.clone();
                results.push(Ok(OriginWrite {
                    changed: before.is_some() || after.is_some(),
                    status: 200,
                    id: id.to_string(),
                    before,
                    after,
                    body: json!(null),
                    views: Vec::new(),
                }));
            }
            let intents: Vec<i64> = writes.iter().map(|(id, _)| grouped.begin_intent(&id.to_string()).unwrap()).collect();
            let planned = group_candidates(&grouped, "users", "id", &results).unwrap();
            let mut in_group = Vec::new();
            for (intent, planned) in intents.into_iter().zip(planned) {
                let Some((images, candidates)) = planned else {
                    grouped.end_intent(intent).unwrap();
                    in_group.push(None);
                    continue;
                };
                let plan = plan_among(&grouped, &images, &candidates, &[], LearnedPlanning::Images).unwrap().0;
                in_group.push(Some(record(&grouped, intent, &images, &plan, ctx(1000), Some(Through::AfterImage(&users))).unwrap()));
            }
            let mut alone = Vec::new();
            for result in &results {
                let Ok(f) = result else { unreachable!() };
                if !f.changed {
                    alone.push(None);
                    continue;
                }
                let images = WriteImages {
                    table: "users".into(),
                    id: f.id.clone(),
                    id_column: "id".into(),
                    before: f.before.clone(),
                    after: f.after.clone(),
                };
                let intent = serial.begin_intent(&f.id).unwrap();
                let plan = plan(&serial, &images, &[]).unwrap();
                alone.push(Some(record(&serial, intent, &images, &plan, ctx(1000), Some(Through::AfterImage(&users))).unwrap()));
            }
            prop_assert_eq!(in_group, alone);
            prop_assert_eq!(grouped.changes_since(0).unwrap(), serial.changes_since(0).unwrap());
            prop_assert_eq!(grouped.counts().unwrap(), serial.counts().unwrap());
            prop_assert!(grouped.pending_intents().unwrap().is_empty());
            let keys = |g: &Graph<_>| g.registered("", 1000).unwrap().into_iter().map(|k| (k.key.clone(), g.registration(&k.key).unwrap())).collect::<Vec<_>>();
            prop_assert_eq!(keys(&grouped), keys(&serial));
        }
    }

    #[test]
    fn without_intents_startup_changes_nothing() {
        let g = graph();
        g.register(&user_reg("1", "Ann", BORN)).unwrap();
        recover(&g).unwrap();
        assert_eq!((g.seq().unwrap(), g.counts().unwrap()), (BORN, (1, 0)));
    }
}
