//! The origin's schema: which tables and views exist, their columns and id column. Every table
//! and column a request names is checked against it before any SQL is built.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Whether a relation accepts writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelationKind {
    /// A table: readable and writable.
    Table,
    /// A named view: read-only, stale whenever one of its tables is written.
    View,
}

/// One column of a relation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// Column name as declared.
    pub name: String,
    /// Declared type (`TEXT`, `INTEGER`, …), informational.
    pub decl_type: String,
    /// Whether the column is the primary key.
    pub primary_key: bool,
    /// Whether the column is declared NOT NULL.
    pub not_null: bool,
    /// Whether the column has a DEFAULT.
    pub has_default: bool,
}

/// A table or view of the origin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Relation {
    /// Name as addressed in `/v1/<name>`.
    pub name: String,
    /// Table or view.
    pub kind: RelationKind,
    /// Columns in declaration order.
    pub columns: Vec<Column>,
    /// The column that identifies a record (the primary key; `id` for views).
    pub id_column: String,
    /// Tables whose writes can change this relation's rows (itself for a table).
    pub tables: Vec<String>,
    /// For a view: each table whose column holds the id of the view row a row of that table
    /// feeds (`orders -> userId`); a table read but not named here has an unknown binding.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bind: BTreeMap<String, String>,
}

impl Relation {
    /// Whether `name` is one of the relation's columns.
    pub fn has_column(&self, name: &str) -> bool {
        self.columns.iter().any(|c| c.name == name)
    }
}

/// How a view is declared: the tables it reads, and where it can be said, which column of each
/// table holds the id of the view row a row of that table feeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ViewDecl {
    /// `["users", "orders"]`: the tables the view reads, with unknown bindings (every write
    /// of one of them may change any of its rows).
    Tables(Vec<String>),
    /// `{"bind": {"users": "id", "orders": "userId"}, "tables": [..]}` ([`BoundView`]).
    Bound(BoundView),
}

/// A view declared with its bindings: a row of `users` feeds the view row whose id is its
/// `id`, a row of `orders` the one whose id is its `userId`; `tables` names further tables the
/// view reads with unknown bindings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoundView {
    /// Table -> the column holding the view row's id.
    pub bind: BTreeMap<String, String>,
    /// Tables read without a known binding.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
}

impl ViewDecl {
    /// Every table the view reads, each once, bound ones first.
    pub fn tables(&self) -> Vec<String> {
        match self {
            ViewDecl::Tables(tables) => tables.clone(),
            ViewDecl::Bound(BoundView { bind, tables }) => {
                let mut all: Vec<String> = bind.keys().cloned().collect();
                all.extend(tables.iter().filter(|t| !bind.contains_key(*t)).cloned());
                all
            }
        }
    }

    /// The declared bindings (none for the list form).
    pub fn bind(&self) -> BTreeMap<String, String> {
        match self {
            ViewDecl::Tables(_) => BTreeMap::new(),
            ViewDecl::Bound(view) => view.bind.clone(),
        }
    }
}

/// Views by name, as configured for the deployment or a tenant.
pub type ViewDecls = BTreeMap<String, ViewDecl>;

/// All relations of the origin, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    /// Relations by name.
    pub relations: BTreeMap<String, Relation>,
}

impl Schema {
    /// Looks up a relation.
    pub fn relation(&self, name: &str) -> Option<&Relation> {
        self.relations.get(name)
    }

    /// Builds the schema from the origin's catalogue. Only views declared in configuration are
    /// exposed, because only for those do we know which tables they read. A binding is kept
    /// only where the view has an `id` column and the bound table the named column; any other
    /// is an unknown binding (the table's writes may change every row of the view).
    pub fn from_catalogue(
        tables: Vec<(String, Vec<Column>)>,
        views: Vec<(String, Vec<Column>)>,
        declared_views: &ViewDecls,
    ) -> Schema {
        let mut relations = BTreeMap::new();
        for (name, columns) in tables {
            let id_column = columns
                .iter()
                .find(|c| c.primary_key)
                .map(|c| c.name.clone())
                .unwrap_or_else(|| "id".to_string());
            relations.insert(
                name.clone(),
                Relation {
                    tables: vec![name.clone()],
                    name,
                    kind: RelationKind::Table,
                    columns,
                    id_column,
                    bind: BTreeMap::new(),
                },
            );
        }
        for (name, columns) in views {
            let Some(decl) = declared_views.get(&name) else {
                continue;
            };
            let has_id = columns.iter().any(|c| c.name == VIEW_ID_COLUMN);
            let bind = decl
                .bind()
                .into_iter()
                .filter(|(table, column)| {
                    has_id
                        && relations.get(table).is_some_and(|r: &Relation| {
                            r.kind == RelationKind::Table && r.has_column(column)
                        })
                })
                .collect();
            relations.insert(
                name.clone(),
                Relation {
                    name,
                    kind: RelationKind::View,
                    columns,
                    id_column: VIEW_ID_COLUMN.to_string(),
                    tables: decl.tables(),
                    bind,
                },
            );
        }
        Schema { relations }
    }

    /// The relations `scope` may name: a view only if every table it reads is in scope.
    pub fn scoped(&self, scope: Scope) -> Schema {
        let relations = self
            .relations
            .iter()
            .filter(|(name, r)| scope.admits(name) && r.tables.iter().all(|t| scope.admits(t)))
            .map(|(name, r)| (name.clone(), r.clone()))
            .collect();
        Schema { relations }
    }
}

