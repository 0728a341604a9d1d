//! `warm`: fetch a list of paths through the cache with bounded concurrency, so the first real
//! user of each finds it filled.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::io::{self, IsTerminal};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::api::describe;
use crate::error::CliError;
use crate::path::strip_scheme;

/// Response header naming the tier that answered.
const CACHE_HEADER: &str = "x-edgecache";

/// Key in the summary for successful answers without an `x-edgecache` header.
const NO_HEADER: &str = "(none)";

/// One line of a warm file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A path of the tenant's API, fetched as `{endpoint}/t/{tenant}{path}`.
    Path(String),
    /// A full URL, fetched as is.
    Url(String),
}

impl Target {
    /// The URL to fetch; `tenant_base` is `{endpoint}/t/{tenant}`.
    pub fn url(&self, tenant_base: Option<&str>) -> String {
        match (self, tenant_base) {
            (Self::Url(url), _) => url.clone(),
            (Self::Path(path), Some(base)) => format!("{base}{path}"),
            (Self::Path(path), None) => {
                unreachable!("caller resolves a tenant base before fetching path {path}")
            }
        }
    }
}

/// Parses a warm file: one path or URL a line, blank lines and `#` comment lines skipped.
pub fn parse_list(text: &str) -> Result<Vec<Target>, CliError> {
    let mut targets = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if strip_scheme(line).is_some() {
            targets.push(Target::Url(line.to_string()));
        } else if line.starts_with('/') {
            targets.push(Target::Path(line.to_string()));
        } else {
            return Err(CliError::Usage(format!(
                "line {}: '{line}' is neither a path starting with / nor an http(s) URL",
                index + 1
            )));
        }
    }
    Ok(targets)
}

/// What happened to one URL.
#[derive(Clone, Debug)]
pub struct Fetch {
    /// The URL requested.
    pub url: String,
    /// Its outcome.
    pub outcome: Outcome,
    /// How long it took.
    pub elapsed: Duration,
}

/// The outcome of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered.
    Answered {
        /// HTTP status.
        status: u16,
        /// The `x-edgecache` header, if present.
        cache: Option<String>,
    },
    /// No answer: connection refused, DNS, timeout…
    Failed {
        /// What went wrong.
        error: String,
        /// True when nothing could be connected to, as opposed to a broken answer.
        connect: bool,
    },
}

impl Fetch {
    /// A 2xx answer.
    pub fn ok(&self) -> bool {
        matches!(self.outcome, Outcome::Answered { status, .. } if (200..300).contains(&status))
    }

    /// One line for plain output.
    pub fn line(&self) -> String {
        let ms = self.elapsed.as_millis();
        match &self.outcome {
            Outcome::Answered { status, cache } => {
                let cache = cache.as_deref().unwrap_or("-");
                format!("{status} {cache} {ms}ms {}", self.url)
            }
            Outcome::Failed { error, .. } => format!("ERR {}: {error}", self.url),
        }
    }

    /// Why it failed, or `None` if it succeeded.
    fn failure(&self) -> Option<String> {
        match &self.outcome {
            _ if self.ok() => None,
            Outcome::Answered { status, .. } => Some(format!("HTTP {status}")),
            Outcome::Failed { error, .. } => Some(error.clone()),
        }
    }
}

/// Fetches every URL with at most `concurrency` requests in flight, calling `on_done` on the
/// calling thread as each finishes, and returns the fetches in completion order.
pub fn run(
    agent: &ureq::Agent,
    urls: &[String],
    concurrency: usize,
    mut on_done: impl FnMut(&Fetch),
) -> Vec<Fetch> {
    let workers = concurrency.clamp(1, urls.len().max(1));
    let next = AtomicUsize::new(0);
    let (sender, receiver) = mpsc::channel();
    let mut fetches = Vec::with_capacity(urls.len());
    thread::scope(|scope| {
        for _ in 0..workers {
            let sender = sender.clone();
            let next = &next;
            scope.spawn(move || {
                // Workers pull the next index rather than owning a fixed slice, so one slow URL
                // never leaves other workers idle.
                while let Some(url) = urls.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if sender.send(fetch(agent, url)).is_err() {
                        break;
                    }
                }
            });
        }
        // Dropping the original sender lets the loop below end when the workers are done.
        drop(sender);
        for done in receiver {
            on_done(&done);
            fetches.push(done);
        }
    });
    fetches
}

