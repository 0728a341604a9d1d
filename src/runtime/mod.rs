//! The thin layer over the Workers runtime that everything with I/O shares: bindings and
//! configuration, request bodies and JSON answers, calls to Durable Objects, time and randomness.

pub mod env;
pub mod http;
pub mod platform;
pub mod stub;