/// A view's id column: what its record reads, its lists' tie-break and its bindings name.
pub const VIEW_ID_COLUMN: &str = "id";

/// Tables of the website's live demo start with this; only the demo tenant sees them.
pub const DEMO_TABLE_PREFIX: &str = "demo_";

/// Which of the database's relations a tenant's requests can name. The demo tenant's data is a
/// sandbox: its tables (`demo_*`) are its only tables, and no other tenant can name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every relation (a coordinator, which is reached only for relations an edge admitted).
    All,
    /// The demo tenant: the `demo_*` tables only.
    Demo,
    /// Every other tenant of the D1 origin: everything but the `demo_*` tables.
    Tenant,
}

impl Scope {
    /// The scope of `tenant` when the demo tenant is named `demo_tenant`.
    pub fn of(tenant: &str, demo_tenant: &str) -> Scope {
        if tenant == demo_tenant {
            Scope::Demo
        } else {
            Scope::Tenant
        }
    }

    /// Whether a relation or table named `name` is in scope.
    pub fn admits(self, name: &str) -> bool {
        let demo = name.starts_with(DEMO_TABLE_PREFIX);
        match self {
            Scope::All => true,
            Scope::Demo => demo,
            Scope::Tenant => !demo,
        }
    }
}

/// Whether a catalogue name is internal to SQLite, D1, wrangler or EdgeCache itself (its
/// `edgecache_*` tables: beta sign-ups, the demo's seed) and never exposed to any tenant.
pub fn is_internal(name: &str) -> bool {
    name.starts_with("sqlite_")
        || name.starts_with("_cf_")
        || name == "d1_migrations"
        || name.starts_with("edgecache_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, pk: bool) -> Column {
        Column {
            name: name.into(),
            decl_type: "TEXT".into(),
            primary_key: pk,
            not_null: pk,
            has_default: false,
        }
    }

    #[test]
    fn undeclared_views_are_hidden_and_views_read_their_declared_tables() {
        let declared = BTreeMap::from([(
            "usersWithOrders".to_string(),
            ViewDecl::Tables(vec!["users".into(), "orders".into()]),
        )]);
        let s = Schema::from_catalogue(
            vec![("users".into(), vec![col("uid", true), col("name", false)])],
            vec![
                ("usersWithOrders".into(), vec![col("id", false)]),
                ("secret".into(), vec![col("id", false)]),
            ],
            &declared,
        );
        assert_eq!(s.relation("users").unwrap().id_column, "uid");
        assert_eq!(
            s.relation("usersWithOrders").unwrap().tables,
            vec!["users", "orders"]
        );
        assert!(s.relation("secret").is_none());
        assert!(is_internal("d1_migrations") && is_internal("_cf_KV") && !is_internal("users"));
        assert!(is_internal("edgecache_beta_signups") && is_internal("edgecache_demo_seed"));
    }

    #[test]
    fn the_demo_tables_are_the_demo_tenants_only_tables() {
        let declared = BTreeMap::from([
            (
                "mixed".to_string(),
                ViewDecl::Tables(vec!["users".into(), "demo_users".into()]),
            ),
            (
                "demo_view".to_string(),
                ViewDecl::Tables(vec!["demo_users".into()]),
            ),
        ]);
        let s = Schema::from_catalogue(
            vec![
                ("users".into(), vec![col("id", true)]),
                ("demo_users".into(), vec![col("id", true)]),
            ],
            vec![
                ("mixed".into(), vec![col("id", false)]),
                ("demo_view".into(), vec![col("id", false)]),
            ],
            &declared,
        );
        let names = |scope| -> Vec<String> { s.scoped(scope).relations.into_keys().collect() };
        assert_eq!(
            names(Scope::of("demo", "demo")),
            vec!["demo_users", "demo_view"]
        );
        assert_eq!(names(Scope::of("local", "demo")), vec!["users"]);
        assert_eq!(names(Scope::All).len(), 4);
    }

    #[test]
    fn a_view_keeps_the_bindings_its_tables_can_have() {
        let decl: ViewDecl = serde_json::from_str(
            r#"{"bind": {"users": "uid", "orders": "userId", "items": "nope"}, "tables": ["audit"]}"#,
        )
        .unwrap();
        assert_eq!(decl.tables(), vec!["items", "orders", "users", "audit"]);
        let list: ViewDecl = serde_json::from_str(r#"["users", "orders"]"#).unwrap();
        assert_eq!(
            list,
            ViewDecl::Tables(vec!["users".into(), "orders".into()])
        );
        assert!(serde_json::from_str::<ViewDecl>(r#"{"bnd": {"users": "id"}}"#).is_err());
        let s = Schema::from_catalogue(
            vec![
                ("users".into(), vec![col("uid", true)]),
                ("orders".into(), vec![col("id", true), col("userId", false)]),
                ("items".into(), vec![col("id", true)]),
            ],
            vec![
                ("v".into(), vec![col("id", false)]),
                ("noid".into(), vec![col("uid", false)]),
            ],
            &BTreeMap::from([("v".to_string(), decl.clone()), ("noid".to_string(), decl)]),
        );
        let v = s.relation("v").unwrap();
        assert_eq!(
            v.bind,
            BTreeMap::from([
                ("orders".to_string(), "userId".to_string()),
                ("users".to_string(), "uid".to_string())
            ]),
            "a column the table lacks is no binding"
        );
        assert!(
            s.relation("noid").unwrap().bind.is_empty(),
            "no id column, no binding"
        );
    }
}
