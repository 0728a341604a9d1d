//! Record and table names as given on the command line (`users:123-abc`, `orders`).

/// One record of one table: `TABLE:ID` on the command line, `{"table","id"}` on the wire.
pub use edgecache_core::invalidation::RecordRef;

use edgecache_core::invalidation::check_table_name;

/// Parses a `--table` value, for clap.
pub fn parse_table(input: &str) -> Result<String, String> {
    check_table_name(input)
        .map(|()| input.to_string())
        .map_err(|why| format!("invalid table '{input}': {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_tables() {
        assert_eq!(parse_table("order_items"), Ok("order_items".to_string()));
        assert!(parse_table("").is_err());
        assert!(parse_table("users:1").unwrap_err().contains("':'"));
    }
}
