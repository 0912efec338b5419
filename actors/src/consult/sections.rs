//! Reading the named sections out of a consultant's reply.
//!
//! Models write headings in many ways: `## ASSESSMENT`, `**Assessment**`, `Assessment:`, with
//! the text on the same line or below, and with prose before and after. A line counts as a
//! heading only when, stripped of heading marks, it is exactly one of the section names this
//! kind of response has (optionally followed by `:` and text), so a section is never invented:
//! a word in the middle of a sentence, or a heading the kind does not have, starts nothing.

use std::collections::BTreeMap;

use super::kind::Kind;

/// The sections found, by name, in the order of the protocol.
pub type Sections = BTreeMap<String, String>;

/// Reads the sections of `kind` from `text`. Sections with no text are left out.
pub fn parse(kind: Kind, text: &str) -> Sections {
    let mut found: Vec<(&'static str, Vec<&str>)> = Vec::new();
    for line in text.lines() {
        match heading(kind, line) {
            Some((name, rest)) => {
                let mut body = Vec::new();
                if !rest.is_empty() {
                    body.push(rest);
                }
                found.push((name, body));
            }
            None => {
                if let Some((_, body)) = found.last_mut() {
                    body.push(line);
                }
            }
        }
    }
    let mut out = Sections::new();
    for (name, body) in found {
        let text = body.join("\n").trim().to_string();
        if text.is_empty() {
            continue;
        }
        // A section given twice (say, once per attempt) keeps both parts.
        out.entry(name.to_string())
            .and_modify(|t: &mut String| {
                t.push_str("\n\n");
                t.push_str(&text);
            })
            .or_insert(text);
    }
    out
}

/// The sections of `kind` missing from `found`.
pub fn missing(kind: Kind, found: &Sections) -> Vec<&'static str> {
    kind.section_names()
        .filter(|n| !found.contains_key(*n))
        .collect()
}

/// When `line` is a heading of one of `kind`'s sections: its name and any text after it.
fn heading(kind: Kind, line: &str) -> Option<(&'static str, &str)> {
    let start = line.trim_start_matches(|c: char| {
        c.is_whitespace() || matches!(c, '#' | '*' | '_' | '>' | '-' | '[')
    });
    kind.section_names().find_map(|name| {
        let rest = strip_name(start, name)?;
        let rest = rest.trim_start_matches(['*', '_', ']']);
        let rest = rest.trim_start();
        // The name must end the heading: nothing, or `:` and then text.
        let rest = match rest.strip_prefix(':') {
            Some(after) => after.trim_start_matches(['*', '_']).trim(),
            None if rest.trim_end_matches(['*', '_', '#']).trim().is_empty() => "",
            None => return None,
        };
        Some((name, rest))
    })
}

/// `text` after a leading section name written in any case, with `_` or a space between words.
fn strip_name<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let mut chars = text.char_indices();
    for want in name.chars() {
        let (_, got) = chars.next()?;
        let same = if want == '_' {
            got == '_' || got == ' '
        } else {
            got.eq_ignore_ascii_case(&want)
        };
        if !same {
            return None;
        }
    }
    let at = chars.next().map_or(text.len(), |(i, _)| i);
    Some(&text[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_heading_style_is_read() {
        let text = "Sure, here is my review of the design.\n\
                    [RESPONSE:DESIGN]\n\
                    ## ASSESSMENT\nSound overall.\n\n\
                    **Risks**\n- the cache can go stale\n\
                    alternatives: a write-through cache\n\
                    ### Recommendation:\nKeep the design, add invalidation.\n";
        let s = parse(Kind::Design, text);
        assert_eq!(s["ASSESSMENT"], "Sound overall.");
        assert_eq!(s["RISKS"], "- the cache can go stale");
        assert_eq!(s["ALTERNATIVES"], "a write-through cache");
        assert_eq!(s["RECOMMENDATION"], "Keep the design, add invalidation.");
        assert!(missing(Kind::Design, &s).is_empty());
    }

    #[test]
    fn bold_with_colon_inside_and_spaces_for_underscores() {
        let text = "**Clarification Questions:** Who are the users?\n\
                    __considerations__\nLatency under 100 ms.";
        let s = parse(Kind::Requirements, text);
        assert_eq!(s["CLARIFICATION_QUESTIONS"], "Who are the users?");
        assert_eq!(s["CONSIDERATIONS"], "Latency under 100 ms.");
    }

    #[test]
    fn never_invents_a_section() {
        // Names in prose, a longer word, another kind's heading, an empty section.
        let text = "The assessment is below.\n\
                    Assessments vary.\n\
                    ## ADVICE\nuse a queue\n\
                    ## RISKS\n\n## ASSESSMENT\nfine";
        let s = parse(Kind::Design, text);
        assert_eq!(s.keys().collect::<Vec<_>>(), ["ASSESSMENT"]);
        assert_eq!(s["ASSESSMENT"], "fine");
        assert_eq!(
            missing(Kind::Design, &s),
            ["RISKS", "ALTERNATIVES", "RECOMMENDATION"]
        );
        assert!(parse(Kind::Design, "no headings at all").is_empty());
    }

    #[test]
    fn prose_after_a_heading_line_stays_in_that_section() {
        let s = parse(Kind::Implementation, "ADVICE: use a trie.\nIt is faster.");
        assert_eq!(s["ADVICE"], "use a trie.\nIt is faster.");
        // A heading-like word followed by more words without a colon is prose.
        let s = parse(Kind::Implementation, "## ADVICE\nx\nPatterns matter a lot");
        assert_eq!(s["ADVICE"], "x\nPatterns matter a lot");
    }
}
