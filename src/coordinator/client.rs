//! The edge's side of the coordinator protocol: typed calls over the Durable Object stub.

use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::{Env, Headers, Method};

use crate::runtime::platform::within;
use edgecache_core::codec::encode_component;
use edgecache_core::outcome::NotStored;
use edgecache_core::protocol::{
    Changes, CoordinatorStats, ExplainRequest, ExplainResponse, ForgetCandidateRequest,
    ForgetHypothesisRequest, ForgetRequest, ForgottenCandidates, ForgottenHypotheses,
    ForgottenLearning, ForgottenRule, InvalidateRequest, InvalidateResponse, KeyInfo,
    ObserveRequest, ObserveResponse, OriginConfig, OriginContext, RecordInfo, RefreshRequest,
    RegisterRequest, RegisterResponse, TableLearning, WriteRequest, WriteResponse, NAME_HEADER,
    ORIGIN_HEADER,
};
use edgecache_core::timing::STEP_TIMEOUT_MS;
use edgecache_core::{ApiError, CoordinatorId};

/// A `since` past every seq: a coordinator's seq starts at its birth time in ms (about 2^41)
/// and grows by one a write or invalidation, so `changes` since it lists nothing, only the seq.
const PAST_EVERY_SEQ: u64 = 1 << 53;

/// A handle on the coordinator of one `source:table`.
pub struct Coordinator<'a> {
    env: &'a Env,
    id: CoordinatorId,
    origin: Option<String>,
}

impl<'a> Coordinator<'a> {
    /// The coordinator `id`.
    pub fn of(env: &'a Env, id: &CoordinatorId) -> Self {
        Coordinator {
            env,
            id: id.clone(),
            origin: None,
        }
    }

    /// Says which tenant calls and tells the coordinator its origin with its credentials
    /// (needed to write, and to refill that tenant's keys).
    pub fn for_tenant(mut self, tenant: &str, origin: &OriginConfig) -> Self {
        self.origin = serde_json::to_string(&OriginContext {
            tenant: tenant.to_string(),
            origin: origin.clone(),
        })
        .ok();
        self
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
    ) -> Result<T, ApiError> {
        let stub = self
            .env
            .durable_object("COORDINATOR")?
            .get_by_name(self.id.as_str())?;
        // The object learns its name from the stub it is reached by (`state.id().name()`).
        let headers = Headers::new();
        headers.set(NAME_HEADER, self.id.as_str())?;
        if let Some(origin) = &self.origin {
            headers.set(ORIGIN_HEADER, origin)?;
        }
        crate::runtime::stub::call(stub, "coordinator", method, path_and_query, headers, body).await
    }

    /// Invalidations since `since`.
    pub async fn changes(&self, since: u64) -> Result<Changes, ApiError> {
        self.call::<(), _>(Method::Get, &format!("/changes?since={since}"), None)
            .await
    }

    /// The table's seq now: the stamp a fill of another table's coordinator takes for this
    /// table before its origin read (invariant 2).
    pub async fn seq(&self) -> Result<u64, ApiError> {
        Ok(self.changes(PAST_EVERY_SEQ).await?.seq)
    }

    /// Registers filled entries.
    pub async fn register(&self, req: &RegisterRequest) -> Result<RegisterResponse, ApiError> {
        self.call(Method::Post, "/register", Some(req)).await
    }

    /// Forwards a write.
    pub async fn write(&self, req: &WriteRequest) -> Result<WriteResponse, ApiError> {
        self.call(Method::Post, "/write", Some(req)).await
    }

    /// What a write would do, without writing.
    pub async fn explain(&self, req: &ExplainRequest) -> Result<ExplainResponse, ApiError> {
        self.call(Method::Post, "/explain", Some(req)).await
    }

    /// Asks for expired keys to be refilled (stale-while-revalidate).
    pub async fn refresh(&self, req: &RefreshRequest) -> Result<(), ApiError> {
        self.call(Method::Post, "/refresh", Some(req)).await
    }