fn fetch(agent: &ureq::Agent, url: &str) -> Fetch {
    let started = Instant::now();
    let answered = |response: ureq::Response| {
        let status = response.status();
        let cache = response.header(CACHE_HEADER).map(str::to_string);
        // Read the whole body: the request is only complete, and the fill only certain, once
        // the body has been consumed.
        match io::copy(&mut response.into_reader(), &mut io::sink()) {
            Ok(_) => Outcome::Answered { status, cache },
            Err(err) => Outcome::Failed {
                error: format!("reading the body: {err}"),
                connect: false,
            },
        }
    };
    let outcome = match agent.get(url).call() {
        Ok(response) => answered(response),
        Err(ureq::Error::Status(_, response)) => answered(response),
        Err(ureq::Error::Transport(transport)) => Outcome::Failed {
            connect: matches!(
                transport.kind(),
                ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns
            ),
            error: describe(&transport),
        },
    };
    Fetch {
        url: url.to_string(),
        outcome,
        elapsed: started.elapsed(),
    }
}

/// The end-of-run summary, also the `--json` output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// URLs requested.
    pub total: usize,
    /// 2xx answers.
    pub ok: usize,
    /// Everything else.
    pub failed: usize,
    /// Successful answers by `x-edgecache` value (`MISS`, `HIT-L1`, …).
    pub by_x_edgecache: BTreeMap<String, usize>,
    /// Wall time of the whole run.
    pub elapsed_ms: u128,
    /// Each failure and why.
    pub failures: Vec<Failure>,
}

/// One failed URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The URL.
    pub url: String,
    /// `HTTP 404`, or the transport error.
    pub error: String,
}

impl Summary {
    /// Tallies finished fetches.
    pub fn new(fetches: &[Fetch], elapsed: Duration) -> Self {
        let mut by_x_edgecache = BTreeMap::new();
        let mut failures = Vec::new();
        for done in fetches {
            match done.failure() {
                Some(error) => failures.push(Failure {
                    url: done.url.clone(),
                    error,
                }),
                None => {
                    if let Outcome::Answered { cache, .. } = &done.outcome {
                        let key = cache.clone().unwrap_or_else(|| NO_HEADER.to_string());
                        *by_x_edgecache.entry(key).or_insert(0) += 1;
                    }
                }
            }
        }
        Self {
            total: fetches.len(),
            ok: fetches.len() - failures.len(),
            failed: failures.len(),
            by_x_edgecache,
            elapsed_ms: elapsed.as_millis(),
            failures,
        }
    }

    /// The human summary.
    pub fn render(&self) -> String {
        let mut out = format!(
            "warmed {} URL{} in {:.2}s: {} ok, {} failed\n",
            self.total,
            if self.total == 1 { "" } else { "s" },
            self.elapsed_ms as f64 / 1000.0,
            self.ok,
            self.failed
        );
        if !self.by_x_edgecache.is_empty() {
            let counts: Vec<String> = self
                .by_x_edgecache
                .iter()
                .map(|(value, count)| format!("{value} {count}"))
                .collect();
            let _ = writeln!(out, "x-edgecache: {}", counts.join(", "));
        }
        out
    }

    /// The exit status: failures fail the command, and a run where nothing could even be
    /// connected to is reported as an unreachable endpoint.
    pub fn result(&self, fetches: &[Fetch]) -> Result<(), CliError> {
        if self.failed == 0 {
            return Ok(());
        }
        let all_unreachable = self.ok == 0
            && fetches
                .iter()
                .all(|f| matches!(f.outcome, Outcome::Failed { connect: true, .. }));
        match fetches.first() {
            Some(first) if all_unreachable => Err(CliError::Unreachable {
                endpoint: first.url.clone(),
                detail: first.failure().unwrap_or_default(),
            }),
            _ => Err(CliError::WarmFailed {
                failed: self.failed,
                total: self.total,
            }),
        }
    }
}

/// How progress is shown while warming.
pub enum Progress {
    /// A bar on the terminal (stderr), with failures printed above it.
    Bar(ProgressBar),
    /// One line per URL on stdout, for logs and pipes.
    Lines,
    /// Nothing until the end (`--json` without a terminal).
    Quiet,
}

