//! Test harness: runs the real worker under `wrangler dev` (workerd with local D1, Durable
//! Objects and the Cache API) on a free port with a fresh state directory, and talks HTTP to it.
//!
//! One worker per test binary (`Worker::shared`), or a private one with extra vars
//! (`Worker::start_with`). A guardian process stops wrangler and its workerd children by process
//! group once the test process is gone, however it ends (pass, fail, panic or kill).

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod api;
pub mod history;

/// A running worker.
pub struct Worker {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    /// The wrangler log, for failure messages.
    pub log: PathBuf,
    agent: ureq::Agent,
}

/// One HTTP answer, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `x-edgecache` outcome header.
    pub fn outcome(&self) -> &str {
        self.header("x-edgecache").unwrap_or("")
    }

    /// The body as JSON (panics with the body text if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `error.code` of an error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The repository root (the harness is also used by the CLI's tests, one level down).
fn root() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    while !dir.join("wrangler.toml").exists() {
        assert!(
            dir.pop(),
            "no wrangler.toml above {}",
            env!("CARGO_MANIFEST_DIR")
        );
    }
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run_script(script: &str) -> String {
    let out = Command::new("bash")
        .arg(root().join(script))
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

static BUILT: OnceLock<PathBuf> = OnceLock::new();

/// Builds the worker bundle (once per test binary; `npm test` has built it already, so this is
/// a no-op there) and prepares the seeded D1 template state; returns the template's path.
fn prepare() -> &'static Path {
    BUILT.get_or_init(|| {
        if !root().join("build/index.js").exists() {
            run_script("scripts/build-worker.sh");
        }
        PathBuf::from(run_script("scripts/prepare-state.sh"))
    })
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success(), "copying {from:?} to {to:?}");
}

static SHARED: OnceLock<Worker> = OnceLock::new();

/// The operator token every test worker is started with.
pub const OPERATOR_TOKEN: &str = "eco_test_operator_token";

/// The default tenant's deployment write key (`EDGECACHE_WRITE_KEY`) every test worker is
/// started with. The harness presents it on writes (see [`Worker::try_request`]); tests of
/// what happens without a key use [`Worker::anonymous`].
pub const WRITE_KEY: &str = "eck_test_write_key";

