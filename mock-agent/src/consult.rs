//! Answering consults the way a consultant model does, well or badly.
//!
//! A consult prompt names the response marker and the `## SECTION` headings it wants; the mock
//! answers with exactly those, so that follow-ups (which ask for the format again, or for the
//! missing sections only) are answered as asked. The `answer=` parameter makes the *first*
//! request go wrong in one of the ways the daemon must handle; a follow-up is always answered
//! properly, as a model that was corrected would.

/// How the first request of a consult is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Answer {
    /// Marker and every section asked for.
    #[default]
    Complete,
    /// Prose about the question, without marker or headings.
    NoMarker,
    /// The marker and the first section only.
    Incomplete,
    /// Something else entirely.
    Unrelated,
    /// Nothing until killed (the daemon's time limit).
    Slow,
}

impl Answer {
    pub fn named(name: &str) -> Option<Answer> {
        Some(match name {
            "complete" => Answer::Complete,
            "nomarker" => Answer::NoMarker,
            "incomplete" => Answer::Incomplete,
            "unrelated" => Answer::Unrelated,
            "slow" => Answer::Slow,
            _ => return None,
        })
    }
}

/// Whether `prompt` is a consult (it asks for a response marker).
pub fn requested(prompt: &str) -> bool {
    prompt.contains("[RESPONSE:")
}

/// The misbehaviour that applies to this prompt: only a first request misbehaves, not the
/// daemon's follow-ups (a shorter retry says "Answer briefly"; the others start differently).
pub fn effective(prompt: &str, answer: Answer) -> Answer {
    let first = (prompt.starts_with("[CONSULT:") || prompt.starts_with("[REQUEST:"))
        && !prompt.contains("Answer briefly");
    if first {
        answer
    } else {
        Answer::Complete
    }
}

/// The answer text (`None` for `Slow`: the caller waits instead).
pub fn reply(prompt: &str, answer: Answer) -> Option<String> {
    let marker = marker(prompt).unwrap_or("[RESPONSE:UNKNOWN]");
    let sections = headings(prompt);
    let question = prompt.lines().nth(1).unwrap_or("").trim();
    Some(match answer {
        Answer::Slow => return None,
        Answer::Unrelated => "Here is a short poem about autumn leaves drifting.".into(),
        Answer::NoMarker => format!("I looked into it. {question} Looks fine to me."),
        Answer::Incomplete => {
            let first = sections.first().copied().unwrap_or("ADVICE");
            format!("{marker}\n{}", section(first))
        }
        Answer::Complete => {
            let body: Vec<String> = sections.iter().map(|s| section(s)).collect();
            format!("Sure.\n{marker}\n{}\nHope this helps.", body.join("\n"))
        }
    })
}

fn section(name: &str) -> String {
    let body = match name {
        "ISSUES" => {
            "- **Critical**: the lock is never released on error\n- Minor: a typo in a comment"
                .to_string()
        }
        other => format!("mock {} text", other.to_lowercase()),
    };
    format!("## {name}\n{body}\n")
}

/// The first `[RESPONSE:…]` marker of the prompt.
fn marker(prompt: &str) -> Option<&str> {
    let start = prompt.find("[RESPONSE:")?;
    let len = prompt[start..].find(']')? + 1;
    Some(&prompt[start..start + len])
}

/// The `## NAME` headings the prompt asks for.
fn headings(prompt: &str) -> Vec<&str> {
    prompt
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMPT: &str = "[CONSULT:DESIGN]\nIs the cache right?\n\nStart your answer with \
                          [RESPONSE:DESIGN] and give each of these sections.\n## ASSESSMENT\n(x)\n## RISKS\n(y)\n";

    #[test]
    fn answers_with_what_the_prompt_asks_for() {
        let r = reply(PROMPT, Answer::Complete).unwrap();
        assert!(r.contains("[RESPONSE:DESIGN]\n## ASSESSMENT\n") && r.contains("## RISKS\n"));
        let r = reply(PROMPT, Answer::Incomplete).unwrap();
        assert!(r.contains("## ASSESSMENT") && !r.contains("## RISKS"));
        assert!(!reply(PROMPT, Answer::NoMarker)
            .unwrap()
            .contains("[RESPONSE"));
        assert!(reply(PROMPT, Answer::Slow).is_none());
    }

    #[test]
    fn only_the_first_request_misbehaves() {
        assert_eq!(effective(PROMPT, Answer::Unrelated), Answer::Unrelated);
        let retry = format!("{PROMPT}\nAnswer briefly: a few lines per section.");
        assert_eq!(effective(&retry, Answer::Slow), Answer::Complete);
        assert_eq!(
            effective("Your answer lacks some sections.", Answer::Incomplete),
            Answer::Complete
        );
    }
}
