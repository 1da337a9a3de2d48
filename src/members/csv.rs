//! CSV files from outside (a CRM export, the brand's store list): RFC 4180 through the `csv`
//! crate, a UTF-8 BOM dropped, blank lines skipped, each record with the line it starts on, and
//! bounded — a field of at most 1 KiB, at most a million rows below the header.

/// Fields and rows an import reads at most (a CRM export is big, not unbounded).
pub(crate) const MAX_FIELD: usize = 1024;
pub(crate) const MAX_ROWS: usize = 1_000_000;

/// Why a CSV file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// The text is not CSV the reader takes.
    #[error("{0}")]
    Syntax(#[from] csv::Error),
    /// A field longer than 1 KiB.
    #[error("line {line}: a field longer than {max} bytes ({got} bytes)", max = MAX_FIELD)]
    LongField { line: usize, got: usize },
    /// More than a million rows.
    #[error("more than {max} rows", max = MAX_ROWS)]
    TooManyRows,
}

/// CSV text (RFC 4180, through the `csv` crate; a UTF-8 BOM is dropped) as records with their
/// line numbers, blank lines skipped; a field over 1 KiB or more than a million rows below the
/// header (the first record) is an error.
pub fn read_csv(text: &str) -> Result<Vec<(usize, Vec<String>)>, CsvError> {
    records(text).collect()
}

/// [`read_csv`] one record at a time, so a big file is never held twice.
pub fn records(text: &str) -> impl Iterator<Item = Result<(usize, Vec<String>), CsvError>> + '_ {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    // Line numbers from byte offsets: the crate's own miscount after CRLF and quoted newlines,
    // and a record's offset points at the line end before it.
    let (bytes, mut counted, mut line, mut taken) = (text.as_bytes(), 0usize, 1usize, 0usize);
    let mut failed = false;
    reader.into_records().filter_map(move |record| {
        if failed {
            return None;
        }
        let read = (|| {
            let record = record?;
            let mut at = record.position().map_or(0, |p| p.byte() as usize).min(bytes.len());
            while at < bytes.len() && (bytes[at] == b'\r' || bytes[at] == b'\n') {
                at += 1;
            }
            line += bytes[counted.min(at)..at].iter().filter(|b| **b == b'\n').count();
            counted = counted.max(at);
            if let Some(long) = record.iter().find(|f| f.len() > MAX_FIELD) {
                return Err(CsvError::LongField { line, got: long.len() });
            }
            if record.iter().all(|f| f.trim().is_empty()) {
                return Ok(None);
            }
            // The header is not a row: a file of exactly the limit is accepted.
            if taken > MAX_ROWS {
                return Err(CsvError::TooManyRows);
            }
            taken += 1;
            Ok(Some((line, record.iter().map(str::to_owned).collect())))
        })();
        failed = read.is_err();
        read.transpose()
    })
}

#[cfg(test)]
mod csv_tests {
    use super::{CsvError, MAX_ROWS, read_csv};

    #[test]
    fn a_file_of_exactly_the_row_limit_is_read() {
        let mut text = String::from("card\n");
        text.push_str(&"C\n".repeat(MAX_ROWS));
        assert_eq!(read_csv(&text).unwrap().len(), MAX_ROWS + 1, "the header and every row");
        text.push_str("C\n");
        assert!(matches!(read_csv(&text), Err(CsvError::TooManyRows)));
        assert_eq!(CsvError::TooManyRows.to_string(), "more than 1000000 rows");
    }

    #[test]
    fn quotes_crlf_bom_and_bounds() {
        let text = "\u{feff}card,name\r\n\"C1\",\"Li, Lei\"\r\n\r\nC2,\"say \"\"hi\"\"\"\nC3,\"two\nlines\"";
        let recs = read_csv(text).unwrap();
        assert_eq!(recs[0].1, ["card", "name"]);
        assert_eq!(recs[1], (2, vec!["C1".to_string(), "Li, Lei".to_string()]));
        assert_eq!(recs[2], (4, vec!["C2".to_string(), "say \"hi\"".to_string()]));
        assert_eq!(recs[3], (5, vec!["C3".to_string(), "two\nlines".to_string()]));
        assert!(read_csv(&format!("a\n{}", "x".repeat(2000))).unwrap_err().to_string().contains("longer than 1024"));
    }
}