impl Worker {
    /// The worker shared by every test of this binary.
    pub fn shared() -> &'static Worker {
        SHARED.get_or_init(|| Worker::start_with(&[]))
    }

    /// Starts a private worker with extra `--var NAME:VALUE` settings. A start that fails (the
    /// runtime can lose a race for a port picked a moment earlier) is tried again, with fresh
    /// ports and state, up to three times in all.
    pub fn start_with(vars: &[(&str, &str)]) -> Worker {
        Worker::start_with_args(vars, &[])
    }

    /// A private worker whose cron trigger runs on `GET /__scheduled?cron=…` (wrangler's
    /// `--test-scheduled`), for the website demo's scheduled reset.
    pub fn start_with_cron(vars: &[(&str, &str)]) -> Worker {
        Worker::start_with_args(vars, &["--test-scheduled"])
    }

    fn start_with_args(vars: &[(&str, &str)], args: &[&str]) -> Worker {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Worker::try_start(vars, args) {
                Ok(worker) => return worker,
                Err(e) => failures.push(e),
            }
        }
        panic!("the worker did not start:\n{}", failures.join("\n---\n"));
    }

    fn try_start(vars: &[(&str, &str)], args: &[&str]) -> Result<Worker, String> {
        let template = prepare();
        let state = std::env::temp_dir().join(format!(
            "edgecache-test-{}-{}",
            std::process::id(),
            free_port()
        ));
        copy_dir(template, &state);
        let port = free_port();
        let log = state.join("wrangler.log");
        let env_file = state.join("test.env");
        std::fs::write(&env_file, "").unwrap();
        let log_file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(root().join("node_modules/.bin/wrangler"));
        cmd.args(["dev", "--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(["--inspector-port", &free_port().to_string()])
            .arg("--persist-to")
            .arg(&state)
            .args([
                "--log-level",
                "warn",
                "--show-interactive-dev-session=false",
            ])
            // An env file of its own (empty), so wrangler does not load the developer's
            // `.dev.vars` (written by `npm run dev`): a test sees only the vars it sets.
            .arg("--env-file")
            .arg(&env_file)
            .args(args)
            .args(["--var", "EDGECACHE_TEST_HOOKS:1"])
            .args([
                "--var",
                &format!("EDGECACHE_OPERATOR_TOKEN:{OPERATOR_TOKEN}"),
            ])
            .args(["--var", &format!("EDGECACHE_WRITE_KEY:{WRITE_KEY}")]);
        for (k, v) in vars {
            cmd.args(["--var", &format!("{k}:{v}")]);
        }
        cmd.current_dir(root())
            .env("EDGECACHE_SKIP_BUILD", "1")
            // A dev registry of its own: by default every wrangler session of this worker name
            // (a developer's `npm run dev`, other test binaries) registers in one shared place.
            .env("WRANGLER_REGISTRY_PATH", state.join("registry"))
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CI", "true")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .process_group(0);
        let mut child = cmd
            .spawn()
            .expect("wrangler starts (run `npm test` to install it)");
        guard(child.id());
        let worker = Worker {
            base: format!("http://127.0.0.1:{port}"),
            log,
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(60))
                // No pooling: wrangler's front proxy closes idle keep-alive connections after a
                // few seconds, and a request sent on one of those fails with "unexpected end of
                // file" before reaching the worker.
                .max_idle_connections(0)
                .build(),
        };
        if let Err(e) = worker.wait_ready(&mut child) {
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .status();
            return Err(e);
        }
        Ok(worker)
    }

    fn wait_ready(&self, child: &mut std::process::Child) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "wrangler exited ({status}) before answering; log:\n{}",
                    self.log_tail()
                ));
            }
            if let Ok(a) = self.try_request("GET", "/v1/users/123-abc", &[], None) {
                if a.status == 200 {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(format!(
            "the worker did not answer within 120 s; log:\n{}",
            self.log_tail()
        ))
    }

    /// The last lines of the wrangler log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Sends a request as a client holding the default tenant's write key: a write (any
    /// method but GET and HEAD) that names no credential of its own carries `x-edgecache-key:
    /// WRITE_KEY`. `Err` if no answer came back (connection reset, timeout).
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Answer, String> {
        let names_credential = headers.iter().any(|(k, _)| {
            k.eq_ignore_ascii_case("authorization") || k.eq_ignore_ascii_case("x-edgecache-key")
        });
        let mut headers = headers.to_vec();
        if !matches!(method, "GET" | "HEAD") && !names_credential {
            headers.push(("x-edgecache-key", WRITE_KEY));
        }
        self.try_send(method, path, &headers, body)
    }

    /// Sends a request exactly as given: no key is added.
    pub fn anonymous(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Answer {
        self.try_send(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\nworker log:\n{}", self.log_tail()))
    }

    fn try_send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Answer, String> {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        };
        // Identity unless a test asks otherwise: in workspace builds ureq gains its gzip
        // feature (the CLI enables it), and it then fails decoding the empty body of a 304/204
        // that carries `content-encoding: gzip`.
        let mut req = self
            .agent
            .request(method, &url)
            .set("accept-encoding", "identity");
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let result = match body {
            Some(b) => req.send_bytes(b),
            None => req.call(),
        };
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(e.to_string()),
        };
        let status = resp.status();
        let headers = resp
            .headers_names()
            .into_iter()
            .filter_map(|n| resp.header(&n).map(|v| (n.clone(), v.to_string())))
            .collect();
        let mut body = Vec::new();
        if !matches!(status, 204 | 304) {
            resp.into_reader()
                .read_to_end(&mut body)
                .map_err(|e| e.to_string())?;
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Sends a request; panics (with the worker log) if the worker cannot be reached.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Answer {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\nworker log:\n{}", self.log_tail()))
    }

    /// GET.
    pub fn get(&self, path: &str) -> Answer {
        self.request("GET", path, &[], None)
    }

    /// GET with headers.
    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.request("GET", path, headers, None)
    }

    /// A JSON write.
    pub fn send_json(&self, method: &str, path: &str, body: &Value) -> Answer {
        self.request(
            method,
            path,
            &[("content-type", "application/json")],
            Some(body.to_string().as_bytes()),
        )
    }
}

/// Starts a detached guardian that kills the worker's process group when this test process ends.
fn guard(pgid: u32) {
    let me = std::process::id();
    // SIGKILL: nothing of a finished test binary's worker is worth a graceful shutdown.
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 0.1; done; kill -KILL -{pgid} 2>/dev/null; true"
    );
    // Deliberately not waited for: it must outlive this process.
    #[allow(clippy::zombie_processes)]
    Command::new("bash")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("guardian starts");
}