impl Progress {
    /// A bar when stderr is a terminal, else lines, or nothing in `--json` mode.
    pub fn choose(total: usize, json: bool) -> Self {
        if io::stderr().is_terminal() {
            let bar = ProgressBar::new(total as u64);
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
            )
            .expect("the progress template is a valid constant");
            bar.set_style(style);
            Self::Bar(bar)
        } else if json {
            Self::Quiet
        } else {
            Self::Lines
        }
    }

    /// Reports one finished fetch.
    pub fn done(&self, fetch: &Fetch) {
        match self {
            Self::Bar(bar) => {
                if !fetch.ok() {
                    bar.println(fetch.line());
                }
                bar.inc(1);
            }
            Self::Lines => println!("{}", fetch.line()),
            Self::Quiet => {}
        }
    }

    /// Removes the bar before the summary is printed.
    pub fn finish(&self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_urls_comments_and_blanks() {
        let text = "# warm the hot lists\n\n  /v1/users?limit=10  \n\
                    https://edge.example.com/t/acme/v1/orders\n\t# indented comment\n/v1/users/1\n";
        assert_eq!(
            parse_list(text).unwrap(),
            vec![
                Target::Path("/v1/users?limit=10".into()),
                Target::Url("https://edge.example.com/t/acme/v1/orders".into()),
                Target::Path("/v1/users/1".into()),
            ]
        );
        assert!(parse_list("").unwrap().is_empty());
    }

    #[test]
    fn names_the_bad_line() {
        let err = parse_list("/v1/ok\n\nv1/users\n").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().starts_with("line 3: 'v1/users'"), "{err}");
    }

    #[test]
    fn builds_urls() {
        let base = Some("http://127.0.0.1:8787/t/acme");
        assert_eq!(
            Target::Path("/v1/users".into()).url(base),
            "http://127.0.0.1:8787/t/acme/v1/users"
        );
        assert_eq!(Target::Url("http://x/y".into()).url(None), "http://x/y");
    }

    fn fetch(url: &str, outcome: Outcome) -> Fetch {
        Fetch {
            url: url.into(),
            outcome,
            elapsed: Duration::from_millis(5),
        }
    }

    fn answered(status: u16, cache: Option<&str>) -> Outcome {
        Outcome::Answered {
            status,
            cache: cache.map(str::to_string),
        }
    }

    #[test]
    fn summarises() {
        let fetches = vec![
            fetch("/a", answered(200, Some("MISS"))),
            fetch("/b", answered(200, Some("MISS"))),
            fetch("/c", answered(200, Some("HIT-L1"))),
            fetch("/d", answered(200, None)),
            fetch("/e", answered(404, Some("BYPASS"))),
            fetch(
                "/f",
                Outcome::Failed {
                    error: "timed out".into(),
                    connect: false,
                },
            ),
        ];
        let summary = Summary::new(&fetches, Duration::from_millis(1234));
        assert_eq!((summary.total, summary.ok, summary.failed), (6, 4, 2));
        assert_eq!(summary.by_x_edgecache["MISS"], 2);
        assert_eq!(summary.by_x_edgecache[NO_HEADER], 1);
        assert_eq!(summary.failures[0].error, "HTTP 404");
        assert_eq!(
            summary.render(),
            "warmed 6 URLs in 1.23s: 4 ok, 2 failed\nx-edgecache: (none) 1, HIT-L1 1, MISS 2\n"
        );
        assert!(matches!(
            summary.result(&fetches),
            Err(CliError::WarmFailed {
                failed: 2,
                total: 6
            })
        ));
    }

    #[test]
    fn all_connection_failures_mean_unreachable() {
        let refused = || Outcome::Failed {
            error: "refused".into(),
            connect: true,
        };
        let fetches = vec![
            fetch("http://x/a", refused()),
            fetch("http://x/b", refused()),
        ];
        let summary = Summary::new(&fetches, Duration::ZERO);
        assert_eq!(summary.result(&fetches).unwrap_err().exit_code(), 3);
        let empty = Summary::new(&[], Duration::ZERO);
        assert!(empty.result(&[]).is_ok());
    }

    #[test]
    fn lines_show_status_header_and_errors() {
        assert_eq!(
            fetch("http://x/a", answered(200, Some("HIT-L2"))).line(),
            "200 HIT-L2 5ms http://x/a"
        );
        let failed = fetch(
            "http://x/a",
            Outcome::Failed {
                error: "refused".into(),
                connect: true,
            },
        );
        assert_eq!(failed.line(), "ERR http://x/a: refused");
    }
}
