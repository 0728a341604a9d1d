//! Beta sign-ups from the website: the email address checked and normalised once, the form
//! body read, and the wire types the admin API and the CLI share.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::codec::decode;

/// Longest address accepted (RFC 5321's path limit less the angle brackets).
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest local part (RFC 5321 §4.5.3.1.1).
const MAX_LOCAL_LEN: usize = 64;
/// Longest domain label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;
/// Largest sign-up body read (a form with one field, or a small JSON object).
pub const MAX_SIGNUP_BODY: usize = 2 * 1024;

/// Why an address is refused; each variant's text is what the visitor reads.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[allow(missing_docs)] // each variant's #[error] text is its documentation
pub enum EmailError {
    #[error("enter your email address")]
    Missing,
    #[error("an email address is at most {MAX_EMAIL_LEN} characters")]
    TooLong,
    #[error("an email address has one @ between a name and a domain, like ada@example.com")]
    Shape,
    #[error("the part before the @ may hold letters, digits and . _ + - only, not at either end or twice in a row")]
    Local,
    #[error("the domain must be a name like example.com")]
    Domain,
}

/// The address as stored: trimmed and lowercased, so one person signing up twice with
/// `Ada@Example.com` and `ada@example.com` is one sign-up; or why it is not an address.
/// Deliberately stricter than RFC 5322 (no quoted local parts, no IP literals): it accepts
/// what people type and refuses what mail systems would bounce.
pub fn normalise_email(raw: &str) -> Result<String, EmailError> {
    let email = raw.trim().to_ascii_lowercase();
    if email.is_empty() {
        return Err(EmailError::Missing);
    }
    if email.len() > MAX_EMAIL_LEN {
        return Err(EmailError::TooLong);
    }
    let (local, domain) = match email.split_once('@') {
        Some((l, d)) if !l.is_empty() && !d.is_empty() && !d.contains('@') => (l, d),
        _ => return Err(EmailError::Shape),
    };
    let local_ok = local.len() <= MAX_LOCAL_LEN
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    if !local_ok {
        return Err(EmailError::Local);
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= MAX_LABEL_LEN
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let tld_ok = labels
        .last()
        .is_some_and(|t| t.len() >= 2 && t.bytes().all(|b| b.is_ascii_alphabetic()));
    if labels.len() < 2 || !labels.iter().all(label_ok) || !tld_ok {
        return Err(EmailError::Domain);
    }
    Ok(email)
}

/// The `email` field of a sign-up body: an HTML form (`application/x-www-form-urlencoded`, what
/// the page sends without JavaScript) or a JSON object `{"email": …}`. `None` if absent.
pub fn email_field(body: &[u8], json: bool) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    if json {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        return value.get("email")?.as_str().map(str::to_string);
    }
    text.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(name, true).ok()? == "email")
            .then(|| decode(value, true).ok())
            .flatten()
    })
}

/// One sign-up as the operator sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BetaSignup {
    /// The normalised address.
    pub email: String,
    /// RFC 3339 time of the first sign-up.
    pub created_at: String,
    /// RFC 3339 time of the latest sign-up.
    pub updated_at: String,
    /// How many times the address signed up (duplicates are merged into one row).
    pub count: u64,
}

/// `GET /_edgecache/admin/beta`: every sign-up, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BetaList {
    /// The sign-ups.
    pub signups: Vec<BetaSignup>,
}

/// The answer to a sign-up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BetaJoined {
    /// The address as stored.
    pub email: String,
    /// Whether it had signed up before (the sign-ups were merged).
    pub duplicate: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_trimmed_and_lowercased() {
        assert_eq!(
            normalise_email("  Ada.Lovelace+beta@Example.CO.uk "),
            Ok("ada.lovelace+beta@example.co.uk".into())
        );
        assert_eq!(normalise_email("a@b.io"), Ok("a@b.io".into()));
    }

    #[test]
    fn what_mail_would_bounce_is_refused() {
        for (raw, err) in [
            ("", EmailError::Missing),
            ("   ", EmailError::Missing),
            ("ada", EmailError::Shape),
            ("@example.com", EmailError::Shape),
            ("ada@", EmailError::Shape),
            ("a@b@example.com", EmailError::Shape),
            ("ada lovelace@example.com", EmailError::Local),
            (".ada@example.com", EmailError::Local),
            ("a..b@example.com", EmailError::Local),
            ("ada\"@example.com", EmailError::Local),
            ("ada@b", EmailError::Domain),
            ("ada@-b.com", EmailError::Domain),
            ("ada@b..com", EmailError::Domain),
            ("ada@example.c0m", EmailError::Domain),
            ("ada@example.c", EmailError::Domain),
            ("ada@exa_mple.com", EmailError::Domain),
        ] {
            assert_eq!(normalise_email(raw), Err(err), "{raw:?}");
        }
        let long = format!("{}@example.com", "a".repeat(65));
        assert_eq!(normalise_email(&long), Err(EmailError::Local));
        let huge = format!("a@{}.com", "b".repeat(260));
        assert_eq!(normalise_email(&huge), Err(EmailError::TooLong));
    }

    #[test]
    fn the_email_field_is_read_from_a_form_or_json() {
        assert_eq!(
            email_field(b"name=x&email=Ada%40Example.com", false),
            Some("Ada@Example.com".into())
        );
        assert_eq!(email_field(b"email=a+b%2Bc", false), Some("a b+c".into()));
        assert_eq!(email_field(b"other=1", false), None);
        assert_eq!(
            email_field(br#"{"email":"a@b.io"}"#, true),
            Some("a@b.io".into())
        );
        assert_eq!(email_field(br#"{"email":7}"#, true), None);
        assert_eq!(email_field(b"\xff", false), None);
    }
}
