//! Webhook signatures and API tokens.
//!
//! Webhooks carry `x-edgecache-signature: t=<unix seconds>,v1=<hex>` where
//! `v1 = HMAC-SHA256(secret, "<t>." + body)`. The timestamp is inside the MAC, so a captured
//! request can only be replayed within the tolerance window. Several `v1` values may be sent
//! while a secret is being rotated; any one matching passes.
//!
//! Tokens are `<prefix><64 hex>` built from caller-supplied randomness (this module never reads
//! an OS source, so it runs unchanged in wasm); only their SHA-256 is stored.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// Name of the webhook signature header.
pub const SIGNATURE_HEADER: &str = "x-edgecache-signature";

/// Default allowed distance, in seconds, between a signature's timestamp and now.
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

/// Bytes in a SHA-256 digest (and so in a `v1` MAC and a token's randomness).
const DIGEST_LEN: usize = 32;

/// Why a webhook signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature header was sent.
    #[error("missing x-edgecache-signature header")]
    Missing,
    /// The header is not `t=<unix seconds>,v1=<64 lowercase hex>[,v1=...]`.
    #[error("malformed x-edgecache-signature header: {0}")]
    Malformed(&'static str),
    /// The signature is valid but its timestamp is outside the tolerance window.
    #[error(
        "signature timestamp is {skew_secs}s from now, beyond the {tolerance_secs}s tolerance"
    )]
    Expired {
        /// `now - t`: positive when the signature is old, negative when it is in the future.
        skew_secs: i64,
        /// The tolerance that was applied.
        tolerance_secs: i64,
    },
    /// No `v1` value matches the body under the configured secret.
    #[error("signature does not match the body")]
    Mismatch,
}

impl SignatureError {
    /// Stable machine-readable code for API error bodies and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "signature_missing",
            Self::Malformed(_) => "signature_malformed",
            Self::Expired { .. } => "signature_expired",
            Self::Mismatch => "signature_mismatch",
        }
    }
}

/// The MAC over `"<t>." + body`, where `t` is the timestamp exactly as it appears in the header.
fn mac_over(secret: &[u8], timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The full `x-edgecache-signature` header value for `body` signed at `timestamp`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    let tag = mac_over(secret, &t, body).finalize().into_bytes();
    format!("t={t},v1={}", hex::encode(tag))
}

/// A parsed signature header: the raw timestamp text, its value, and every `v1` MAC.
struct ParsedSignature<'a> {
    timestamp_text: &'a str,
    timestamp: i64,
    macs: Vec<[u8; DIGEST_LEN]>,
}

/// Parses `t=...,v1=...[,v1=...]`. Unknown fields are ignored so a future scheme (`v2=`) can be
/// sent alongside `v1` without breaking older receivers.
fn parse_signature(header: &str) -> Result<ParsedSignature<'_>, SignatureError> {
    use SignatureError::Malformed;
    let mut timestamp_text = None;
    let mut macs = Vec::new();
    for field in header.split(',') {
        let (name, value) = field
            .trim()
            .split_once('=')
            .ok_or(Malformed("field without '='"))?;
        match name {
            "t" if timestamp_text.is_some() => return Err(Malformed("duplicate t field")),
            "t" => timestamp_text = Some(value),
            "v1" => macs.push(
                decode_lower_hex(value).ok_or(Malformed("v1 is not 64 lowercase hex digits"))?,
            ),
            "" => return Err(Malformed("field without a name")),
            _ => {}
        }
    }
    let timestamp_text = timestamp_text.ok_or(Malformed("no t field"))?;
    // Digits only: `parse` alone would also take a sign, which no sender produces.
    if timestamp_text.is_empty() || !timestamp_text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Malformed("t is not a unix timestamp"));
    }
    let timestamp = timestamp_text
        .parse()
        .map_err(|_| Malformed("t is out of range"))?;
    if macs.is_empty() {
        return Err(Malformed("no v1 field"));
    }
    Ok(ParsedSignature {
        timestamp_text,
        timestamp,
        macs,
    })
}

/// Decodes exactly 64 lowercase hex digits. Uppercase is refused so each MAC has one spelling:
/// otherwise a changed signature byte (`a` -> `A`) would still verify.
fn decode_lower_hex(s: &str) -> Option<[u8; DIGEST_LEN]> {
    if s.len() != 2 * DIGEST_LEN || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; DIGEST_LEN];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Checks a webhook's signature header against `body`, then its timestamp against `now_secs`.