impl Worker {
    /// Replaces the injected faults (`fail_reads`, `read_delay_ms`, `disable_l1`, …).
    pub fn faults(&self, faults: Value) {
        let a = self.send_json("PUT", "/_edgecache/test/faults", &faults);
        assert_eq!(a.status, 200, "setting faults: {}", a.text());
    }

    /// An admin call with the operator token.
    pub fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        self.admin_as(OPERATOR_TOKEN, method, path, body)
    }

    /// An admin call with a given bearer token.
    pub fn admin_as(&self, token: &str, method: &str, path: &str, body: Option<&Value>) -> Answer {
        let auth = format!("Bearer {token}");
        let text = body.map(|b| b.to_string());
        self.request(
            method,
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            text.as_deref().map(str::as_bytes),
        )
    }

    /// Reads `path` twice: a MISS that fills, then (after a short pause, so the test is about
    /// the tiers and not about coalescing) an L1 hit with the same body. Returns the MISS.
    pub fn fill(&self, path: &str) -> Answer {
        let a = self.get_debug(path);
        assert_eq!(
            (a.status, a.outcome()),
            (200, "MISS"),
            "{path}: {}",
            a.text()
        );
        std::thread::sleep(Duration::from_millis(100));
        let b = self.get_debug(path);
        assert_eq!(
            b.outcome(),
            "HIT-L1",
            "{path}: second read\nfirst: {:?}\nsecond: {:?}",
            a.headers,
            b.headers
        );
        assert_eq!(b.body, a.body, "{path}");
        a
    }

    /// Reads `path` until it is an L1 hit and returns that hit. A fill can be refused (a write
    /// overtook it; the refusal refreshes the view), so this may take a couple of reads.
    pub fn warm(&self, path: &str) -> Answer {
        for _ in 0..5 {
            let a = self.get(path);
            assert_eq!(a.status, 200, "{path}: {}", a.text());
            if a.outcome() == "HIT-L1" {
                return a;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{path} never became an L1 hit");
    }

    /// This isolate's counters for the default tenant.
    pub fn stats(&self) -> Value {
        let a = self.admin("GET", "/_edgecache/stats", None);
        assert_eq!(a.status, 200, "stats: {}", a.text());
        a.json()
    }

    /// The seq of `path`'s last invalidation at `table`'s coordinator, if any
    /// (`/_edgecache/deps` of the default tenant).
    pub fn last_invalidated(&self, path: &str, table: &str) -> Option<u64> {
        let a = self.admin(
            "GET",
            &format!("/_edgecache/deps?url={}", urlencode(path)),
            None,
        );
        assert_eq!(a.status, 200, "deps of {path}: {}", a.text());
        a.json()["coordinators"][table]["last_invalidated"]["seq"].as_u64()
    }

    /// A write's read-your-writes token (`users=18`).
    pub fn token_of(a: &Answer) -> String {
        a.header("x-edgecache-seq")
            .expect("writes carry x-edgecache-seq")
            .to_string()
    }

    /// Creates a tenant on the built-in origin (on purpose: it shares the default tenant's
    /// data) under a unique name made from `prefix` and
    /// returns the admin API's answer (`tenant`, `admin_token`, `webhook_secret`).
    pub fn create_tenant(&self, prefix: &str) -> Value {
        let name = unique_name(prefix);
        let a = self.admin(
            "POST",
            "/_edgecache/admin/tenants",
            Some(&serde_json::json!({ "name": name, "origin": {"kind": "d1"} })),
        );
        assert_eq!(a.status, 201, "{}", a.text());
        let body = a.json();
        assert_eq!(body["tenant"]["name"], name.as_str());
        body
    }

    /// Creates a user with a unique id and returns the id.
    pub fn create_user(&self, prefix: &str, first_name: &str) -> String {
        let id = unique(prefix);
        let a = self.send_json(
            "POST",
            "/v1/users",
            &serde_json::json!({"id": id, "firstName": first_name, "lastName": "Test", "email": format!("{id}@example.com"), "city": "Testville"}),
        );
        assert_eq!(a.status, 201, "creating {id}: {}", a.text());
        id
    }
}

/// A string unique within this test run (process id, time and a counter).
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    format!(
        "{prefix}-{}-{t}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A [`unique`] name that is also a valid tenant (or key) name: lowercase letters, digits and
/// `-`, at most 60 characters.
pub fn unique_name(prefix: &str) -> String {
    unique(prefix)
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(60)
        .collect()
}

// ---- Helpers added for the consistency / tiers / faults / webhook / workload tests. ----

/// Locks a test-serializing mutex, ignoring poisoning (a failed test must not fail the others).
pub fn serial(m: &'static std::sync::Mutex<()>) -> std::sync::MutexGuard<'static, ()> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Faults (and views) are isolate-wide: a test that injects them holds its worker's lock for
/// its whole run, and the faults are cleared when it ends, however it ends (before the lock is
/// released).
pub struct Faulted<'w> {
    w: &'w Worker,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl<'w> Faulted<'w> {
    /// Takes `lock` (one per worker) and starts with no faults.
    pub fn on(w: &'w Worker, lock: &'static std::sync::Mutex<()>) -> Faulted<'w> {
        let lock = serial(lock);
        w.faults(serde_json::json!({}));
        Faulted { w, _lock: lock }
    }

    /// Replaces the faults.
    pub fn set(&self, faults: Value) {
        self.w.faults(faults);
    }
}

impl Drop for Faulted<'_> {
    fn drop(&mut self) {
        if !self.w.try_faults(&serde_json::json!({})) {
            eprintln!("could not reset the faults of {}", self.w.base);
        }
    }
}

