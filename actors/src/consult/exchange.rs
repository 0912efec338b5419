//! One consult from question to result: the prompts, the failure table, bounded attempts.
//!
//! | what came back                         | failure      | next prompt                         |
//! |----------------------------------------|--------------|-------------------------------------|
//! | nothing before the time limit          | `Timeout`    | the request again, shorter          |
//! | another kind's marker, or no word of   | `Unrelated`  | the question and its context again  |
//! | the question and no section            |              |                                     |
//! | no `[RESPONSE:<KIND>]` marker          | `NoMarker`   | the structured format again         |
//! | the marker, some sections missing      | `Incomplete` | only the missing sections           |
//!
//! Sections gathered over the attempts are merged; when the attempts run out the consult ends
//! `partial` (some sections) or `failed` (none).

use serde::Serialize;

use super::issues::{self, Issue};
use super::kind::Kind;
use super::sections::{self, Sections};

/// The default number of attempts, the first one included.
pub const DEFAULT_ATTEMPTS: u32 = 3;

/// How long a question may be in the shorter prompt sent after a timeout.
const SHORT_QUESTION_CHARS: usize = 2_000;

/// What one attempt produced.
#[derive(Debug, Clone, Copy)]
pub enum Reply<'a> {
    /// The consultant's answer text.
    Text(&'a str),
    /// Nothing before the time limit.
    TimedOut,
}

/// Why an attempt did not give a complete answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    NoMarker,
    Incomplete { missing: Vec<&'static str> },
    Timeout,
    Unrelated,
}

impl Failure {
    /// The name used in history events.
    pub fn name(&self) -> &'static str {
        match self {
            Failure::NoMarker => "no_marker",
            Failure::Incomplete { .. } => "incomplete",
            Failure::Timeout => "timeout",
            Failure::Unrelated => "unrelated",
        }
    }
}

/// How a consult ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Complete,
    Partial,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Complete => "complete",
            Status::Partial => "partial",
            Status::Failed => "failed",
        }
    }
}

/// The result of a consult.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub status: Status,
    pub attempts: u32,
    pub sections: Sections,
    /// The review's issues by severity (empty for other kinds).
    pub issues: Vec<Issue>,
    /// The last answer as the consultant wrote it.
    pub text: String,
}

/// What to do after an attempt.
#[derive(Debug, Clone)]
pub enum Next {
    /// Send this prompt as the next attempt (in the same conversation).
    Ask { failure: Failure, prompt: String },
    /// The consult is over.
    Done(Outcome),
}

/// One consult in progress.
#[derive(Debug, Clone)]
pub struct Exchange {
    kind: Kind,
    question: String,
    context: Option<String>,
    max_attempts: u32,
    attempts: u32,
    sections: Sections,
    last_text: String,
}

impl Exchange {
    pub fn new(kind: Kind, question: &str, context: Option<&str>, max_attempts: u32) -> Self {
        Exchange {
            kind,
            question: question.to_string(),
            context: context.map(String::from),
            max_attempts: max_attempts.max(1),
            attempts: 0,
            sections: Sections::new(),
            last_text: String::new(),
        }
    }

    /// The first prompt: the request marker, the question, the context and the format.
    pub fn first_prompt(&self) -> String {
        self.request(self.context.as_deref(), &self.question)
    }

    /// Takes the answer to the latest prompt and says what comes next.
    pub fn answer(&mut self, reply: Reply<'_>) -> Next {
        self.attempts += 1;
        let failure = match reply {
            Reply::TimedOut => Some(Failure::Timeout),
            Reply::Text(text) => {
                self.last_text = text.to_string();
                self.judge(text)
            }
        };
        match failure {
            Some(failure) if self.attempts < self.max_attempts => {
                let prompt = self.follow_up(&failure);
                Next::Ask { failure, prompt }
            }
            _ => Next::Done(self.outcome()),
        }
    }

    /// Classifies an answer, keeping the sections it did give.
    fn judge(&mut self, text: &str) -> Option<Failure> {
        let marked = Kind::responded(text);
        if marked.is_some_and(|k| k != self.kind) {
            return Some(Failure::Unrelated);
        }
        let found = sections::parse(self.kind, text);
        if marked.is_none() && found.is_empty() && !self.shares_terms(text) {
            return Some(Failure::Unrelated);
        }
        for (name, body) in found {
            self.sections.insert(name, body);
        }
        if marked.is_none() && self.attempts == 1 {
            return Some(Failure::NoMarker);
        }
        let missing = sections::missing(self.kind, &self.sections);
        if !missing.is_empty() {
            return Some(if marked.is_none() && self.sections.is_empty() {
                Failure::NoMarker
            } else {
                Failure::Incomplete { missing }
            });
        }
        None
    }

