//! Short, printable quotes of input in error messages (the host's twin of
//! `plugin_sdk::excerpt`; the host does not depend on the SDK).

/// Characters of an input an error message quotes at most.
pub const EXCERPT_CHARS: usize = 80;

/// `text` as an error message should quote it: at most its first
/// [`EXCERPT_CHARS`] characters, control characters (newlines included)
/// escaped, and `... (N bytes)` when it is longer. A bad input can be a
/// 10 MB line; the message that reports it stays a line.
pub fn excerpt(text: &str) -> String {
    excerpt_of(text, EXCERPT_CHARS)
}

/// [`excerpt`] with another length, for text that is mostly the host's own
/// words around a quote (a parser's message naming a key).
pub fn excerpt_of(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    for c in chars.by_ref().take(max_chars) {
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
    fn long_text_is_cut_to_a_printable_line() {
        assert_eq!(excerpt("a\r\nb\u{1b}[2J"), "a\\r\\nb\\u{1b}[2J");
        assert_eq!(excerpt(&"é".repeat(80)), "é".repeat(80));
        // 81 two-byte characters: cut after 80, the length in bytes.
        assert_eq!(excerpt(&"é".repeat(81)), format!("{}... (162 bytes)", "é".repeat(80)));
    }
}
