//! Hand-written aligned tables for the `table` output format.

/// Rows under a header line, columns separated by two spaces, no trailing blanks.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, each line ending in `\n`.
    pub fn render(&self) -> String {
        render_rows(std::iter::once(&self.headers).chain(self.rows.iter()))
    }
}

/// `KEY  value` lines with the values aligned.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let rows: Vec<Vec<String>> = pairs
        .iter()
        .map(|(k, v)| vec![k.to_string(), v.clone()])
        .collect();
    render_rows(rows.iter())
}

fn render_rows<'a>(rows: impl Iterator<Item = &'a Vec<String>> + Clone) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows.clone() {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(max) => *max = (*max).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_under_headers() {
        let mut t = Table::new(&["NAME", "PARTITIONS", "INTERNAL"]);
        t.row(vec!["orders".into(), "12".into(), "false".into()]);
        t.row(vec!["a".into(), "1".into(), "true".into()]);
        assert_eq!(
            t.render(),
            "NAME    PARTITIONS  INTERNAL\n\
             orders  12          false\n\
             a       1           true\n"
        );
    }

    #[test]
    fn empty_table_is_just_the_header_and_no_trailing_blanks() {
        let t = Table::new(&["A", "B"]);
        assert_eq!(t.render(), "A  B\n");
        let mut t = Table::new(&["KEY", "VALUE"]);
        t.row(vec!["k".into(), String::new()]);
        assert_eq!(t.render(), "KEY  VALUE\nk\n");
    }

    #[test]
    fn wide_characters_count_as_one_column() {
        let mut t = Table::new(&["K", "V"]);
        t.row(vec!["é".into(), "x".into()]);
        assert_eq!(t.render(), "K  V\né  x\n");
    }

    #[test]
    fn key_values_align_values() {
        assert_eq!(
            key_values(&[("NAME", "t".into()), ("PARTITIONS", "3".into())]),
            "NAME        t\nPARTITIONS  3\n"
        );
    }
}
