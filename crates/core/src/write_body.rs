//! Validation of write bodies: what a client may send before anything reaches the database.

use serde_json::Value;

use crate::codec::encode_component;
use crate::key::{CacheKey, KeyError};
use crate::origin::OriginError;
use crate::schema::Relation;
use crate::{id_text, Row};

/// Largest accepted write body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Parses a write body: a JSON object of at most `MAX_BODY_BYTES`.
pub fn parse_object(bytes: &[u8]) -> Result<Row, OriginError> {
    if bytes.len() > MAX_BODY_BYTES {
        return Err(OriginError::BodyTooLarge {
            max: MAX_BODY_BYTES,
        });
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| OriginError::BadBody(format!("the body is not valid JSON: {e}")))?;
    match value {
        Value::Object(row) => Ok(row),
        _ => Err(OriginError::BadBody(
            "the body must be a JSON object".into(),
        )),
    }
}

/// Parses a write body into a row of known columns with scalar values.
pub fn parse_row(bytes: &[u8], relation: &Relation) -> Result<Row, OriginError> {
    let row = parse_object(bytes)?;
    for (column, value) in &row {
        if !relation.has_column(column) {
            return Err(OriginError::UnknownColumn {
                relation: relation.name.clone(),
                column: column.clone(),
            });
        }
        if value.is_array() || value.is_object() {
            return Err(OriginError::BadBody(format!(
                "column `{column}` has a nested value; only strings, numbers, booleans and null are stored"
            )));
        }
    }
    Ok(row)
}

/// Checks that a body naming the id agrees with the id in the URL.
pub fn check_id(row: &Row, relation: &Relation, id: &str) -> Result<(), OriginError> {
    match row.get(&relation.id_column) {
        None => Ok(()),
        Some(v) if id_text(v).as_deref() == Some(id) => Ok(()),
        Some(_) => Err(OriginError::BadBody(format!(
            "the body's `{}` does not match the id in the URL",
            relation.id_column
        ))),
    }
}

/// Refuses a write to a record id that no read could ever name: its `/v1/<relation>/<id>` would
/// be over the cache-key limit, so every GET of it is 414 (`uri_too_long`) and the write would
/// make a record nobody can read through EdgeCache.
pub fn check_id_readable(tenant: &str, relation: &str, id: &str) -> Result<(), KeyError> {
    let path = format!(
        "/v1/{}/{}",
        encode_component(relation),
        encode_component(id)
    );
    CacheKey::from_request(tenant, &path, None).map(|_| ())
}

/// A new record id: a version 4 UUID made from 16 random bytes the runtime supplies (the core
/// reads no randomness of its own).
pub fn new_record_id(random: [u8; 16]) -> String {
    uuid::Builder::from_random_bytes(random)
        .into_uuid()
        .hyphenated()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Column, RelationKind};

    fn users() -> Relation {
        let col = |n: &str| Column {
            name: n.into(),
            decl_type: "TEXT".into(),
            primary_key: n == "id",
            not_null: n == "id",
            has_default: false,
        };
        Relation {
            name: "users".into(),
            kind: RelationKind::Table,
            columns: vec![col("id"), col("firstName")],
            id_column: "id".into(),
            tables: vec!["users".into()],
            bind: Default::default(),
        }
    }

    #[test]
    fn accepts_objects_of_known_scalar_columns() {
        let row = parse_row(br#"{"id":"1","firstName":"Lane"}"#, &users()).unwrap();
        assert_eq!(row["firstName"], "Lane");
    }

    #[test]
    fn rejects_what_it_cannot_store() {
        let u = users();
        for (body, want) in [
            (&b"{"[..], "not valid JSON"),
            (b"[1]", "must be a JSON object"),
            (br#"{"nope":1}"#, "nope"),
            (br#"{"firstName":{"a":1}}"#, "nested"),
            (br#"{"firstName\"; DROP TABLE users; --":1}"#, "DROP TABLE"),
        ] {
            let err = parse_row(body, &u).unwrap_err().to_string();
            assert!(err.contains(want), "{err} should mention {want}");
        }
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert!(matches!(
            parse_row(&big, &u),
            Err(OriginError::BodyTooLarge { .. })
        ));
    }

    #[test]
    fn ids_too_long_to_read_are_refused() {
        assert!(check_id_readable("local", "users", "123-abc").is_ok());
        assert!(matches!(
            check_id_readable("local", "users", &"z".repeat(3000)),
            Err(KeyError::TooLong { .. })
        ));
        // Encoding counts: 700 spaces are 2,100 bytes once escaped.
        assert!(check_id_readable("local", "users", &" ".repeat(700)).is_err());
    }

    #[test]
    fn new_ids_are_v4_uuids() {
        let id = new_record_id([0xab; 16]);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(new_record_id([0; 16]), new_record_id([1; 16]));
    }

    #[test]
    fn id_in_body_must_match_url() {
        let u = users();
        let row = parse_row(br#"{"id":"1"}"#, &u).unwrap();
        assert!(check_id(&row, &u, "1").is_ok());
        assert!(check_id(&row, &u, "2").is_err());
    }
}
