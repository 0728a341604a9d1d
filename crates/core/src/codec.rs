//! The one URL codec: percent-encoding of path segments and query components, and decoding
//! that refuses malformed escapes. Cache keys, the coordinator protocol, the CLI and the tests
//! all encode through here, so a name is spelled the same way everywhere.

use std::borrow::Cow;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but RFC 3986's unreserved characters is escaped.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The canonical form inside cache keys also leaves `*` bare (it is never special there, and
/// keys written before this codec existed spell it bare).
const KEY_COMPONENT: &AsciiSet = &COMPONENT.remove(b'*');

/// Why a component does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-escape")]
    BadEscape,
    /// The bytes are not UTF-8.
    #[error("does not decode to UTF-8")]
    NotUtf8,
}

/// Percent-encodes a path segment or query component (everything but unreserved characters).
pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// Appends `s` in the canonical cache-key spelling.
pub fn encode_key_component_into(out: &mut String, s: &str) {
    out.extend(utf8_percent_encode(s, KEY_COMPONENT));
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`, as in form-encoded queries),
/// refusing malformed escapes and anything that is not UTF-8.
pub fn decode(raw: &str, plus_is_space: bool) -> Result<String, DecodeError> {
    let bytes = raw.as_bytes();
    for (i, _) in raw.match_indices('%') {
        let hex = bytes.get(i + 1..i + 3).ok_or(DecodeError::BadEscape)?;
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return Err(DecodeError::BadEscape);
        }
    }
    let raw: Cow<'_, str> = if plus_is_space && raw.contains('+') {
        Cow::Owned(raw.replace('+', " "))
    } else {
        Cow::Borrowed(raw)
    };
    percent_decode_str(&raw)
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| DecodeError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_all_but_unreserved() {
        assert_eq!(encode_component("a b/c?d=e&f*"), "a%20b%2Fc%3Fd%3De%26f%2A");
        assert_eq!(encode_component("Zz09-._~"), "Zz09-._~");
        let mut key = String::new();
        encode_key_component_into(&mut key, "a*b c");
        assert_eq!(key, "a*b%20c");
    }

    #[test]
    fn decoding_refuses_bad_escapes_and_non_utf8() {
        assert_eq!(decode("a%20b+c", true).unwrap(), "a b c");
        assert_eq!(decode("a%2Bb+c", false).unwrap(), "a+b+c");
        for bad in ["%", "%2", "%zz", "a%g1"] {
            assert_eq!(decode(bad, false), Err(DecodeError::BadEscape), "{bad}");
        }
        assert_eq!(decode("%ff", false), Err(DecodeError::NotUtf8));
    }

    proptest! {
        #[test]
        fn encoding_round_trips(s in "\\PC{0,40}") {
            prop_assert_eq!(decode(&encode_component(&s), true).unwrap(), s.clone());
            let mut key = String::new();
            encode_key_component_into(&mut key, &s);
            prop_assert_eq!(decode(&key, true).unwrap(), s);
        }
    }
}
