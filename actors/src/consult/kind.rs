//! The kinds of consult, their request markers and the sections of their responses.

/// What the lead asks (the first four) or what the consultant asks back (the last two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Clarify requirements before work starts.
    Requirements,
    /// Review a design.
    Design,
    /// A technical question during implementation.
    Implementation,
    /// Review code.
    Review,
    /// Ask-back: the consultant asks the lead to confirm an implementation approach.
    Verification,
    /// Ask-back: the consultant asks the lead for more context.
    Context,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Requirements,
        Kind::Design,
        Kind::Implementation,
        Kind::Review,
        Kind::Verification,
        Kind::Context,
    ];

    /// The name used on the wire (`kind` of a consult request).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Requirements => "requirements",
            Kind::Design => "design",
            Kind::Implementation => "implementation",
            Kind::Review => "review",
            Kind::Verification => "verification",
            Kind::Context => "context",
        }
    }

    /// The kind named on the wire, in any case.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(name.trim()))
    }

    /// The marker that opens a request of this kind.
    pub fn request_marker(self) -> &'static str {
        match self {
            Kind::Requirements => "[CONSULT:REQUIREMENTS]",
            Kind::Design => "[CONSULT:DESIGN]",
            Kind::Implementation => "[CONSULT:IMPLEMENTATION]",
            Kind::Review => "[REQUEST:REVIEW]",
            Kind::Verification => "[CONSULT:CLAUDE:VERIFICATION]",
            Kind::Context => "[CONSULT:CLAUDE:CONTEXT]",
        }
    }

    /// The marker that opens a response of this kind.
    pub fn response_marker(self) -> &'static str {
        match self {
            Kind::Requirements => "[RESPONSE:REQUIREMENTS]",
            Kind::Design => "[RESPONSE:DESIGN]",
            Kind::Implementation => "[RESPONSE:IMPLEMENTATION]",
            Kind::Review => "[RESPONSE:REVIEW]",
            Kind::Verification => "[RESPONSE:VERIFICATION]",
            Kind::Context => "[RESPONSE:CONTEXT]",
        }
    }

    /// The sections a response of this kind carries, with what each holds.
    pub fn sections(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Kind::Requirements => &[
                ("CLARIFICATION_QUESTIONS", "questions for the user"),
                (
                    "CONSIDERATIONS",
                    "non-functional requirements, edge cases, constraints",
                ),
            ],
            Kind::Design => &[
                ("ASSESSMENT", "your assessment of the design"),
                ("RISKS", "what could go wrong"),
                ("ALTERNATIVES", "other designs worth weighing"),
                ("RECOMMENDATION", "what you recommend"),
            ],
            Kind::Implementation => &[
                ("ADVICE", "the direct answer"),
                ("PATTERNS", "recommended patterns"),
                ("CAVEATS", "what to watch out for"),
            ],
            Kind::Review => &[
                ("STRENGTHS", "what is good"),
                (
                    "ISSUES",
                    "one per line, each starting with Critical, Important or Minor",
                ),
                ("SUGGESTIONS", "improvements beyond the issues"),
            ],
            Kind::Verification => &[
                (
                    "VERDICT",
                    "CONFIRMED or REJECTED: whether the approach is right",
                ),
                ("REASONING", "why"),
                ("CORRECTIONS", "what to change in the approach, if anything"),
            ],
            Kind::Context => &[
                ("CONTEXT", "the context asked for"),
                ("FILES", "the files and places that matter"),
                ("CONSTRAINTS", "constraints the consultant must respect"),
            ],
        }
    }

    /// The section names only.
    pub fn section_names(self) -> impl Iterator<Item = &'static str> {
        self.sections().iter().map(|(n, _)| *n)
    }

    /// The kind whose response marker `text` carries first, if any.
    pub fn responded(text: &str) -> Option<Kind> {
        let upper = text.to_uppercase();
        Kind::ALL
            .into_iter()
            .filter_map(|k| upper.find(k.response_marker()).map(|at| (at, k)))
            .min_by_key(|(at, _)| *at)
            .map(|(_, k)| k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_markers_are_the_protocol_s() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(&k.as_str().to_uppercase()), Some(k));
            assert!(k.response_marker().starts_with("[RESPONSE:"));
        }
        assert_eq!(Kind::Review.request_marker(), "[REQUEST:REVIEW]");
        assert_eq!(Kind::Context.request_marker(), "[CONSULT:CLAUDE:CONTEXT]");
        assert_eq!(Kind::parse("refactor"), None);
    }

    #[test]
    fn the_first_response_marker_names_the_kind() {
        assert_eq!(
            Kind::responded("ok [response:design] then [RESPONSE:REVIEW]"),
            Some(Kind::Design)
        );
        assert_eq!(Kind::responded("no marker"), None);
    }
}
