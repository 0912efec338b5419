//! Making client input safe to log or echo: no control characters, bounded length.

/// Returns `s` with control characters replaced by `\u{fffd}`-free escapes and cut to at most
/// `max` bytes (on a character boundary), marking the cut with `…`.
pub fn sanitize(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 3);
    for c in s.chars() {
        if out.len() + c.len_utf8() > max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn strips_control_characters_and_bounds_length() {
        assert_eq!(sanitize("a\nb\x1b[31m", 100), "a?b?[31m");
        assert_eq!(sanitize("héllo", 3), "hé…");
        assert_eq!(sanitize("", 3), "");
    }
}