///
/// The MAC is checked before the timestamp so `Expired` only ever describes a genuinely signed
/// request (a replay or a skewed sender clock), never a forgery. An empty `secret` never
/// verifies: a forger would know it.
pub fn verify_signature(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let parsed = parse_signature(header)?;
    let expected = mac_over(secret, parsed.timestamp_text, body)
        .finalize()
        .into_bytes();
    let matched = parsed.macs.iter().fold(Choice::from(0), |acc, mac| {
        acc | expected.ct_eq(mac.as_slice())
    });
    if secret.is_empty() || !bool::from(matched) {
        return Err(SignatureError::Mismatch);
    }
    let skew_secs = now_secs.saturating_sub(parsed.timestamp);
    if skew_secs.unsigned_abs() > tolerance_secs.max(0).unsigned_abs() {
        return Err(SignatureError::Expired {
            skew_secs,
            tolerance_secs,
        });
    }
    Ok(())
}

/// What a token grants; its prefix makes a leaked token's kind recognisable at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// Tenant administration through the admin API (`eca_`).
    Admin,
    /// Signing webhooks from an origin (`ecw_`).
    Webhook,
    /// Operator access across tenants (`eco_`).
    Operator,
    /// A tenant's API key for reads and writes through `/v1/*` (`eck_`).
    ApiKey,
}

impl TokenKind {
    /// Every kind, for lookups by prefix.
    pub const ALL: [TokenKind; 4] = [
        TokenKind::Admin,
        TokenKind::Webhook,
        TokenKind::Operator,
        TokenKind::ApiKey,
    ];

    /// The prefix tokens of this kind start with.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Admin => "eca_",
            Self::Webhook => "ecw_",
            Self::Operator => "eco_",
            Self::ApiKey => "eck_",
        }
    }

    /// The kind of a well-formed token (known prefix, then 64 lowercase hex digits).
    pub fn of_token(token: &str) -> Option<TokenKind> {
        Self::ALL.into_iter().find(|kind| {
            token
                .strip_prefix(kind.prefix())
                .is_some_and(|rest| decode_lower_hex(rest).is_some())
        })
    }
}

/// A token of `kind` from 32 caller-supplied random bytes.
pub fn token_from_bytes(kind: TokenKind, random: &[u8; DIGEST_LEN]) -> String {
    format!("{}{}", kind.prefix(), hex::encode(random))
}

/// Lowercase hex SHA-256 of a token: what is stored instead of the token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` hashes to `stored_hash` (hex, either case), compared in constant time.
pub fn token_matches_hash(token: &str, stored_hash: &str) -> bool {
    let mut stored = [0u8; DIGEST_LEN];
    if hex::decode_to_slice(stored_hash, &mut stored).is_err() {
        return false;
    }
    constant_time_eq(&Sha256::digest(token.as_bytes()), &stored)
}

