//! A small CSV reader (RFC 4180: quoted fields, doubled quotes, CRLF, a UTF-8 BOM) for the
//! imports, bounded in field size and row count.

const MAX_FIELD: usize = 1024;
const MAX_ROWS: usize = 1_000_000;

/// Splits CSV text into records (RFC 4180: quotes, doubled quotes, CRLF), with their line numbers.
pub fn parse_csv(text: &str) -> Result<Vec<(usize, Vec<String>)>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut field = String::new();
    let mut record: Vec<String> = Vec::new();
    let mut in_quotes = false;
    let mut line = 1;
    let mut record_line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                c => field.push(c),
            }
        } else {
            match c {
                '"' if field.is_empty() => in_quotes = true,
                ',' => record.push(std::mem::take(&mut field)),
                '\r' => {}
                '\n' => {
                    record.push(std::mem::take(&mut field));
                    if record.iter().any(|f| !f.trim().is_empty()) {
                        records.push((record_line, std::mem::take(&mut record)));
                    }
                    record.clear();
                    line += 1;
                    record_line = line;
                }
                c => field.push(c),
            }
        }
        if field.len() > MAX_FIELD {
            return Err(format!("line {line}: a field longer than {MAX_FIELD} bytes"));
        }
        if records.len() > MAX_ROWS {
            return Err(format!("more than {MAX_ROWS} rows"));
        }
    }
    if in_quotes {
        return Err(format!("line {record_line}: unterminated quoted field"));
    }
    record.push(field);
    if record.iter().any(|f| !f.trim().is_empty()) {
        records.push((record_line, record));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_crlf_and_bom() {
        let text = "\u{feff}card,name\r\n\"C1\",\"Li, Lei\"\r\n\r\nC2,\"say \"\"hi\"\"\"\nC3,\"two\nlines\"";
        let recs = parse_csv(text).unwrap();
        assert_eq!(recs[0].1, ["card", "name"]);
        assert_eq!(recs[1], (2, vec!["C1".to_string(), "Li, Lei".to_string()]));
        assert_eq!(recs[2], (4, vec!["C2".to_string(), "say \"hi\"".to_string()]));
        assert_eq!(recs[3], (5, vec!["C3".to_string(), "two\nlines".to_string()]));
        assert!(parse_csv("a\n\"open").is_err());
    }
}
