//! EdgeCache: an API edge cache for Cloudflare Workers that knows exactly which cached responses
//! a write makes stale. `ARCHITECTURE.md` has the shape and the dependency rule; in short:
//!
//! `edgecache_core` (pure) ← `runtime` ← {`origin`, `cache`} ← {`coordinator`, `registry`} ←
//! `edge`. Nothing imports the edge; `scripts/check-layout.mjs` fails the tests otherwise.

pub mod cache;
pub mod coordinator;
pub mod edge;
pub mod origin;
pub mod registry;
pub mod runtime;

use worker::{event, Context, Env, Request, Response, ScheduleContext, ScheduledEvent};

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    edge::handle(req, env, ctx).await
}

#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    edge::scheduled(event, env).await
}
