//! Plain-text tables: a header row and left-aligned columns, two spaces apart.

/// A table being built row by row.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row. Panics (a programmer error) if it has the wrong number of cells.
    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(
            cells.len(),
            self.header.len(),
            "row width differs from header"
        );
        self.rows.push(cells);
    }

    /// The table as text, one line per row, each ending in a newline, no trailing spaces.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let pad = width - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let mut table = Table::new(&["NAME", "ORIGIN"]);
        table.row(vec!["acme".into(), "d1".into()]);
        table.row(vec![
            "globex-corp".into(),
            "http https://api.example.com".into(),
        ]);
        assert_eq!(
            table.render(),
            "NAME         ORIGIN\n\
             acme         d1\n\
             globex-corp  http https://api.example.com\n"
        );
    }

    #[test]
    fn counts_characters_not_bytes() {
        let mut table = Table::new(&["A", "B"]);
        table.row(vec!["é".into(), "x".into()]);
        assert_eq!(table.render(), "A  B\né  x\n");
    }

    #[test]
    #[should_panic(expected = "row width")]
    fn wrong_width_is_a_programmer_error() {
        Table::new(&["A"]).row(vec![]);
    }
}
