//! What a tenant's origin can be asked for: the D1 schema, or for an HTTP origin any
//! `/v1/<table>` (its tables are whatever its API serves; each path's first segment is a table).

use std::rc::Rc;

use crate::error::ApiError;
use crate::schema::{Relation, RelationKind, Schema};

/// The relations a tenant's origin serves.
#[derive(Debug, Clone, PartialEq)]
pub enum Catalog {
    /// The built-in D1 origin's schema (with the tenant's views).
    D1(Rc<Schema>),
    /// An HTTP origin (its base URL): relations are made up from the path.
    Http(String),
}

/// Longest table name accepted for an HTTP origin.
const MAX_TABLE_NAME: usize = 64;

impl Catalog {
    /// The relation named `name`, if the origin serves it.
    pub fn relation(&self, name: &str) -> Option<Relation> {
        match self {
            Catalog::D1(schema) => schema.relation(name).cloned(),
            Catalog::Http(_) if valid_table_name(name) => Some(Relation {
                name: name.to_string(),
                kind: RelationKind::Table,
                columns: Vec::new(),
                id_column: "id".to_string(),
                tables: vec![name.to_string()],
                bind: Default::default(),
            }),
            Catalog::Http(_) => None,
        }
    }

    /// The table named `name` (404 `unknown_table` for a view or an unknown name).
    pub fn table(&self, name: &str) -> Result<Relation, ApiError> {
        match self.relation(name) {
            Some(r) if r.kind == RelationKind::Table => Ok(r),
            _ => Err(ApiError::new(
                404,
                "unknown_table",
                format!("no table named `{name}`"),
            )),
        }
    }

    /// Tables known up front (none for an HTTP origin).
    pub fn tables(&self) -> Vec<String> {
        match self {
            Catalog::D1(schema) => schema
                .relations
                .values()
                .filter(|r| r.kind == RelationKind::Table)
                .map(|r| r.name.clone())
                .collect(),
            Catalog::Http(_) => Vec::new(),
        }
    }

    /// Relations whose paths a `/v1/…` prefix can cover (`/v1/users` also covers
    /// `/v1/usersWithOrders`, as a string prefix should). For an HTTP origin, the table the
    /// prefix names.
    pub fn relations_under(&self, prefix: &str) -> Vec<Relation> {
        match self {
            Catalog::D1(schema) => schema
                .relations
                .values()
                .filter(|r| {
                    let base = format!("/v1/{}", r.name);
                    base.starts_with(prefix) || prefix.starts_with(&base)
                })
                .cloned()
                .collect(),
            Catalog::Http(_) => {
                let table = prefix
                    .trim_start_matches("/v1/")
                    .split(['/', '?'])
                    .next()
                    .unwrap_or("");
                self.relation(table).into_iter().collect()
            }
        }
    }
}

fn valid_table_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TABLE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_relations_come_from_the_path() {
        let c = Catalog::Http("http://127.0.0.1:1".into());
        assert_eq!(c.relation("users").unwrap().tables, vec!["users"]);
        assert!(c.relation("a b").is_none() && c.relation("").is_none());
        assert_eq!(c.relations_under("/v1/users/12").len(), 1);
        assert!(c.tables().is_empty());
    }
}