    /// Whether the answer uses any of the question's distinctive words (of six letters or
    /// more); a question with none cannot be checked and always passes.
    fn shares_terms(&self, text: &str) -> bool {
        let lower = text.to_lowercase();
        let mut terms = self
            .question
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.chars().count() >= 6)
            .map(str::to_lowercase)
            .peekable();
        terms.peek().is_none() || terms.any(|t| lower.contains(&t))
    }

    fn follow_up(&self, failure: &Failure) -> String {
        let marker = self.kind.response_marker();
        match failure {
            Failure::NoMarker => format!(
                "Your answer did not follow the consult format. Answer again: start with {marker} \
                 and give each of these sections under its own heading.\n{}",
                self.format(self.kind.section_names())
            ),
            Failure::Incomplete { missing } => format!(
                "Your answer lacks some sections. Send only the missing ones, after {marker}.\n{}",
                self.format(missing.iter().copied())
            ),
            Failure::Timeout => {
                let short: String = self.question.chars().take(SHORT_QUESTION_CHARS).collect();
                format!(
                    "{}\nAnswer briefly: a few lines per section.",
                    self.request(None, &short)
                )
            }
            Failure::Unrelated => format!(
                "Your answer did not address the question. Here are the question and its context \
                 again.\n\n{}",
                self.first_prompt()
            ),
        }
    }

    fn request(&self, context: Option<&str>, question: &str) -> String {
        let mut p = format!("{}\n{}\n", self.kind.request_marker(), question.trim());
        if let Some(c) = context.filter(|c| !c.trim().is_empty()) {
            p.push_str("\nContext:\n");
            p.push_str(c.trim());
            p.push('\n');
        }
        p.push_str(&format!(
            "\nYou are consulted read-only: do not change any file. Start your answer with {} \
             and give each of these sections under its own heading.\n{}",
            self.kind.response_marker(),
            self.format(self.kind.section_names())
        ));
        p
    }

    /// `## NAME: what it holds`, one per line.
    fn format(&self, names: impl Iterator<Item = &'static str>) -> String {
        names
            .map(|n| {
                let what = self
                    .kind
                    .sections()
                    .iter()
                    .find(|(s, _)| *s == n)
                    .map_or("", |(_, w)| *w);
                format!("## {n}\n({what})\n")
            })
            .collect()
    }

    fn outcome(&self) -> Outcome {
        let complete = sections::missing(self.kind, &self.sections).is_empty();
        let status = match (complete, self.sections.is_empty()) {
            (true, _) => Status::Complete,
            (false, false) => Status::Partial,
            (false, true) => Status::Failed,
        };
        let issues = match self.kind {
            Kind::Review => self
                .sections
                .get("ISSUES")
                .map(|s| issues::parse(s))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        Outcome {
            status,
            attempts: self.attempts,
            sections: self.sections.clone(),
            issues,
            text: self.last_text.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESIGN: &str = "[RESPONSE:DESIGN]\n## ASSESSMENT\nok\n## RISKS\nstale cache\n\
                          ## ALTERNATIVES\nnone\n## RECOMMENDATION\nship it";

    fn design() -> Exchange {
        Exchange::new(
            Kind::Design,
            "Should the session cache be write-through?",
            Some("cache.rs holds it"),
            DEFAULT_ATTEMPTS,
        )
    }

    fn asked(next: Next) -> (Failure, String) {
        match next {
            Next::Ask { failure, prompt } => (failure, prompt),
            Next::Done(o) => panic!("done early: {o:?}"),
        }
    }

    fn done(next: Next) -> Outcome {
        match next {
            Next::Done(o) => o,
            Next::Ask { failure, .. } => panic!("asked again: {failure:?}"),
        }
    }

    #[test]
    fn the_first_prompt_carries_marker_question_context_and_format() {
        let p = design().first_prompt();
        assert!(p.starts_with("[CONSULT:DESIGN]\nShould the session cache"));
        assert!(p.contains("cache.rs holds it"));
        assert!(p.contains("[RESPONSE:DESIGN]"));
        for s in [
            "## ASSESSMENT",
            "## RISKS",
            "## ALTERNATIVES",
            "## RECOMMENDATION",
        ] {
            assert!(p.contains(s), "{s}");
        }
    }

    #[test]
    fn a_complete_answer_ends_at_once() {
        let o = done(design().answer(Reply::Text(DESIGN)));
        assert_eq!(o.status, Status::Complete);
        assert_eq!(o.attempts, 1);
        assert_eq!(o.sections["RECOMMENDATION"], "ship it");
    }

    #[test]
    fn no_marker_asks_for_the_format() {
        let mut x = design();
        let (f, p) = asked(x.answer(Reply::Text("The session cache is fine as it is.")));
        assert_eq!(f, Failure::NoMarker);
        assert!(p.contains("[RESPONSE:DESIGN]") && p.contains("## RISKS"));
        assert_eq!(done(x.answer(Reply::Text(DESIGN))).status, Status::Complete);
    }

    #[test]
    fn incomplete_asks_for_the_missing_sections_only_and_merges() {
        let mut x = design();
        let first = "[RESPONSE:DESIGN]\n## ASSESSMENT\nok\n## RISKS\nstale cache";
        let (f, p) = asked(x.answer(Reply::Text(first)));
        assert_eq!(
            f,
            Failure::Incomplete {
                missing: vec!["ALTERNATIVES", "RECOMMENDATION"]
            }
        );
        assert!(p.contains("## ALTERNATIVES") && !p.contains("## ASSESSMENT"));
        let second = "[RESPONSE:DESIGN]\n**Alternatives:** none\nRecommendation: ship it";
        let o = done(x.answer(Reply::Text(second)));
        assert_eq!(o.status, Status::Complete);
        assert_eq!(o.attempts, 2);
        assert_eq!(o.sections["ASSESSMENT"], "ok");
        assert_eq!(o.sections["RECOMMENDATION"], "ship it");
    }

    #[test]
    fn a_timeout_retries_with_a_shorter_prompt() {
        let mut x = design();
        let (f, p) = asked(x.answer(Reply::TimedOut));
        assert_eq!(f, Failure::Timeout);
        assert!(p.len() < x.first_prompt().len() + 60);
        assert!(!p.contains("cache.rs holds it"));
        assert!(p.contains("Answer briefly"));
    }

    #[test]
    fn an_unrelated_answer_gets_the_context_again() {
        let mut x = design();
        let (f, p) = asked(x.answer(Reply::Text("Here is a poem about autumn leaves.")));
        assert_eq!(f, Failure::Unrelated);
        assert!(p.contains("cache.rs holds it") && p.contains("[CONSULT:DESIGN]"));
        let (f, _) = asked(x.answer(Reply::Text("[RESPONSE:REVIEW]\n## STRENGTHS\nx")));
        assert_eq!(f, Failure::Unrelated);
    }

    #[test]
    fn attempts_are_bounded_and_the_end_is_partial_or_failed() {
        let mut x = design();
        asked(x.answer(Reply::TimedOut));
        asked(x.answer(Reply::Text("[RESPONSE:DESIGN]\n## ASSESSMENT\nok")));
        let o = done(x.answer(Reply::TimedOut));
        assert_eq!((o.status, o.attempts), (Status::Partial, 3));
        assert_eq!(o.sections.keys().collect::<Vec<_>>(), ["ASSESSMENT"]);

        let mut y = Exchange::new(Kind::Design, "q", None, 1);
        let o = done(y.answer(Reply::TimedOut));
        assert_eq!((o.status, o.attempts), (Status::Failed, 1));
    }

    #[test]
    fn a_review_lists_its_issues_by_severity() {
        let mut x = Exchange::new(Kind::Review, "Review the parser change", None, 3);
        let text = "[RESPONSE:REVIEW]\n**STRENGTHS**\nsmall functions\n\
                    **ISSUES**\n- Critical: panics on empty input\n- Minor: naming\n\
                    **SUGGESTIONS**\nadd a fuzz target";
        let o = done(x.answer(Reply::Text(text)));
        assert_eq!(o.status, Status::Complete);
        assert_eq!(o.issues.len(), 2);
        assert_eq!(o.issues[0].severity, issues::Severity::Critical);
    }
}
