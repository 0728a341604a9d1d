//! `TableCoordinator`: the Durable Object of one table, its storage (the dependency graph), its
//! write queue, and the edge's typed client for it.

pub mod client;
pub mod graph;
pub mod object;
pub mod queue;
