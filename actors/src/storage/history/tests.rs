use super::*;
use crate::protocol::request::{Cursor, HistoryQuery};
use crate::protocol::Direction;

fn cfg(records: u64) -> HistoryConfig {
    HistoryConfig {
        segment_records: records,
        segment_bytes: 100 << 20,
        retention_bytes: None,
        retention_segments: None,
        durability: Durability::Os,
    }
}

fn record(seq: u64, ts: &str, dir: &str) -> String {
    format!(
        r#"{{"type":"t","project_id":"p","seq":{seq},"ts":"{ts}","direction":"{dir}","data":{{"n":{seq}}}}}"#
    )
}

fn fill(log: &mut HistoryLog, n: u64) {
    for i in 0..n {
        let stamp = log.stamp(Utc::now());
        let dir = if i % 3 == 0 { "client" } else { "agent" };
        let ts = format!(
            "2026-01-01T00:00:{:02}.{:03}Z",
            (stamp.seq / 1000) % 60,
            stamp.seq % 1000
        );
        let stamp = Stamp { seq: stamp.seq, ts };
        log.append(&stamp, record(stamp.seq, &stamp.ts, dir).as_bytes())
            .unwrap();
    }
}

fn seqs(page: &Page) -> Vec<u64> {
    page.records
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(r.get()).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

fn q(cursor: Cursor, limit: usize) -> HistoryQuery {
    HistoryQuery {
        cursor,
        limit,
        direction: None,
    }
}

#[test]
fn rotates_and_queries_across_segments() {
    let d = tempfile::tempdir().unwrap();
    let mut log = HistoryLog::open(d.path().to_path_buf(), cfg(100)).unwrap();
    fill(&mut log, 1050);
    assert_eq!(log.segment_count(), 11);
    assert_eq!(log.last_seq(), 1050);
    let page = log.query(&q(Cursor::SinceSeq(95), 10)).unwrap();
    assert_eq!(seqs(&page), (96..=105).collect::<Vec<_>>());
    assert!(page.has_more);
    assert_eq!(page.next_seq, 105);
    let page = log.query(&q(Cursor::Latest, 100)).unwrap();
    assert_eq!(seqs(&page), (951..=1050).collect::<Vec<_>>());
    let page = log.query(&q(Cursor::BeforeSeq(201), 3)).unwrap();
    assert_eq!(seqs(&page), vec![198, 199, 200]);
    let page = log.query(&q(Cursor::SinceSeq(1045), 10)).unwrap();
    assert_eq!(seqs(&page), (1046..=1050).collect::<Vec<_>>());
    assert!(!page.has_more);
    let t = crate::time::parse_ts("2026-01-01T00:00:00.499Z").unwrap();
    let page = log.query(&q(Cursor::Since(t), 2)).unwrap();
    assert_eq!(seqs(&page), vec![500, 501]);
}

#[test]
fn filters_by_direction_across_blocks() {
    let d = tempfile::tempdir().unwrap();
    let mut log = HistoryLog::open(d.path().to_path_buf(), cfg(50)).unwrap();
    fill(&mut log, 400);
    let mut query = q(Cursor::Latest, 5);
    query.direction = Some(Direction::Client);
    let page = log.query(&query).unwrap();
    assert_eq!(seqs(&page), vec![388, 391, 394, 397, 400]);
    assert!(page.has_more);
}

#[test]
fn reopens_truncates_a_torn_line_and_continues_the_seq() {
    let d = tempfile::tempdir().unwrap();
    {
        let mut log = HistoryLog::open(d.path().to_path_buf(), cfg(100)).unwrap();
        fill(&mut log, 250);
    }
    let last = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .max()
        .unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    f.write_all(br#"{"type":"t","seq":251,"ts":"2026"#).unwrap();
    drop(f);
    let mut log = HistoryLog::open(d.path().to_path_buf(), cfg(100)).unwrap();
    assert_eq!(log.last_seq(), 250);
    fill(&mut log, 1);
    assert_eq!(log.last_seq(), 251);
    let page = log.query(&q(Cursor::SinceSeq(248), 10)).unwrap();
    assert_eq!(seqs(&page), vec![249, 250, 251]);
    // Sealed segments came back from their index files.
    assert!(d.path().join(format!("{:020}.idx", 1)).exists());
}

#[test]
fn retention_drops_oldest_segments_and_replay_reports_it() {
    let d = tempfile::tempdir().unwrap();
    let mut c = cfg(10);
    c.retention_segments = Some(3);
    let mut log = HistoryLog::open(d.path().to_path_buf(), c).unwrap();
    fill(&mut log, 45);
    assert_eq!(log.segment_count(), 3);
    assert_eq!(log.first_seq(), Some(21));
    let r = log.replay_after(5, 1000).unwrap();
    assert!(!r.recovered);
    assert_eq!(r.records.first().unwrap().0, 21);
    let r = log.replay_after(30, 1000).unwrap();
    assert!(r.recovered);
    assert_eq!(
        r.records.iter().map(|r| r.0).collect::<Vec<_>>(),
        (31..=45).collect::<Vec<_>>()
    );
    let r = log.replay_after(30, 5).unwrap();
    assert!(!r.recovered);
    assert_eq!(
        r.records.iter().map(|r| r.0).collect::<Vec<_>>(),
        (41..=45).collect::<Vec<_>>()
    );
}

#[test]
fn a_batch_spans_rotations_and_keeps_seqs_contiguous() {
    let d = tempfile::tempdir().unwrap();
    let mut log = HistoryLog::open(d.path().to_path_buf(), cfg(100)).unwrap();
    fill(&mut log, 30);
    let now = Utc::now();
    let stamps: Vec<Stamp> = (0..250).map(|i| log.stamp_ahead(now, i)).collect();
    let lines: Vec<String> = stamps
        .iter()
        .map(|s| record(s.seq, &s.ts, "agent"))
        .collect();
    let batch: Vec<(&Stamp, &[u8])> = stamps
        .iter()
        .zip(&lines)
        .map(|(s, l)| (s, l.as_bytes()))
        .collect();
    let (stored, err) = log.append_batch(&batch);
    assert!(err.is_none());
    assert_eq!(stored, 250);
    assert_eq!(log.last_seq(), 280);
    assert_eq!(log.segment_count(), 3);
    let page = log.query(&q(Cursor::SinceSeq(95), 10)).unwrap();
    assert_eq!(seqs(&page), (96..=105).collect::<Vec<_>>());
    drop(log);
    let log = HistoryLog::open(d.path().to_path_buf(), cfg(100)).unwrap();
    assert_eq!(log.last_seq(), 280);
}
