//! A small JSON REST API for the tests to put behind EdgeCache: a real HTTP server on
//! 127.0.0.1, in the test process, that behaves like a team's own API would.
//!
//! * Every request must carry the tenant's origin credential (`x-origin-key`), else 403.
//! * Writes (`POST/PUT/PATCH/DELETE /v1/notes[/<id>]`) need a user's `Authorization: Bearer
//!   user-<name>`, else 401; the note records who wrote it. Every write bumps the note's
//!   `version`.
//! * `GET /v1/notes` and `/v1/notes/<id>` are public (`Cache-Control: public, max-age=3600`).
//! * `GET /v1/me` answers the caller's own profile, `Cache-Control: private`.
//!
//! Every request is logged with its headers, so a test can see what EdgeCache sent.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

/// The origin credential's header.
pub const ORIGIN_KEY_HEADER: &str = "x-origin-key";

/// One request as the API received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    notes: BTreeMap<String, Value>,
    seen: Vec<Seen>,
}

/// A running API.
pub struct TestApi {
    /// `http://127.0.0.1:<port>`
    pub base_url: String,
    /// The credential it requires of every request.
    pub origin_key: String,
    state: Arc<Mutex<State>>,
}

impl TestApi {
    /// Starts the API on a free port; it runs until the test process ends.
    pub fn start(origin_key: &str) -> TestApi {
        let state = Arc::new(Mutex::new(State::default()));
        let (server, key) = (state.clone(), origin_key.to_string());
        let base_url = serve_http(move |seen, body| {
            let (status, cache_control, text) = answer(&server, &key, seen, body);
            let mut headers = json_headers();
            headers.push(("cache-control".into(), cache_control.into()));
            (status, headers, text)
        });
        TestApi {
            base_url,
            origin_key: origin_key.to_string(),
            state,
        }
    }

    /// Puts a note straight into the API's data (as another client of the API would).
    pub fn put_note(&self, id: &str, text: &str) {
        let mut s = self.state.lock().unwrap();
        let version = s
            .notes
            .get(id)
            .map_or(0, |n| n["version"].as_u64().unwrap_or(0))
            + 1;
        s.notes.insert(
            id.to_string(),
            json!({"id": id, "text": text, "version": version, "by": "seed"}),
        );
    }

    /// A note as the API holds it.
    pub fn note(&self, id: &str) -> Option<Value> {
        self.state.lock().unwrap().notes.get(id).cloned()
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Requests received for `method target`.
    pub fn seen_at(&self, method: &str, target: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == method && s.target == target)
            .collect()
    }
}

type Answer = (u16, &'static str, String);

fn answer(state: &Mutex<State>, origin_key: &str, req: &Seen, body: &[u8]) -> Answer {
    let mut s = state.lock().unwrap();
    s.seen.push(req.clone());
    if req.header(ORIGIN_KEY_HEADER) != Some(origin_key) {
        return error(403, "no_origin_key", "this API serves only its edge");
    }
    let user = req
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer user-"))
        .map(str::to_string);
    let path = req.target.split('?').next().unwrap_or("");
    let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    let public = "public, max-age=3600";
    match (req.method.as_str(), segments.as_slice()) {
        ("GET", ["notes"]) => {
            let notes: Vec<&Value> = s.notes.values().collect();
            (200, public, json!({ "data": notes }).to_string())
        }
        ("GET", ["notes", id]) => match s.notes.get(*id) {
            Some(n) => (200, public, json!({ "data": n }).to_string()),
            None => error(404, "not_found", "no such note"),
        },
        ("GET", ["me"]) => match user {
            Some(u) => (
                200,
                "private",
                json!({"data": {"user": u, "secret": format!("{u}'s own data")}}).to_string(),
            ),
            None => error(401, "unauthorized", "who are you?"),
        },
        (method, ["notes", ..]) if user.is_none() => {
            let _ = method;
            error(401, "unauthorized", "writes need a user")
        }
        ("POST", ["notes"]) | ("PUT" | "PATCH", ["notes", _]) => {
            let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
                return error(400, "bad_body", "a JSON object");
            };
            let id = match segments.as_slice() {
                [_, id] => id.to_string(),
                _ => fields
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("generated")
                    .to_string(),
            };
            let existing = s.notes.get(&id).cloned();
            if req.method == "PATCH" && existing.is_none() {
                return error(404, "not_found", "no such note");
            }
            let mut note = existing.clone().unwrap_or_else(|| json!({"id": id}));
            for (k, v) in fields {
                note[k] = v;
            }
            let version = existing.map_or(0, |n| n["version"].as_u64().unwrap_or(0)) + 1;
            note["version"] = json!(version);
            note["by"] = json!(user);
            s.notes.insert(id, note.clone());
            let status = if req.method == "POST" { 201 } else { 200 };
            (status, "no-store", json!({ "data": note }).to_string())
        }
        ("DELETE", ["notes", id]) => match s.notes.remove(*id) {
            Some(_) => (204, "no-store", String::new()),
            None => error(404, "not_found", "no such note"),
        },
        _ => error(404, "not_found", "nothing here"),
    }
}

fn error(status: u16, code: &str, message: &str) -> Answer {
    (
        status,
        "no-store",
        json!({"error": {"code": code, "message": message}}).to_string(),
    )
}

/// Reads one HTTP/1.1 request from `stream`: the request as [`Seen`] and its body; `None` if
/// the connection ended first. The test origins' one parser.
pub fn read_request(stream: &TcpStream) -> Option<(Seen, Vec<u8>)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    let mut length = 0;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if k == "content-length" {
                length = v.parse().unwrap_or(0);
            }
            headers.push((k, v));
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let seen = Seen {
        method,
        target,
        headers,
    };
    Some((seen, body))
}

/// What a test origin answers a request: status, headers (`content-length` and
/// `connection: close` are added), body.
pub type Reply = (u16, Vec<(String, String)>, String);

/// `content-type: application/json`, for [`Reply`] headers.
pub fn json_headers() -> Vec<(String, String)> {
    vec![("content-type".into(), "application/json".into())]
}

/// Serves HTTP/1.1 on a free port of 127.0.0.1 until the test process ends, a thread per
/// connection, each request answered by `answer`; answers the base URL. The test origins' one
/// server.
pub fn serve_http<F>(answer: F) -> String
where
    F: Fn(&Seen, &[u8]) -> Reply + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let answer = answer.clone();
            std::thread::spawn(move || {
                let Some((seen, body)) = read_request(&stream) else {
                    return;
                };
                let (status, headers, text) = answer(&seen, &body);
                let mut out = format!(
                    "HTTP/1.1 {status} X\r\nconnection: close\r\ncontent-length: {}\r\n",
                    text.len()
                );
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&text);
                let _ = stream.write_all(out.as_bytes());
            });
        }
    });
    base_url
}
