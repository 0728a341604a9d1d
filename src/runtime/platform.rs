//! The few runtime facilities the rest needs from JavaScript: time, timers and randomness.

use edgecache_core::write_body::new_record_id;
use worker::js_sys::{self, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};

/// Milliseconds since the Unix epoch: `Date.now()`, one call and no object (`worker::Date`
/// makes a `Date` and asks it the time, two calls, and a hit asks the time several times).
pub fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// Cryptographically random bytes from `crypto.getRandomValues`; an error if the runtime has none
/// (never a predictable fallback: tokens are made from these).
pub fn random_bytes<const N: usize>() -> worker::Result<[u8; N]> {
    let array = Uint8Array::new_with_length(N as u32);
    let filled = Reflect::get(&js_sys::global(), &JsValue::from_str("crypto"))
        .ok()
        .and_then(|crypto| {
            let f = Reflect::get(&crypto, &JsValue::from_str("getRandomValues")).ok()?;
            f.dyn_into::<js_sys::Function>()
                .ok()?
                .call1(&crypto, &array)
                .ok()
        });
    filled
        .ok_or_else(|| worker::Error::RustError("crypto.getRandomValues is unavailable".into()))?;
    let mut out = [0u8; N];
    array.copy_to(&mut out);
    Ok(out)
}

/// A random UUID (version 4) for records created without an id.
pub fn new_id() -> worker::Result<String> {
    Ok(new_record_id(random_bytes::<16>()?))
}

/// `future`'s output, or `None` if it takes longer than `ms` (it is then dropped).
pub async fn within<F: std::future::Future>(ms: u64, future: F) -> Option<F::Output> {
    use futures_util::future::{select, Either};
    let timer = worker::Delay::from(std::time::Duration::from_millis(ms));
    futures_util::pin_mut!(future);
    match select(future, timer).await {
        Either::Left((out, _)) => Some(out),
        Either::Right(_) => None,
    }
}

/// Resolves once the runtime has run everything else that was ready and polled its sockets: a
/// zero-delay timer, which the runtime's event loop (KJ's) fires only after it ran out of
/// queued work and asked the OS for I/O. It never polls while work is queued, so a busy chain
/// that never waits on a timer or a socket keeps requests already at the door unread.
pub async fn after_pending_io() {
    worker::Delay::from(std::time::Duration::ZERO).await;
}
