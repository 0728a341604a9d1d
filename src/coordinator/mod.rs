//! `TableCoordinator`: the Durable Object of one table (`object`, its routing), what it does
//! (`register`, `write`, `invalidate`, `rehydrate`, `shadow`, learned `semantics` and
//! `answer_through`, and an operator's `forget` of them), its storage (`graph` over a `store`), its
//! write queue, and the edge's typed client for it.

pub mod answer_through;
pub mod client;
pub mod forget;
pub mod graph;
pub mod invalidate;
pub mod object;
pub mod queue;
pub mod register;
pub mod rehydrate;
pub mod semantics;
pub mod shadow;
pub mod store;
pub mod write;

#[cfg(test)]
mod fixtures;
