//! The edge's cache tiers: L1 (isolate memory, byte-bounded LRU) and L2 (the Cache API of the
//! data centre), and the lookup logic written once over both.

pub mod edge;
pub mod entry;
pub mod fill;
pub mod l1;
pub mod l2;
pub mod lookup;
pub mod outcome;
