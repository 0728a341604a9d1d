//! How a read was served: exactly the values of the `x-edgecache` header.

/// The outcome of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served from isolate memory.
    HitL1,
    /// Served from the data centre's Cache API.
    HitL2,
    /// Fetched from the origin (and cached if it may be).
    Miss,
    /// The origin failed; the last good copy was served and says so.
    Stale,
    /// The route is not cached.
    Bypass,
}

impl Outcome {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::HitL1 => "HIT-L1",
            Outcome::HitL2 => "HIT-L2",
            Outcome::Miss => "MISS",
            Outcome::Stale => "STALE",
            Outcome::Bypass => "BYPASS",
        }
    }
}

/// Why a filled response was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// The route's rule says `no-store`.
    RouteNoStore,
    /// The origin said `no-store`.
    OriginNoStore,
    /// The origin said `private`: for one user, never for a shared cache.
    OriginPrivate,
    /// The origin said `Vary: *`: no request can be known to match it.
    VaryAny,
    /// The origin's `Vary` names more headers than a variant key covers.
    VaryTooWide,
    /// The request carries `Authorization` or `Cookie`, and neither the origin (`public`,
    /// `s-maxage`) nor a rule (`vary_by`) says the answer may be stored.
    Credentialed,
    /// The answer would need a keyed variant key and the deployment has no secret to key it.
    NoKeySecret,
    /// The origin's `s-maxage`/`max-age` is 0: stale on arrival.
    OriginExpired,
    /// The origin's answer is not JSON (only JSON is cached).
    NotJson,
    /// The origin answered with a status other than 200 (its own 404, say): passed through.
    OriginStatus,
    /// A coordinator refused the registration: a write overtook the fill (invariant 3).
    Overtaken,
    /// A coordinator could not be reached to register the entry, so it would never be
    /// invalidated: not cached.
    Unregistered,
    /// The table is not one the tenant's HTTP origin is known to serve (yet): nothing is made
    /// for it until the origin answers a read of it with a 2xx.
    UnknownTable,
}

impl NotStored {
    /// For logs and stats.
    pub fn as_str(self) -> &'static str {
        match self {
            NotStored::RouteNoStore => "route_no_store",
            NotStored::OriginNoStore => "origin_no_store",
            NotStored::OriginPrivate => "origin_private",
            NotStored::VaryAny => "vary_any",
            NotStored::VaryTooWide => "vary_too_wide",
            NotStored::Credentialed => "credentialed",
            NotStored::NoKeySecret => "no_key_secret",
            NotStored::OriginExpired => "origin_expired",
            NotStored::NotJson => "not_json",
            NotStored::OriginStatus => "origin_status",
            NotStored::Overtaken => "overtaken",
            NotStored::Unregistered => "unregistered",
            NotStored::UnknownTable => "unknown_table",
        }
    }
}