    /// Invalidates manually.
    pub async fn invalidate(
        &self,
        req: &InvalidateRequest,
    ) -> Result<InvalidateResponse, ApiError> {
        self.call(Method::Post, "/invalidate", Some(req)).await
    }

    /// What the coordinator knows of a key.
    pub async fn inspect_key(&self, key: &str) -> Result<KeyInfo, ApiError> {
        self.call::<(), _>(
            Method::Get,
            &format!("/inspect?key={}", encode_component(key)),
            None,
        )
        .await
    }

    /// Which keys contain a record.
    pub async fn inspect_record(&self, record: &str) -> Result<RecordInfo, ApiError> {
        self.call::<(), _>(
            Method::Get,
            &format!("/inspect?record={}", encode_component(record)),
            None,
        )
        .await
    }

    /// A write of another of the tenant's tables: learned rules and shadow checks.
    pub async fn observe(&self, req: &ObserveRequest) -> Result<ObserveResponse, ApiError> {
        self.call(Method::Post, "/observe", Some(req)).await
    }

    /// What the coordinator has learned.
    pub async fn learning(&self) -> Result<TableLearning, ApiError> {
        self.call::<(), _>(Method::Get, "/learn", None).await
    }

    /// Forgets a learned rule.
    pub async fn forget_rule(&self, rule: u64) -> Result<ForgottenRule, ApiError> {
        self.call(Method::Post, "/learn/forget", Some(&ForgetRequest { rule }))
            .await
    }

    /// Forgets the hypotheses named `hypothesis` (`<table>:h<8 hex>`) and invalidates what was
    /// kept under them.
    pub async fn forget_hypothesis(
        &self,
        hypothesis: &str,
    ) -> Result<ForgottenHypotheses, ApiError> {
        let body = ForgetHypothesisRequest {
            hypothesis: hypothesis.to_string(),
        };
        self.call(Method::Post, "/learn/forget-hypothesis", Some(&body))
            .await
    }

    /// Forgets the evidence of the dependency candidates named `candidate` (`<table>:c<8 hex>`);
    /// invalidates nothing.
    pub async fn forget_candidate(&self, candidate: &str) -> Result<ForgottenCandidates, ApiError> {
        let body = ForgetCandidateRequest {
            candidate: candidate.to_string(),
        };
        self.call(Method::Post, "/learn/forget-candidate", Some(&body))
            .await
    }

    /// Forgets everything the coordinator learned and invalidates what was kept under it.
    pub async fn forget_all(&self) -> Result<ForgottenLearning, ApiError> {
        self.call::<(), _>(Method::Post, "/learn/forget-all", None)
            .await
    }

    /// Counters.
    pub async fn stats(&self) -> Result<CoordinatorStats, ApiError> {
        self.call::<(), _>(Method::Get, "/stats", None).await
    }
}

/// Registers a filled entry with every coordinator it depends on, for `tenant` on `origin`,
/// each call bounded; it may be stored only if all accept (invariant 3). An edge's fill and a
/// coordinator's refill of a view's key both keep their copy through it.
pub async fn register_all(
    env: &Env,
    tenant: &str,
    origin: &OriginConfig,
    regs: &[(CoordinatorId, RegisterRequest)],
) -> Result<(), NotStored> {
    for (id, req) in regs {
        let coordinator = Coordinator::of(env, id).for_tenant(tenant, origin);
        // Bounded: the fill (and any read waiting on it) ends when this does.
        match within(STEP_TIMEOUT_MS, coordinator.register(req)).await {
            Some(Ok(resp)) if resp.accepted.iter().all(|a| *a) => {}
            Some(Ok(_)) => return Err(NotStored::Overtaken),
            Some(Err(_)) | None => return Err(NotStored::Unregistered),
        }
    }
    Ok(())
}
