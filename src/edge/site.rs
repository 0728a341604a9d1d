//! The website at `/`: the home page with the live demo, the docs pages, the OpenAPI document
//! and their assets, all built into the wasm bundle from `site/` (no third-party requests, no
//! assets binding to configure). Pages are fragments wrapped in one layout, rendered once per
//! isolate and answered with an etag (304 on `If-None-Match`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use sha2::{Digest, Sha256};
use worker::{Request, Response};

use edgecache_core::beta::BetaJoined;
use edgecache_core::config::Config;
use edgecache_core::entry::if_none_match;
use edgecache_core::ApiError;

/// The layout every page is wrapped in.
const LAYOUT: &str = include_str!("../../site/layout.html");

/// A page: its path and its source (front matter lines for title and description, then the
/// content of `<main>`).
struct Page {
    path: &'static str,
    source: &'static str,
}

/// A page of `site/pages/`.
macro_rules! page {
    ($path:literal, $file:literal) => {
        Page {
            path: $path,
            source: include_str!(concat!("../../site/pages/", $file)),
        }
    };
}

/// Every page. The docs pages are listed in the docs navigation in this order.
const PAGES: &[Page] = &[
    page!("/", "index.html"),
    page!("/docs/", "docs/index.html"),
    page!("/docs/api", "docs/api.html"),
    page!("/docs/headers", "docs/headers.html"),
    page!("/docs/consistency", "docs/consistency.html"),
    page!("/docs/admin", "docs/admin.html"),
    page!("/docs/cli", "docs/cli.html"),
    page!("/docs/limits", "docs/limits.html"),
];

/// A file served as it is.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// A file of `site/`.
macro_rules! asset {
    ($path:literal, $type:literal, $file:literal) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!("../../site/", $file)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!(
        "/assets/site.css",
        "text/css; charset=utf-8",
        "assets/site.css"
    ),
    asset!(
        "/assets/demo.js",
        "text/javascript; charset=utf-8",
        "assets/demo.js"
    ),
    asset!("/favicon.svg", "image/svg+xml", "favicon.svg"),
    asset!("/robots.txt", "text/plain; charset=utf-8", "robots.txt"),
    asset!("/openapi.json", "application/json", "openapi.json"),
];

/// Same-origin only: the site makes no third-party request, and a browser refuses any.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// An answer ready to send: body, type and etag.
struct Served {
    content_type: &'static str,
    body: Vec<u8>,
    etag: String,
}

thread_local! {
    // Rendered once per isolate: pages only change with a deploy, which starts new isolates.
    static RENDERED: RefCell<HashMap<&'static str, Rc<Served>>> = RefCell::new(HashMap::new());
}

/// Whether the site serves `path` (a GET or HEAD of it is answered by [`serve`]).
pub fn serves(path: &str) -> bool {
    PAGES.iter().any(|p| p.path == path) || ASSETS.iter().any(|a| a.path == path) || path == "/docs"
}

/// `GET` or `HEAD` of a site path (see [`serves`]; the runtime drops a HEAD's body).
pub fn serve(req: &Request, config: &Config, path: &str) -> Result<Response, ApiError> {
    if path == "/docs" {
        let mut resp = Response::empty()?.with_status(301);
        resp.headers_mut().set("location", "/docs/")?;
        return Ok(resp);
    }
    let served = RENDERED.with(|r| r.borrow().get(path).cloned());
    let served = match served {
        Some(s) => s,
        None => {
            let s = Rc::new(build(config, path).ok_or_else(|| ApiError::route_not_found(path))?);
            RENDERED.with(|r| r.borrow_mut().insert(site_path(path), s.clone()));
            s
        }
    };
    let matches = req
        .headers()
        .get("if-none-match")?
        .is_some_and(|h| if_none_match(&h, &served.etag));
    let resp = if matches {
        Response::empty()?.with_status(304)
    } else {
        Response::from_bytes(served.body.clone())?
    };
    headers(resp, served.content_type, Some(&served.etag))
}

