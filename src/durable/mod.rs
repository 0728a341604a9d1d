//! Durable Objects: the per-table `TableCoordinator` (and its storage and protocol).

pub mod client;
pub mod coordinator;
pub mod graph;
pub mod protocol;
pub mod queue;
pub mod registry;
pub mod stub;
