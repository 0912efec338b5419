//! Hand-written JSON string encoding.
//!
//! Most of what the mock prints that is not copied from a fixture is a
//! handful of fixed-shape objects, so escaping strings is all the JSON
//! machinery they need (the control protocol, which reads JSON, uses
//! serde_json).

/// Appends `s` to `out` as a quoted JSON string, escaping what RFC 8259
/// requires (quote, backslash, control characters). Non-ASCII text is kept as
/// UTF-8, which JSON allows.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let v = c as u32 as usize;
                out.push_str("\\u00");
                out.push(HEX[v >> 4] as char);
                out.push(HEX[v & 0xf] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `s` as a quoted JSON string.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_str(&mut out, s);
    out
}

/// `s` as a quoted JSON string, or `null` when absent.
pub fn string_or_null(s: Option<&str>) -> String {
    match s {
        Some(s) => string(s),
        None => "null".to_owned(),
    }
}

/// Appends the decimal digits of `v` to a byte buffer without going through
/// `fmt`, because the `lines` scenario does this twice per line at full speed.
pub fn push_decimal(buf: &mut Vec<u8>, mut v: u128) {
    let mut digits = [0u8; 40];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_only_quoted() {
        assert_eq!(string("hello world"), "\"hello world\"");
        assert_eq!(string(""), "\"\"");
    }

    #[test]
    fn quote_and_backslash_are_escaped() {
        assert_eq!(string(r#"say "hi" \o/"#), r#""say \"hi\" \\o/""#);
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(string("a\nb\rc\td"), r#""a\nb\rc\td""#);
        assert_eq!(string("\u{8}\u{c}"), r#""\b\f""#);
        assert_eq!(string("\u{0}\u{1f}\u{1b}"), r#""\u0000\u001f\u001b""#);
    }

    #[test]
    fn non_ascii_and_del_pass_through() {
        assert_eq!(string("héllo — ✓ \u{7f}"), "\"héllo — ✓ \u{7f}\"");
    }

    #[test]
    fn null_when_absent() {
        assert_eq!(string_or_null(None), "null");
        assert_eq!(string_or_null(Some("x")), "\"x\"");
    }

    #[test]
    fn decimal_digits() {
        for v in [0u128, 7, 10, 1234567890, u128::MAX] {
            let mut buf = Vec::new();
            push_decimal(&mut buf, v);
            assert_eq!(buf, v.to_string().into_bytes());
        }
    }
}