/// The answer to a sign-up posted by the page's form (no JavaScript needed): a page saying
/// what happened, with the form again after an error.
pub fn beta_page(
    status: u16,
    result: Result<&BetaJoined, &ApiError>,
) -> Result<Response, ApiError> {
    let main = match result {
        Ok(joined) if joined.duplicate => format!(
            "<div class=\"wrap narrow doc\"><h1>You were already on the list</h1>\
             <p class=\"message\" role=\"status\"><strong>{}</strong> had signed up before; we merged \
             the two. We will write once, when there is a place for you.</p>\
             <p><a href=\"/\">Back to the home page</a></p></div>",
            escape(&joined.email)
        ),
        Ok(joined) => format!(
            "<div class=\"wrap narrow doc\"><h1>Thank you, you are on the list</h1>\
             <p class=\"message\" role=\"status\">We will write to <strong>{}</strong> once, when there \
             is a place for you in the beta.</p><p><a href=\"/\">Back to the home page</a></p></div>",
            escape(&joined.email)
        ),
        Err(e) => format!(
            "<div class=\"wrap narrow doc\"><h1>That did not work</h1>\
             <p class=\"message bad\" role=\"alert\" data-code=\"{}\">{}</p>{}</div>",
            escape(&e.code),
            escape(&e.message),
            SIGNUP_FORM
        ),
    };
    let title = match result {
        Ok(_) => "You are on the EdgeCache beta list",
        Err(_) => "EdgeCache beta sign-up: please check your address",
    };
    let html = render(title, "Sign up for the EdgeCache beta.", &main, "");
    let resp = Response::from_html(html)?.with_status(status);
    let mut resp = headers(resp, "text/html; charset=utf-8", None)?;
    resp.headers_mut().set("cache-control", "no-store")?;
    Ok(resp)
}

/// The sign-up form, as on the home page.
const SIGNUP_FORM: &str = "<form class=\"signup\" method=\"post\" action=\"/_edgecache/beta\">\
     <label for=\"beta-email\">Work email</label><div class=\"row\">\
     <input id=\"beta-email\" name=\"email\" type=\"email\" autocomplete=\"email\" required \
     maxlength=\"254\" placeholder=\"ada@example.com\"><button type=\"submit\">Join the beta</button>\
     </div></form>";

/// An HTML 404 for a browser asking for a page that does not exist.
pub fn not_found_page(path: &str) -> Result<Response, ApiError> {
    let main = format!(
        "<div class=\"wrap narrow doc\"><h1>Nothing here</h1><p>Nothing is served at \
         <code>{}</code>. Try the <a href=\"/\">home page</a> or the <a href=\"/docs/\">docs</a>.</p></div>",
        escape(path)
    );
    let html = render("Not found: EdgeCache", "Nothing is served here.", &main, "");
    let resp = Response::from_html(html)?.with_status(404);
    let mut resp = headers(resp, "text/html; charset=utf-8", None)?;
    resp.headers_mut().set("cache-control", "no-store")?;
    Ok(resp)
}

/// Whether a request is a browser's navigation (it asks for HTML first).
pub fn wants_html(req: &Request) -> bool {
    let accept = req
        .headers()
        .get("accept")
        .ok()
        .flatten()
        .unwrap_or_default();
    match (accept.find("text/html"), accept.find("application/json")) {
        (Some(html), Some(json)) => html < json,
        (Some(_), None) => true,
        _ => false,
    }
}

fn headers(
    mut resp: Response,
    content_type: &str,
    etag: Option<&str>,
) -> Result<Response, ApiError> {
    let h = resp.headers_mut();
    h.set("content-type", content_type)?;
    if let Some(etag) = etag {
        h.set("etag", etag)?;
        // Revalidated after five minutes (a cheap 304): a deploy shows within minutes.
        h.set("cache-control", "public, max-age=300")?;
    }
    h.set("content-security-policy", CSP)?;
    h.set("x-content-type-options", "nosniff")?;
    h.set("referrer-policy", "no-referrer")?;
    if content_type == "application/json" {
        h.set("access-control-allow-origin", "*")?;
    }
    Ok(resp)
}

/// The static path a request path is stored under.
fn site_path(path: &str) -> &'static str {
    PAGES
        .iter()
        .map(|p| p.path)
        .chain(ASSETS.iter().map(|a| a.path))
        .find(|p| *p == path)
        .unwrap_or("")
}

