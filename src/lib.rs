//! EdgeCache: an API edge cache for Cloudflare Workers that knows exactly which cached responses
//! a write makes stale. See DESIGN.md for the architecture and the consistency invariants.

pub mod auth;
pub mod cache;
pub mod config;
pub mod dependency;
pub mod durable;
pub mod origin;
pub mod platform;
pub mod router;

use worker::{event, Context, Env, Request, Response};

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    router::handle(req, env, ctx).await
}
