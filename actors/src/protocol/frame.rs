//! Building server messages. Each message is encoded once; the resulting [`Frame`] is what the
//! broadcast actor hands to every subscriber and, for stored events, exactly the line written to
//! the project's history.

use std::sync::Arc;

use bytestring::ByteString;
use serde::Serialize;

/// Who an event stored in history came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// A prompt a client sent.
    Client,
    /// The agent's output.
    Agent,
    /// State changes, session resets, run results.
    System,
}

impl Direction {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client" => Some(Direction::Client),
            "agent" => Some(Direction::Agent),
            "system" => Some(Direction::System),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Client => "client",
            Direction::Agent => "agent",
            Direction::System => "system",
        }
    }
}

/// An encoded server message, cheap to clone (the text is reference counted).
#[derive(Debug, Clone)]
pub struct Frame {
    pub text: ByteString,
    /// The project the message belongs to, if any.
    pub project: Option<Arc<str>>,
    /// The history seq of a stored event.
    pub seq: Option<u64>,
}

impl Frame {
    /// The same message as a live-only event: without `seq` and `direction` (for an event that
    /// could not be stored). The envelope's fields come before `data`, so the first occurrence
    /// of each key is the envelope's own.
    pub fn without_seq(&self) -> Frame {
        let mut text = self.text.to_string();
        for key in [",\"seq\":", ",\"direction\":"] {
            if let Some(start) = text.find(key) {
                let rest = &text[start + key.len()..];
                let end = if let Some(quoted) = rest.strip_prefix('"') {
                    quoted.find('"').map(|i| i + 2)
                } else {
                    rest.find(',')
                };
                if let Some(end) = end {
                    text.replace_range(start..start + key.len() + end, "");
                }
            }
        }
        Frame {
            text: ByteString::from(text),
            project: self.project.clone(),
            seq: None,
        }
    }

    pub fn len(&self) -> usize {
        self.text.len()
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

/// The envelope of every server message, in wire order.
#[derive(Serialize)]
struct Envelope<'a, D: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    project_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    ts: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    direction: Option<Direction>,
    data: &'a D,
}

/// Builds one server message.
pub struct FrameBuilder<'a> {
    kind: &'a str,
    id: Option<&'a str>,
    project: Option<&'a Arc<str>>,
    seq: Option<u64>,
    direction: Option<Direction>,
    ts: Option<&'a str>,
}

impl<'a> FrameBuilder<'a> {
    pub fn new(kind: &'a str) -> Self {
        FrameBuilder {
            kind,
            id: None,
            project: None,
            seq: None,
            direction: None,
            ts: None,
        }
    }

    /// The request id to echo.
    pub fn reply_to(mut self, id: Option<&'a str>) -> Self {
        self.id = id;
        self
    }

    pub fn project(mut self, project: &'a Arc<str>) -> Self {
        self.project = Some(project);
        self
    }

    pub fn project_opt(mut self, project: Option<&'a Arc<str>>) -> Self {
        self.project = project;
        self
    }

    /// Marks the message as stored history: its seq, time and direction.
    pub fn stored(mut self, seq: u64, ts: &'a str, direction: Direction) -> Self {
        self.seq = Some(seq);
        self.ts = Some(ts);
        self.direction = Some(direction);
        self
    }

    pub fn encode<D: Serialize>(self, data: &D) -> Frame {
        let now;
        let ts = match self.ts {
            Some(ts) => ts,
            None => {
                now = crate::time::now_rfc3339();
                &now
            }
        };
        let env = Envelope {
            kind: self.kind,
            id: self.id,
            project_id: self.project.map(|p| &**p),
            seq: self.seq,
            ts,
            direction: self.direction,
            data,
        };
        crate::metrics::METRICS.message_out(self.kind);
        // Serialising our own types into a String cannot fail: every map key is a string.
        let text = serde_json::to_string(&env).expect("server messages always serialise");
        Frame {
            text: ByteString::from(text),
            project: self.project.cloned(),
            seq: self.seq,
        }
    }
}

/// An `error` message.
pub fn error_frame(
    id: Option<&str>,
    project: Option<&Arc<str>>,
    err: &crate::error::ApiError,
) -> Frame {
    FrameBuilder::new("error")
        .reply_to(id)
        .project_opt(project)
        .encode(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_frames_carry_seq_ts_and_direction() {
        let p: Arc<str> = Arc::from("p1");
        let f = FrameBuilder::new("project_state")
            .project(&p)
            .stored(7, "2026-11-21T10:00:00.000Z", Direction::System)
            .encode(&serde_json::json!({"state": "IDLE"}));
        assert_eq!(
            &*f.text,
            r#"{"type":"project_state","project_id":"p1","seq":7,"ts":"2026-11-21T10:00:00.000Z","direction":"system","data":{"state":"IDLE"}}"#
        );
        assert_eq!(f.seq, Some(7));
    }

    #[test]
    fn a_stored_frame_can_go_out_live_only() {
        let p: Arc<str> = Arc::from("p1");
        let data = serde_json::json!({"seq": 1, "direction": "x", "n": ",\"seq\":"});
        let f = FrameBuilder::new("agent_message")
            .project(&p)
            .stored(42, "2026-11-21T10:00:00.000Z", Direction::Agent)
            .encode(&data);
        let live = f.without_seq();
        assert_eq!(live.seq, None);
        let v: serde_json::Value = serde_json::from_str(&live.text).unwrap();
        assert!(
            v.get("seq").is_none() && v.get("direction").is_none(),
            "{v}"
        );
        assert_eq!(v["data"], data);
        assert_eq!(v["ts"], "2026-11-21T10:00:00.000Z");
    }

    #[test]
    fn replies_echo_the_id_and_have_no_seq() {
        let f = FrameBuilder::new("pong")
            .reply_to(Some("c-1"))
            .encode(&serde_json::json!({}));
        let v: serde_json::Value = serde_json::from_str(&f.text).unwrap();
        assert_eq!(v["id"], "c-1");
        assert!(v.get("seq").is_none());
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
    }
}
