//! Bounds on text from outside: lengths in characters (what people count), and no control
//! characters in one-line fields (a name, a SKU, an order number) — the same rule wherever
//! input arrives, so a field is judged alike by the API, the console and an import.

/// Why a field from outside was refused; its message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadField {
    /// Fewer or more characters than the field takes.
    #[error("{field} must be {min} to {max} characters (got {got})")]
    Length { field: String, min: usize, max: usize, got: usize },
    /// More characters than the field takes (it may be empty).
    #[error("{field} must be at most {max} characters (got {got})")]
    TooLong { field: String, max: usize, got: usize },
    /// A control character in a one-line field.
    #[error("{field} must not contain control characters")]
    Control { field: String },
}

/// The message, where a caller's error is the text it shows.
impl From<BadField> for String {
    fn from(e: BadField) -> String {
        e.to_string()
    }
}

/// `Err` unless `value` has `min..=max` characters.
pub fn check_len(field: &str, value: &str, min: usize, max: usize) -> Result<(), BadField> {
    let got = value.chars().count();
    if got < min || got > max {
        let field = field.to_owned();
        return Err(if min > 0 {
            BadField::Length { field, min, max, got }
        } else {
            BadField::TooLong { field, max, got }
        });
    }
    Ok(())
}

/// [`check_len`], and no control characters (a one-line field).
pub fn check_line(field: &str, value: &str, min: usize, max: usize) -> Result<(), BadField> {
    check_len(field, value, min, max)?;
    if value.chars().any(char::is_control) {
        return Err(BadField::Control { field: field.to_owned() });
    }
    Ok(())
}

/// What went wrong, said in words: the error of the commands and tools whose output is text
/// (the CLI, `dev`, the benchmarks), where the message is all there is to do with it. Any
/// error that displays becomes one with `?`. (It does not display itself — that would make the
/// conversion from every displayable type overlap the identity one; print [`Failure::0`].)
#[derive(Debug)]
pub struct Failure(pub String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure(e.to_string())
    }
}

/// Lowercase hex of `bytes` (digests, MACs, random tokens).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn bounds() {
        assert!(super::check_len("name", "ab", 1, 2).is_ok());
        assert_eq!(
            super::check_len("name", "abc", 1, 2).unwrap_err().to_string(),
            "name must be 1 to 2 characters (got 3)"
        );
        assert_eq!(
            super::check_len("digest", "abc", 0, 2).unwrap_err().to_string(),
            "digest must be at most 2 characters (got 3)"
        );
        assert!(super::check_len("content", "a\nb", 0, 10).is_ok());
        assert!(super::check_line("sku", "a\nb", 0, 10).unwrap_err().to_string().contains("control characters"));
        assert_eq!(super::check_len("name", "门店", 1, 2), Ok(()), "characters, not bytes");
    }
}
