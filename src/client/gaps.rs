//! Filling a gap the daemon's replay could not cover.
//!
//! A join answered `recovered: false` replayed only the newest events after the seq the client
//! asked from (the client was away for a long, busy time). Until the gap is filled from history
//! with `get_messages`, the project's live events are held back; then the pages' records go up in
//! order, and the held events after them. The session drops whatever was already handed up, so
//! the overlap between pages and held events costs nothing.

use std::collections::BTreeMap;

use super::session::Incoming;

/// Records per page: small enough that a page of long lines stays far below the daemon's bound
/// on a connection's unsent bytes.
pub const PAGE_LIMIT: u64 = 200;

#[derive(Default)]
struct Gap {
    /// Events that came while the gap was open.
    held: Vec<Incoming>,
    /// The next page should be asked for.
    page_due: bool,
    /// Where the next page starts: the `next_seq` of the last page. A page the daemon cut
    /// short (its scan budget) may hold no record at all and still move this on.
    next: Option<u64>,
}

/// The followed projects with a gap open.
#[derive(Default)]
pub struct Gaps {
    open: BTreeMap<String, Gap>,
}

impl Gaps {
    /// `project`'s replay left a gap: hold its events and ask for the first page.
    pub fn open(&mut self, project: &str) {
        let gap = self.open.entry(project.to_string()).or_default();
        gap.page_due = true;
        // A new gap starts after the last event handed up.
        gap.next = None;
    }

    /// Keeps an event of a project whose gap is open; gives the others back.
    pub fn hold(&mut self, m: Incoming) -> Option<Incoming> {
        let project = m.value["project_id"].as_str().unwrap_or_default();
        match self.open.get_mut(project) {
            Some(gap) => {
                gap.held.push(m);
                None
            }
            None => Some(m),
        }
    }

    /// The projects whose next page should be asked for now, with where it starts when an
    /// earlier page said (otherwise after the last event handed up).
    pub fn due(&mut self) -> Vec<(String, Option<u64>)> {
        self.open
            .iter_mut()
            .filter(|(_, g)| g.page_due)
            .map(|(p, g)| {
                g.page_due = false;
                (p.clone(), g.next)
            })
            .collect()
    }

    /// A page (a `messages` reply, or an error) arrived: what to hand up, in order.
    pub fn page(&mut self, page: &Incoming) -> Vec<Incoming> {
        let project = page.value["project_id"].as_str().unwrap_or_default();
        let mut up: Vec<Incoming> = page.value["data"]["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|record| Incoming {
                text: record.to_string(),
                value: record.clone(),
            })
            .collect();
        // An error page (the project is gone) has nothing more to fill the gap with.
        let more = page.kind() != "error" && page.value["data"]["has_more"] == true;
        match self.open.get_mut(project) {
            Some(gap) if more => {
                gap.page_due = true;
                gap.next = page.value["data"]["next_seq"].as_u64();
            }
            Some(_) => up.extend(self.open.remove(project).into_iter().flat_map(|g| g.held)),
            None => {}
        }
        up
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(seq: u64) -> Incoming {
        let value = json!({"type": "agent_message", "project_id": "p", "seq": seq});
        Incoming {
            text: value.to_string(),
            value,
        }
    }

    fn page(seqs: &[u64], has_more: bool, next_seq: u64) -> Incoming {
        let records: Vec<_> = seqs.iter().map(|s| event(*s).value).collect();
        let value = json!({"type": "messages", "project_id": "p",
                           "data": {"messages": records, "has_more": has_more, "next_seq": next_seq}});
        Incoming {
            text: value.to_string(),
            value,
        }
    }

    fn seqs(ms: &[Incoming]) -> Vec<u64> {
        ms.iter()
            .map(|m| m.value["seq"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn events_wait_behind_the_pages_that_fill_the_gap() {
        let mut g = Gaps::default();
        assert!(g.hold(event(1)).is_some(), "no gap, no holding");
        g.open("p");
        assert_eq!(g.due(), [("p".to_string(), None)]);
        assert!(g.due().is_empty(), "asked once per page");
        assert!(g.hold(event(90)).is_none());
        assert_eq!(seqs(&g.page(&page(&[2, 3], true, 3))), [2, 3]);
        assert_eq!(g.due(), [("p".to_string(), Some(3))]);
        // A page cut before any match still moves the next one on.
        assert!(g.page(&page(&[], true, 40)).is_empty());
        assert_eq!(g.due(), [("p".to_string(), Some(40))]);
        assert_eq!(seqs(&g.page(&page(&[41], false, 41))), [41, 90]);
        assert!(g.hold(event(91)).is_some(), "the gap is closed");
    }
}