/// Percent-encodes a query-parameter value (the worker's own encoder).
#[allow(unused_imports)] // not every test binary encodes URLs
pub use edgecache_core::codec::encode_component as urlencode;

/// A number inside a JSON document by dotted path (`edge.hits_l1`); 0 when absent.
pub fn num(v: &Value, path: &str) -> u64 {
    path.split('.').fold(v, |v, k| &v[k]).as_u64().unwrap_or(0)
}

impl Worker {
    /// One counter of `/_edgecache/stats` by dotted path (`edge.misses`, `l1.bytes`).
    pub fn stat(&self, path: &str) -> u64 {
        num(&self.stats(), path)
    }

    /// GET with the `x-edgecache-debug: 1` header (adds `x-edgecache-deps` and `-key`).
    pub fn get_debug(&self, path: &str) -> Answer {
        self.get_with(path, &[("x-edgecache-debug", "1")])
    }
}

impl Answer {
    /// The `name=value` pair of the `edgecache_seq` cookie a write set, ready for a `cookie`
    /// request header.
    pub fn seq_cookie(&self) -> String {
        let set = self
            .header("set-cookie")
            .expect("writes set the edgecache_seq cookie");
        set.split(';').next().unwrap().trim().to_string()
    }

    /// The fill stamp of `table` in `x-edgecache-deps` (debug reads only).
    pub fn stamp(&self, table: &str) -> Option<u64> {
        self.header("x-edgecache-deps")?
            .split(',')
            .filter_map(|p| p.trim().split_once('='))
            .find(|(t, _)| *t == table)
            .and_then(|(_, s)| s.parse().ok())
    }
}

/// The seq in a token such as `users=18`.
pub fn seq_of(token: &str) -> u64 {
    token
        .split_once('=')
        .and_then(|(_, n)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("not a token: {token}"))
}

impl Worker {
    /// Replaces the injected faults without panicking (for `Drop` guards that run while a test
    /// is already panicking); `true` if the worker accepted them.
    pub fn try_faults(&self, faults: &Value) -> bool {
        self.try_request(
            "PUT",
            "/_edgecache/test/faults",
            &[("content-type", "application/json")],
            Some(faults.to_string().as_bytes()),
        )
        .is_ok_and(|a| a.status == 200)
    }
}
