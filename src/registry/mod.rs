//! `TenantRegistry`: the Durable Object holding every tenant, and the typed call to it.

pub mod client;
pub mod object;
