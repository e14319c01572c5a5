//! Text that came from a traced process (thread names, command lines,
//! cgroup paths) or from a capture file, made safe to print on a terminal.
//!
//! A thread may name itself `"\x1b]0;PWN\x07"` and so retitle, clear or
//! reprogram the terminal of whoever reads the report. Like `strace`,
//! control characters are shown as backslash escapes instead: C0 controls
//! and DEL as `\n`, `\t`, `\r` or `\xHH`, C1 controls (U+0080..U+009F,
//! among them the single-character CSI U+009B) and the Unicode bidi
//! overrides, which can make a line read differently from its bytes, as
//! `\u{HHHH}`. A backslash is doubled, so an escape seen in the output
//! always stands for a character that was escaped.
use std::{borrow::Cow, fmt};

/// `s` ready for a terminal; borrowed when nothing needs escaping.
pub fn escape(s: &str) -> Cow<'_, str> {
    if s.chars().any(needs_escape) {
        Cow::Owned(Escaped(s).to_string())
    } else {
        Cow::Borrowed(s)
    }
}

/// Formats the wrapped text escaped, for `format!` arguments.
#[derive(Clone, Copy, Debug)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        // Runs of plain text are written whole; only escapes go one by one.
        while let Some(at) = rest.find(needs_escape) {
            f.write_str(&rest[..at])?;
            let Some(c) = rest[at..].chars().next() else {
                break;
            };
            write_escape(f, c)?;
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// JSON text made as inert on a terminal as [`escape`]'s: serde_json
/// escapes C0 controls in strings but leaves DEL, C1 and the bidi
/// overrides raw. Outside strings JSON has only printable ASCII, so each of
/// those is inside a string, where `\uXXXX` stands for the same character:
/// the JSON means what it meant.
pub fn json_for_terminal(json: &str) -> Cow<'_, str> {
    // C0 needs nothing: serde_json escapes it in strings, and outside them
    // it is only the pretty printer's own newlines.
    let raw = |c: char| matches!(c, '\x7f'..='\u{9f}') || is_bidi_control(c);
    if !json.contains(raw) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if raw(c) {
            // All of them are in the Basic Multilingual Plane.
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c == '\\' || c.is_control() || is_bidi_control(c)
}

/// The formatting characters that reorder text (Unicode TR9), the ones
/// "Trojan Source" (CVE-2021-42574) abuses.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn write_escape(f: &mut fmt::Formatter<'_>, c: char) -> fmt::Result {
    match c {
        '\\' => f.write_str("\\\\"),
        '\n' => f.write_str("\\n"),
        '\t' => f.write_str("\\t"),
        '\r' => f.write_str("\\r"),
        c if u32::from(c) < 0x80 => write!(f, "\\x{:02x}", u32::from(c)),
        c => write!(f, "\\u{{{:x}}}", u32::from(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for s in ["", "worker-1", "kworker/0:1", "café ✓ 日本"] {
            assert!(matches!(escape(s), Cow::Borrowed(b) if b == s), "{s}");
        }
    }

    #[test]
    fn controls_are_escaped_as_strace_does() {
        let cases = [
            ("\x1b]0;PWN\x07\x1b[2J", r"\x1b]0;PWN\x07\x1b[2J"),
            ("a\nb\tc\rd", r"a\nb\tc\rd"),
            ("nul\0del\x7f", r"nul\x00del\x7f"),
            ("csi\u{9b}2J", r"csi\u{9b}2J"),
            ("\u{85}next line", r"\u{85}next line"),
            ("back\\slash", r"back\\slash"),
            ("abc\u{202e}fed", r"abc\u{202e}fed"),
            ("\u{2066}iso\u{2069}", r"\u{2066}iso\u{2069}"),
        ];
        for (raw, shown) in cases {
            assert_eq!(escape(raw), shown, "{raw:?}");
            assert_eq!(Escaped(raw).to_string(), shown, "{raw:?}");
        }
    }

    #[test]
    fn json_keeps_its_meaning_without_raw_controls() {
        let value = serde_json::json!({"name": "a\u{9b}2J\x7f\u{202e}b\x1b\n", "n": 1});
        let text = serde_json::to_string_pretty(&value).unwrap();
        assert!(text.contains('\u{9b}'), "serde_json now escapes C1 itself");
        let safe = json_for_terminal(&text);
        assert!(
            !safe
                .chars()
                .any(|c| c != '\n' && (c.is_control() || is_bidi_control(c)))
        );
        assert!(safe.contains(r"a\u009b2J\u007f\u202eb\u001b\n"), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn nothing_a_terminal_acts_on_survives() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let out = escape(&all);
        assert!(!out.chars().any(|c| c.is_control() || is_bidi_control(c)));
    }
}