fn build(config: &Config, path: &str) -> Option<Served> {
    let (content_type, body) = if let Some(page) = PAGES.iter().find(|p| p.path == path) {
        let html = render_page(page).replace("{{demo_tenant}}", &config.demo_tenant);
        ("text/html; charset=utf-8", html.into_bytes())
    } else {
        let asset = ASSETS.iter().find(|a| a.path == path)?;
        (asset.content_type, asset.body.to_vec())
    };
    let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&body))[..20]);
    Some(Served {
        content_type,
        body,
        etag,
    })
}

/// A page's front matter: `<!-- title: … -->` and `<!-- description: … -->`, then the rest.
fn front_matter(source: &str) -> (&str, &str, &str) {
    let mut rest = source;
    let mut field = |name: &str| -> &str {
        let prefix = format!("<!-- {name}: ");
        match rest
            .strip_prefix(prefix.as_str())
            .and_then(|r| r.split_once(" -->\n"))
        {
            Some((value, after)) => {
                rest = after;
                value
            }
            None => "",
        }
    };
    let title = field("title");
    let description = field("description");
    (title, description, rest)
}

fn render_page(page: &Page) -> String {
    let (title, description, main) = front_matter(page.source);
    let docs_nav = if page.path.starts_with("/docs/") {
        docs_nav(page.path)
    } else {
        String::new()
    };
    render(title, description, main, &docs_nav)
}

/// The docs pages' own navigation, each page named by its title's first part.
fn docs_nav(current: &str) -> String {
    let links: String = PAGES
        .iter()
        .filter(|p| p.path.starts_with("/docs/"))
        .map(|p| {
            let (title, _, _) = front_matter(p.source);
            let name = title.split(':').next().unwrap_or(title).trim();
            let here = if p.path == current {
                " aria-current=\"page\""
            } else {
                ""
            };
            format!("<li><a href=\"{}\"{here}>{}</a></li>", p.path, escape(name))
        })
        .collect();
    format!(
        "<nav class=\"docs-nav\" aria-label=\"Documentation\"><div class=\"wrap\"><ul>{links}</ul></div></nav>"
    )
}

/// The layout filled in. `main` and `docs_nav` are HTML; `title` and `description` are text.
fn render(title: &str, description: &str, main: &str, docs_nav: &str) -> String {
    LAYOUT
        .replace("{{title}}", &escape(title))
        .replace("{{description}}", &escape(description))
        .replace("{{docsnav}}", docs_nav)
        .replace("{{main}}", main)
}

/// Text made safe for HTML content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_has_a_title_a_description_and_content() {
        for page in PAGES {
            let (title, description, main) = front_matter(page.source);
            assert!(title.len() > 10, "{}: title {title:?}", page.path);
            assert!(description.len() > 40, "{}: description", page.path);
            assert!(
                main.contains("<h1") || main.contains("<h2"),
                "{}",
                page.path
            );
            assert!(!main.contains("{{title}}"), "{}", page.path);
        }
    }

    #[test]
    fn pages_are_wrapped_in_the_layout_with_their_own_metadata() {
        let docs = PAGES.iter().find(|p| p.path == "/docs/api").unwrap();
        let (title, _, _) = front_matter(docs.source);
        let html = render(title, "d <b>", "<h1>x</h1>", &docs_nav("/docs/api"));
        assert!(html.contains(&format!("<title>{}</title>", escape(title))));
        assert!(html.contains("content=\"d &lt;b&gt;\""));
        assert!(html.contains("<a href=\"/docs/api\" aria-current=\"page\">"));
        assert!(html.contains("<main id=\"main\" tabindex=\"-1\">\n<h1>x</h1>"));
        assert!(!html.contains("{{"), "every placeholder filled");
    }

    #[test]
    fn internal_links_name_pages_that_exist() {
        for page in PAGES {
            for (i, _) in page.source.match_indices("href=\"/") {
                let target = &page.source[i + 6..];
                let target = &target[..target.find('"').unwrap()];
                let path = target.split('#').next().unwrap();
                assert!(serves(path), "{} links to {target}", page.path);
            }
        }
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
    }
}
