//! Record and table names as given on the command line (`users:123-abc`, `orders`).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// One record of one table, `TABLE:ID` on the command line and `{"table","id"}` on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordRef {
    /// The table the record lives in.
    pub table: String,
    /// The record's primary key, as the origin spells it.
    pub id: String,
}

impl FromStr for RecordRef {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |why: &str| {
            format!("invalid record '{input}': {why}; expected TABLE:ID, e.g. users:123-abc")
        };
        let (table, id) = input
            .split_once(':')
            .ok_or_else(|| invalid("there is no ':'"))?;
        validate_table(table).map_err(|why| invalid(&why))?;
        if id.is_empty() {
            return Err(invalid("the id is empty"));
        }
        if id.chars().any(char::is_whitespace) {
            return Err(invalid("the id contains whitespace"));
        }
        Ok(Self {
            table: table.to_string(),
            id: id.to_string(),
        })
    }
}

impl fmt::Display for RecordRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.table, self.id)
    }
}

/// Parses a `--table` value, for clap.
pub fn parse_table(input: &str) -> Result<String, String> {
    validate_table(input)
        .map(|()| input.to_string())
        .map_err(|why| format!("invalid table '{input}': {why}"))
}

/// Table names are SQL identifiers on the origin side; rejecting anything else here catches
/// typos such as a pasted `users:123` before they reach the server.
fn validate_table(table: &str) -> Result<(), String> {
    if table.is_empty() {
        return Err("the table name is empty".to_string());
    }
    if let Some(bad) = table
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "the table name contains '{bad}' (allowed: letters, digits, _ and -)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_table_and_id() {
        let record: RecordRef = "users:123-abc".parse().unwrap();
        assert_eq!(record.table, "users");
        assert_eq!(record.id, "123-abc");
        assert_eq!(record.to_string(), "users:123-abc");
        // Only the first ':' separates, so ids may contain colons.
        let record: RecordRef = "events:2026:01".parse().unwrap();
        assert_eq!(record.id, "2026:01");
    }

    #[test]
    fn rejects_malformed_records() {
        for (bad, why) in [
            ("users", "no ':'"),
            (":123", "table name is empty"),
            ("users:", "id is empty"),
            ("us ers:1", "contains ' '"),
            ("users:1 2", "whitespace"),
        ] {
            let err = bad.parse::<RecordRef>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.contains("expected TABLE:ID"), "{bad}: {err}");
        }
    }

    #[test]
    fn serialises_as_the_api_expects() {
        let record: RecordRef = "users:1".parse().unwrap();
        assert_eq!(
            serde_json::to_value(&record).unwrap(),
            serde_json::json!({"table": "users", "id": "1"})
        );
    }

    #[test]
    fn validates_tables() {
        assert_eq!(parse_table("order_items"), Ok("order_items".to_string()));
        assert!(parse_table("").is_err());
        assert!(parse_table("users:1").unwrap_err().contains("':'"));
    }
}