/// Byte equality whose time depends only on the lengths, not on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // `ct_eq` on slices of different lengths returns false at once; lengths are not secret.
    a.ct_eq(b).into()
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive, whitespace
/// trimmed); `None` for another scheme, an empty token, or a token containing whitespace.
pub fn parse_bearer(header: Option<&str>) -> Option<&str> {
    let (scheme, token) = header?
        .trim()
        .split_once(|c: char| c.is_ascii_whitespace())?;
    let token = token.trim();
    let well_formed = !token.is_empty() && !token.contains(|c: char| c.is_ascii_whitespace());
    (scheme.eq_ignore_ascii_case("bearer") && well_formed).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"whsec_test_secret";
    const BODY: &[u8] = br#"{"table":"users","ids":["123-abc"]}"#;
    const NOW: i64 = 1_700_000_000;

    fn verify(header: &str, body: &[u8]) -> Result<(), SignatureError> {
        verify_signature(SECRET, Some(header), body, NOW, SIGNATURE_TOLERANCE_SECS)
    }

    fn v1(header: &str) -> &str {
        header.split_once(",v1=").unwrap().1
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let header = sign(SECRET, NOW, BODY);
        assert!(header.starts_with(&format!("t={NOW},v1=")));
        assert_eq!(v1(&header).len(), 64);
        assert_eq!(verify(&header, BODY), Ok(()));
        assert_eq!(verify(&sign(SECRET, NOW, b""), b""), Ok(()));
    }

    #[test]
    fn known_vector() {
        // HMAC-SHA256("secret", "1700000000.hello"), computed independently with openssl.
        assert_eq!(
            sign(b"secret", 1_700_000_000, b"hello"),
            "t=1700000000,v1=47b1df0ab12338b2685470b0d2b37033add7c3b2bc8172f313e77413f1bb78c8"
        );
    }

    #[test]
    fn tampered_body_and_wrong_secret_mismatch() {
        let header = sign(SECRET, NOW, BODY);
        assert_eq!(verify(&header, b"{}"), Err(SignatureError::Mismatch));
        let other = sign(b"another secret", NOW, BODY);
        assert_eq!(verify(&other, BODY), Err(SignatureError::Mismatch));
    }

    #[test]
    fn timestamp_is_covered_by_the_mac() {
        let header = sign(SECRET, NOW, BODY);
        let moved = format!("t={},v1={}", NOW - 1, v1(&header));
        assert_eq!(verify(&moved, BODY), Err(SignatureError::Mismatch));
    }

    #[test]
    fn old_and_future_timestamps_expire() {
        let tol = SIGNATURE_TOLERANCE_SECS;
        assert_eq!(verify(&sign(SECRET, NOW - tol, BODY), BODY), Ok(()));
        assert_eq!(verify(&sign(SECRET, NOW + tol, BODY), BODY), Ok(()));
        assert_eq!(
            verify(&sign(SECRET, NOW - tol - 1, BODY), BODY),
            Err(SignatureError::Expired {
                skew_secs: tol + 1,
                tolerance_secs: tol
            })
        );
        assert_eq!(
            verify(&sign(SECRET, NOW + tol + 1, BODY), BODY),
            Err(SignatureError::Expired {
                skew_secs: -tol - 1,
                tolerance_secs: tol
            })
        );
        // Replaying yesterday's genuine request.
        let replay = sign(SECRET, NOW - 86_400, BODY);
        assert_eq!(
            verify(&replay, BODY).unwrap_err().code(),
            "signature_expired"
        );
    }

    #[test]
    fn forged_old_signature_is_a_mismatch_not_an_expiry() {
        let forged = sign(b"guess", NOW - 86_400, BODY);
        assert_eq!(verify(&forged, BODY), Err(SignatureError::Mismatch));
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        let header = sign(SECRET, i64::MAX, BODY);
        let err = verify_signature(SECRET, Some(&header), BODY, i64::MIN, i64::MAX);
        assert!(matches!(err, Err(SignatureError::Expired { .. })));
    }

    #[test]
    fn negative_tolerance_acts_as_zero() {
        let header = sign(SECRET, NOW, BODY);
        assert_eq!(
            verify_signature(SECRET, Some(&header), BODY, NOW, -5),
            Ok(())
        );
        let err = verify_signature(SECRET, Some(&header), BODY, NOW + 1, -5).unwrap_err();
        assert_eq!(err.code(), "signature_expired");
    }

    #[test]
    fn missing_header() {
        let err = verify_signature(SECRET, None, BODY, NOW, 300).unwrap_err();
        assert_eq!(err, SignatureError::Missing);
        assert_eq!(err.code(), "signature_missing");
    }

    #[test]
    fn malformed_headers() {
        let good = sign(SECRET, NOW, BODY);
        let mac = v1(&good).to_owned();
        let cases = [
            String::new(),
            "garbage".to_owned(),
            format!("v1={mac}"),
            format!("t={NOW}"),
            format!("t={NOW},v1="),
            format!("t=,v1={mac}"),
            format!("t=-{NOW},v1={mac}"),
            format!("t=+{NOW},v1={mac}"),
            format!("t=12a,v1={mac}"),
            format!("t=99999999999999999999,v1={mac}"),
            format!("t={NOW},t={NOW},v1={mac}"),
            format!("t={NOW},v1={}", &mac[..63]),
            format!("t={NOW},v1={mac}00"),
            format!("t={NOW},v1={}zz", &mac[..62]),
            format!("t={NOW},v1={}", mac.to_uppercase()),
            format!("t={NOW},v1={mac},"),
            format!("t={NOW},,v1={mac}"),
            format!("t={NOW},=x,v1={mac}"),
            format!("t={NOW};v1={mac}"),
        ];
        for header in cases {
            let err = verify(&header, BODY).unwrap_err();
            assert!(
                matches!(err, SignatureError::Malformed(_)),
                "{header:?} gave {err:?}"
            );
            assert_eq!(err.code(), "signature_malformed");
            assert!(err
                .to_string()
                .starts_with("malformed x-edgecache-signature header: "));
        }
    }

    #[test]
    fn tolerates_spaces_and_unknown_fields() {
        let mac = v1(&sign(SECRET, NOW, BODY)).to_owned();
        assert_eq!(verify(&format!(" t={NOW} , v1={mac} "), BODY), Ok(()));
        assert_eq!(
            verify(&format!("v0=abc,t={NOW},v2=zz,v1={mac}"), BODY),
            Ok(())
        );
    }

    #[test]
    fn any_of_several_v1_values_may_match() {
        let new = v1(&sign(b"new secret", NOW, BODY)).to_owned();
        let old = v1(&sign(SECRET, NOW, BODY)).to_owned();
        assert_eq!(verify(&format!("t={NOW},v1={new},v1={old}"), BODY), Ok(()));
        assert_eq!(verify(&format!("t={NOW},v1={old},v1={new}"), BODY), Ok(()));
        assert_eq!(
            verify(&format!("t={NOW},v1={new},v1={new}"), BODY),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn empty_secret_never_verifies() {
        let header = sign(b"", NOW, BODY);
        let err = verify_signature(b"", Some(&header), BODY, NOW, 300).unwrap_err();
        assert_eq!(err.code(), "signature_mismatch");
    }

    #[test]
    fn error_codes_are_stable() {
        let codes: Vec<_> = [
            SignatureError::Missing,
            SignatureError::Malformed("x"),
            SignatureError::Expired {
                skew_secs: 1,
                tolerance_secs: 0,
            },
            SignatureError::Mismatch,
        ]
        .iter()
        .map(SignatureError::code)
        .collect();
        assert_eq!(
            codes,
            [
                "signature_missing",
                "signature_malformed",
                "signature_expired",
                "signature_mismatch"
            ]
        );
    }

    #[test]
    fn tokens_have_kind_prefix_and_hex_body() {
        let random = [0xabu8; 32];
        let cases = [
            (TokenKind::Admin, "eca_"),
            (TokenKind::Webhook, "ecw_"),
            (TokenKind::Operator, "eco_"),
            (TokenKind::ApiKey, "eck_"),
        ];
        for (kind, prefix) in cases {
            let token = token_from_bytes(kind, &random);
            assert_eq!(token, format!("{prefix}{}", "ab".repeat(32)));
            assert_eq!(TokenKind::of_token(&token), Some(kind));
        }
        assert_eq!(TokenKind::of_token("eca_abc"), None);
        assert_eq!(
            TokenKind::of_token(&format!("ecx_{}", "ab".repeat(32))),
            None
        );
        assert_eq!(
            TokenKind::of_token(&format!("eca_{}", "AB".repeat(32))),
            None
        );
    }

    #[test]
    fn token_hash_matches_only_its_token() {
        let token = token_from_bytes(TokenKind::Admin, &[7u8; 32]);
        let hash = hash_token(&token);
        assert_eq!(hash.len(), 64);
        assert!(token_matches_hash(&token, &hash));
        assert!(token_matches_hash(&token, &hash.to_uppercase()));
        let other = token_from_bytes(TokenKind::Admin, &[8u8; 32]);
        assert!(!token_matches_hash(&other, &hash));
        assert!(!token_matches_hash(&token, &hash[..62]));
        assert!(!token_matches_hash(&token, "not hex"));
        assert!(!token_matches_hash(&token, ""));
    }

    #[test]
    fn hash_token_is_plain_sha256() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn constant_time_eq_compares_bytes() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(parse_bearer(Some("Bearer eca_x")), Some("eca_x"));
        assert_eq!(parse_bearer(Some("bearer eca_x")), Some("eca_x"));
        assert_eq!(parse_bearer(Some("  BEARER \t eca_x  ")), Some("eca_x"));
        assert_eq!(parse_bearer(None), None);
        assert_eq!(parse_bearer(Some("")), None);
        assert_eq!(parse_bearer(Some("Bearer")), None);
        assert_eq!(parse_bearer(Some("Bearer   ")), None);
        assert_eq!(parse_bearer(Some("Basic dXNlcjpwYXNz")), None);
        assert_eq!(parse_bearer(Some("Bearereca_x")), None);
        assert_eq!(parse_bearer(Some("Bearer a b")), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_single_byte_change_of_the_body_fails(
            body in prop::collection::vec(any::<u8>(), 1..300),
            pos in any::<prop::sample::Index>(),
            delta in 1..=255u8,
        ) {
            let header = sign(SECRET, NOW, &body);
            let mut tampered = body.clone();
            let i = pos.index(body.len());
            tampered[i] = tampered[i].wrapping_add(delta);
            prop_assert_eq!(verify(&header, &body), Ok(()));
            prop_assert_eq!(verify(&header, &tampered), Err(SignatureError::Mismatch));
        }

        #[test]
        fn any_single_byte_change_of_the_signature_fails(
            body in prop::collection::vec(any::<u8>(), 0..100),
            t in 0..4_000_000_000i64,
            pos in any::<prop::sample::Index>(),
            replacement in 0..128u8,
        ) {
            let header = sign(SECRET, t, &body);
            let mut bytes = header.clone().into_bytes();
            let i = pos.index(bytes.len());
            prop_assume!(bytes[i] != replacement);
            bytes[i] = replacement;
            // The header is ASCII and so is the replacement, so this stays valid UTF-8.
            let tampered = String::from_utf8(bytes).unwrap();
            prop_assert_eq!(verify_signature(SECRET, Some(&header), &body, t, 300), Ok(()));
            prop_assert!(verify_signature(SECRET, Some(&tampered), &body, t, 300).is_err());
        }
    }
}
