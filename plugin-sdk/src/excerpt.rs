//! Short, printable quotes of input in error messages.

/// Characters of an input an error message quotes at most.
pub const EXCERPT_CHARS: usize = 80;

/// `text` as an error message should quote it: at most its first
/// [`EXCERPT_CHARS`] characters, control characters (newlines included)
/// escaped, and `... (N bytes)` when it is longer. A bad input can be a
/// 10 MB line; the message that reports it stays a line.
///
/// ```
/// assert_eq!(plugin_sdk::excerpt("ten"), "ten");
/// assert_eq!(plugin_sdk::excerpt("a\nb"), "a\\nb");
/// let long = "x".repeat(1000);
/// assert_eq!(plugin_sdk::excerpt(&long), format!("{}... (1000 bytes)", "x".repeat(80)));
/// ```
pub fn excerpt(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    for c in chars.by_ref().take(EXCERPT_CHARS) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if chars.next().is_some() {
        out.push_str(&format!("... ({} bytes)", text.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::excerpt;

    #[test]
    fn short_text_is_quoted_whole_and_long_text_is_cut() {
        assert_eq!(excerpt(""), "");
        assert_eq!(excerpt(&"é".repeat(80)), "é".repeat(80));
        // 81 two-byte characters: cut after 80, the length in bytes.
        assert_eq!(excerpt(&"é".repeat(81)), format!("{}... (162 bytes)", "é".repeat(80)));
    }

    #[test]
    fn control_characters_cannot_start_a_line_of_their_own() {
        assert_eq!(excerpt("a\r\nb\u{1b}[2Jc\0"), "a\\r\\nb\\u{1b}[2Jc\\u{0}");
    }
}
