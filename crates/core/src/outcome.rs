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
    /// The origin said `no-store` or `private`.
    OriginNoStore,
    /// The origin's answer is not JSON (only JSON is cached).
    NotJson,
    /// The origin answered with a status other than 200 (its own 404, say): passed through.
    OriginStatus,
    /// A coordinator refused the registration: a write overtook the fill (invariant 3).
    Overtaken,
    /// A coordinator could not be reached to register the entry, so it would never be
    /// invalidated: not cached.
    Unregistered,
}

impl NotStored {
    /// For logs and stats.
    pub fn as_str(self) -> &'static str {
        match self {
            NotStored::RouteNoStore => "route_no_store",
            NotStored::OriginNoStore => "origin_no_store",
            NotStored::NotJson => "not_json",
            NotStored::OriginStatus => "origin_status",
            NotStored::Overtaken => "overtaken",
            NotStored::Unregistered => "unregistered",
        }
    }
}
