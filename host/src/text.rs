//! Text a plugin hands the host (errors, log records, descriptions, names,
//! order reasons) passes through [`bounded_escaped`] where it enters, so it
//! can neither flood the terminal, `summary.json` or memory, nor forge a
//! line of the host's own log or drive the operator's terminal.

use std::fmt::Write;

/// Longest error message or log record kept from a plugin, in bytes of
/// escaped text: a panic message with its location fits several times over.
pub const MESSAGE_MAX: usize = 4096;
/// Longest description, reason or default text value kept.
pub const DESCRIPTION_MAX: usize = 1024;
/// Longest name (plugin name, setting key, feature name, log field) kept.
pub const NAME_MAX: usize = 256;
/// Longest guest backtrace kept: its frames are named by the plugin's own
/// name section, so they are plugin text too.
pub const BACKTRACE_MAX: usize = 16 * 1024;

/// `text` made safe to print and store: every control character escaped
/// (`\n`, `\r`, `\t` as such, others as `\u{1b}`), as are the Unicode line
/// separators and direction overrides that could make a line look like
/// another; then cut to at most `max` bytes (on a character boundary), with
/// a note saying how long the original was.
pub fn bounded_escaped(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 48);
    for (at, c) in text.char_indices() {
        let before = out.len();
        push_escaped(&mut out, c);
        if out.len() > max {
            out.truncate(before);
            let _ = write!(out, "… (cut at byte {at} of {})", text.len());
            return out;
        }
    }
    out
}

/// Like [`bounded_escaped`] for an owned string, without copying text that
/// needs neither cutting nor escaping (the common case on every call).
pub fn bound_owned(text: String, max: usize) -> String {
    if text.len() <= max && !text.chars().any(needs_escape) { text } else { bounded_escaped(&text, max) }
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if needs_escape(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_line_breaks_are_escaped() {
        let text = "ok\nINFO host: forged\r\x1b[31mred\u{7f}\u{2028}\u{202e}";
        assert_eq!(
            bounded_escaped(text, MESSAGE_MAX),
            "ok\\nINFO host: forged\\r\\u{1b}[31mred\\u{7f}\\u{2028}\\u{202e}"
        );
        assert_eq!(bound_owned("plain text, é".to_owned(), 64), "plain text, é");
    }

    #[test]
    fn long_text_is_cut_on_a_character_and_says_so() {
        let text = "é".repeat(10); // 20 bytes
        let cut = bounded_escaped(&text, 5);
        assert_eq!(cut, "éé… (cut at byte 4 of 20)");
        // Escapes count towards the cap: 3 newlines are 6 bytes.
        assert_eq!(bounded_escaped("\n\n\n", 5), "\\n\\n… (cut at byte 2 of 3)");
        assert_eq!(bound_owned("x".repeat(100), 10).len(), 10 + "… (cut at byte 10 of 100)".len());
    }
}
