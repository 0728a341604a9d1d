//! The edge's cache tiers: L1 (isolate memory, bounded in bytes) and L2 (the Cache API of the
//! data centre), the lookup logic written once over both, and the isolate's state (views,
//! fills in flight, counters).

pub mod isolate;
pub mod l1;
pub mod l2;
pub mod lookup;
pub mod relay;
