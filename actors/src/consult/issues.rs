//! The issues of a code review, each with its severity.
//!
//! A review's `ISSUES` section lists problems as `- **Critical**: …`, `[Important] …`,
//! `Minor - …`, or under a `### Critical` sub-heading. Only an issue whose severity is written
//! is classified; the rest stays in the section's text (the daemon does not guess severities).

use serde::Serialize;

/// How much an issue matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Severity {
    Critical,
    Important,
    Minor,
}

impl Severity {
    const ALL: [Severity; 3] = [Severity::Critical, Severity::Important, Severity::Minor];

    fn name(self) -> &'static str {
        match self {
            Severity::Critical => "Critical",
            Severity::Important => "Important",
            Severity::Minor => "Minor",
        }
    }
}

/// One issue of a review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub severity: Severity,
    pub text: String,
}

/// The issues listed in a review's `ISSUES` section.
pub fn parse(section: &str) -> Vec<Issue> {
    let mut issues: Vec<Issue> = Vec::new();
    let mut group: Option<Severity> = None;
    for line in section.lines() {
        let indented = line.starts_with([' ', '\t']);
        let item = strip_bullet(line.trim());
        if item.is_empty() {
            continue;
        }
        match leading_severity(item) {
            Some((sev, "")) => group = Some(sev),
            Some((severity, text)) => issues.push(Issue {
                severity,
                text: text.to_string(),
            }),
            None if indented && !issues.is_empty() && !is_bullet(line.trim()) => {
                // A continuation of the issue above.
                if let Some(last) = issues.last_mut() {
                    last.text.push(' ');
                    last.text.push_str(item);
                }
            }
            None => {
                if let Some(severity) = group {
                    issues.push(Issue {
                        severity,
                        text: item.to_string(),
                    });
                }
            }
        }
    }
    issues
}

fn is_bullet(line: &str) -> bool {
    strip_bullet(line).len() != line.len()
}

/// The line without its list marker (`-`, `*`, `•`, `1.`, `2)`).
fn strip_bullet(line: &str) -> &str {
    let digits = line.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = if digits.len() != line.len() {
        match digits.strip_prefix(['.', ')']) {
            Some(r) => r,
            None => return line,
        }
    } else {
        match line.strip_prefix(['-', '*', '•', '+']) {
            Some(r) if r.starts_with(' ') => r,
            _ => return line,
        }
    };
    rest.trim_start()
}

/// A severity written at the start of `item` (in any case, bold, bracketed, or as a
/// `###` sub-heading), and the text after it.
fn leading_severity(item: &str) -> Option<(Severity, &str)> {
    let start = item.trim_start_matches(['#', '*', '_', '[', '(', ' ']);
    Severity::ALL.into_iter().find_map(|sev| {
        let name = sev.name();
        let head = start.get(..name.len())?;
        if !head.eq_ignore_ascii_case(name) {
            return None;
        }
        let rest = &start[name.len()..];
        if rest.starts_with(|c: char| c.is_alphanumeric()) {
            return None;
        }
        let text = rest
            .trim_start_matches(['*', '_', ']', ')', ':', ' ', '-', '–', '—'])
            .trim_end_matches(['*', '_'])
            .trim();
        Some((sev, text))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_severities_in_every_style() {
        let s = "- **Critical**: the lock is never released\n\
                 - [Important] no test for the empty input\n\
                 2) minor - a typo in the doc comment\n\
                 * (Minor) unused import\n";
        let got = parse(s);
        assert_eq!(
            got.iter().map(|i| i.severity).collect::<Vec<_>>(),
            [
                Severity::Critical,
                Severity::Important,
                Severity::Minor,
                Severity::Minor
            ]
        );
        assert_eq!(got[0].text, "the lock is never released");
        assert_eq!(got[2].text, "a typo in the doc comment");
    }

    #[test]
    fn sub_headings_group_bullets_and_continuations_join() {
        let s = "### Critical\n- data race in the pool\n  when two workers start at once\n\
                 ### Minor\n- naming\n";
        let got = parse(s);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].severity, Severity::Critical);
        assert_eq!(
            got[0].text,
            "data race in the pool when two workers start at once"
        );
        assert_eq!(got[1].severity, Severity::Minor);
    }

    #[test]
    fn an_issue_without_a_severity_is_not_classified() {
        assert!(parse("- something is off\nCriticality is high").is_empty());
        assert!(parse("None.").is_empty());
    }
}
