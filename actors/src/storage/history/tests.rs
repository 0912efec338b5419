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

/// A budget no test page reaches.
const ROOMY: Budget = Budget {
    scan: ScanBudget {
        records: usize::MAX,
        bytes: u64::MAX,
    },
    reply_bytes: usize::MAX,
};

fn query(log: &HistoryLog, q: &HistoryQuery) -> Page {
    log.view().query(q, ROOMY).unwrap()
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
    let page = query(&log, &q(Cursor::SinceSeq(95), 10));
    assert_eq!(seqs(&page), (96..=105).collect::<Vec<_>>());
    assert!(page.has_more);
    assert_eq!(page.next_seq, 105);
    let page = query(&log, &q(Cursor::Latest, 100));
    assert_eq!(seqs(&page), (951..=1050).collect::<Vec<_>>());
    let page = query(&log, &q(Cursor::BeforeSeq(201), 3));
    assert_eq!(seqs(&page), vec![198, 199, 200]);
    let page = query(&log, &q(Cursor::SinceSeq(1045), 10));
    assert_eq!(seqs(&page), (1046..=1050).collect::<Vec<_>>());
    assert!(!page.has_more);
    let t = crate::time::parse_ts("2026-01-01T00:00:00.499Z").unwrap();
    let page = query(&log, &q(Cursor::Since(t), 2));
    assert_eq!(seqs(&page), vec![500, 501]);
}

#[test]
fn filters_by_direction_across_blocks() {
    let d = tempfile::tempdir().unwrap();
    let mut log = HistoryLog::open(d.path().to_path_buf(), cfg(50)).unwrap();
    fill(&mut log, 400);
    let mut client = q(Cursor::Latest, 5);
    client.direction = Some(Direction::Client);
    let page = query(&log, &client);
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
    let page = query(&log, &q(Cursor::SinceSeq(248), 10));
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
    let r = log.view().replay_after(5, 1000, usize::MAX).unwrap();
    assert!(!r.recovered);
    assert_eq!(r.records.first().unwrap().0, 21);
    let r = log.view().replay_after(30, 1000, usize::MAX).unwrap();
    assert!(r.recovered);
    assert_eq!(
        r.records.iter().map(|r| r.0).collect::<Vec<_>>(),
        (31..=45).collect::<Vec<_>>()
    );
    let r = log.view().replay_after(30, 5, usize::MAX).unwrap();
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
    let page = query(&log, &q(Cursor::SinceSeq(95), 10));
    assert_eq!(seqs(&page), (96..=105).collect::<Vec<_>>());
    drop(log);
    let log = HistoryLog::open(d.path().to_path_buf(), cfg(100)).unwrap();
    assert_eq!(log.last_seq(), 280);
}

/// Appends `n` records of about `size` bytes, every `every`th one from the client, the rest
/// from the agent.
fn fill_sized(log: &mut HistoryLog, n: u64, size: usize, every: u64) {
    for _ in 0..n {
        let stamp = log.stamp(Utc::now());
        let dir = if stamp.seq.is_multiple_of(every) {
            "client"
        } else {
            "agent"
        };
        let line = format!(
            r#"{{"type":"t","project_id":"p","seq":{},"ts":"{}","direction":"{dir}","data":"{}"}}"#,
            stamp.seq,
            stamp.ts,
            "x".repeat(size)
        );
        log.append(&stamp, line.as_bytes()).unwrap();
    }
}

fn budget(records: usize, reply_bytes: usize) -> Budget {
    Budget {
        scan: ScanBudget {
            records,
            bytes: u64::MAX,
        },
        reply_bytes,
    }
}

#[test]
fn a_page_of_large_records_stops_at_the_byte_budget_and_pages_on() {
    let d = tempfile::tempdir().unwrap();
    let mut log = HistoryLog::open(d.path().to_path_buf(), cfg(100)).unwrap();
    fill_sized(&mut log, 250, 1000, 1);
    let view = log.view();
    let page = view
        .query(&q(Cursor::SinceSeq(0), 1000), budget(usize::MAX, 3500))
        .unwrap();
    assert_eq!(seqs(&page), vec![1, 2, 3]);
    assert!(page.has_more);
    assert_eq!(page.next_seq, 3);
    // Forward with next_seq, and backward with before_seq: each record exactly once.
    let mut got = Vec::new();
    let mut after = 0;
    loop {
        let page = view
            .query(&q(Cursor::SinceSeq(after), 1000), budget(usize::MAX, 3500))
            .unwrap();
        got.extend(seqs(&page));
        after = page.next_seq;
        if !page.has_more {
            break;
        }
    }
    assert_eq!(got, (1..=250).collect::<Vec<_>>());
    let mut got = Vec::new();
    let mut cursor = Cursor::Latest;
    loop {
        let page = view
            .query(&q(cursor, 1000), budget(usize::MAX, 3500))
            .unwrap();
        assert!(page.records.len() <= 3);
        got.splice(0..0, seqs(&page));
        match page.before_seq {
            Some(n) => cursor = Cursor::BeforeSeq(n),
            None => break,
        }
    }
    assert_eq!(got, (1..=250).collect::<Vec<_>>());
}

#[test]
fn a_record_larger_than_the_byte_budget_comes_alone() {
    let d = tempfile::tempdir().unwrap();
    let mut log = HistoryLog::open(d.path().to_path_buf(), cfg(100)).unwrap();
    fill_sized(&mut log, 3, 5000, 1);
    let page = log
        .view()
        .query(&q(Cursor::SinceSeq(0), 10), budget(usize::MAX, 1000))
        .unwrap();
    assert_eq!(seqs(&page), vec![1]);
    assert!(page.has_more);
}

#[test]
fn a_filter_over_other_records_stops_at_the_scan_budget_and_continues() {
    let d = tempfile::tempdir().unwrap();
    let mut log = HistoryLog::open(d.path().to_path_buf(), cfg(1000)).unwrap();
    // One client record in 500.
    fill_sized(&mut log, 5000, 10, 500);
    let view = log.view();
    let filtered = |cursor| {
        let mut query = q(cursor, 1000);
        query.direction = Some(Direction::Client);
        view.query(&query, budget(200, usize::MAX)).unwrap()
    };
    // Forward: most pages are cut before any match, empty, and move on.
    let page = filtered(Cursor::SinceSeq(0));
    assert!(page.records.is_empty());
    assert!(page.has_more);
    assert!(
        page.next_seq >= 200 && page.next_seq < 500,
        "{}",
        page.next_seq
    );
    let (mut got, mut after, mut pages) = (Vec::new(), 0, 0);
    loop {
        let page = filtered(Cursor::SinceSeq(after));
        pages += 1;
        got.extend(seqs(&page));
        assert!(page.next_seq > after || !page.has_more);
        after = page.next_seq;
        if !page.has_more {
            break;
        }
    }
    assert_eq!(got, (1..=10).map(|i| i * 500).collect::<Vec<_>>());
    assert!(pages >= 5000 / (200 + 64), "{pages} pages");
    // Backward: an empty page says where to go on.
    let page = filtered(Cursor::BeforeSeq(4999));
    assert!(page.records.is_empty());
    assert!(page.has_more);
    let before = page.before_seq.unwrap();
    assert!(before < 4999 && before > 4500, "{before}");
    let mut got = Vec::new();
    let mut cursor = Cursor::Latest;
    loop {
        let page = filtered(cursor);
        got.splice(0..0, seqs(&page));
        match page.before_seq {
            Some(n) => cursor = Cursor::BeforeSeq(n),
            None => break,
        }
    }
    assert_eq!(got, (1..=10).map(|i| i * 500).collect::<Vec<_>>());
}

#[test]
fn a_page_reads_no_more_than_its_byte_scan_budget() {
    let d = tempfile::tempdir().unwrap();
    let mut log = HistoryLog::open(d.path().to_path_buf(), cfg(1000)).unwrap();
    fill_sized(&mut log, 640, 1000, 1000);
    let mut query = q(Cursor::SinceSeq(0), 10);
    query.direction = Some(Direction::Client);
    let b = Budget {
        scan: ScanBudget {
            records: usize::MAX,
            bytes: 100_000,
        },
        reply_bytes: usize::MAX,
    };
    let page = log.view().query(&query, b).unwrap();
    assert!(page.records.is_empty());
    assert!(page.has_more);
    // Two blocks of 64 records of about 1 kB: the read stops at the first block past 100 kB.
    assert_eq!(page.next_seq, 128);
}

#[test]
fn a_replay_reads_back_from_the_end_within_its_bytes() {
    let d = tempfile::tempdir().unwrap();
    let mut log = HistoryLog::open(d.path().to_path_buf(), cfg(100)).unwrap();
    fill_sized(&mut log, 300, 1000, 1);
    let r = log.view().replay_after(0, 10_000, 11_500).unwrap();
    assert!(!r.recovered);
    assert_eq!(
        r.records.iter().map(|r| r.0).collect::<Vec<_>>(),
        (291..=300).collect::<Vec<_>>()
    );
    let r = log.view().replay_after(290, 10_000, 11_500).unwrap();
    assert!(r.recovered);
    assert_eq!(r.records.len(), 10);
}

#[test]
fn a_view_keeps_what_it_saw() {
    let d = tempfile::tempdir().unwrap();
    let mut c = cfg(10);
    c.retention_segments = Some(2);
    let mut log = HistoryLog::open(d.path().to_path_buf(), c).unwrap();
    fill(&mut log, 15);
    let view = log.view();
    // Records appended after the view are not in it; a segment retention removed reads as gone.
    fill(&mut log, 6);
    assert_eq!(log.first_seq(), Some(11));
    let page = view.query(&q(Cursor::SinceSeq(0), 100), ROOMY).unwrap();
    assert_eq!(seqs(&page), (11..=15).collect::<Vec<_>>());
    assert_eq!(page.next_seq, 15);
    assert!(!page.has_more);
}

#[test]
fn a_look_back_stops_at_its_budget() {
    let d = tempfile::tempdir().unwrap();
    let mut log = HistoryLog::open(d.path().to_path_buf(), cfg(1000)).unwrap();
    fill_sized(&mut log, 3000, 10, 1000);
    let view = log.view();
    let mut seen = 0usize;
    let budget = ScanBudget {
        records: 500,
        bytes: u64::MAX,
    };
    let ended = view
        .look_back(budget, |_, _| {
            seen += 1;
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(ended, super::view::Ended::Cut);
    assert_eq!(seen, 500);
    // Within its budget it reads to the start, newest first, and stops when asked.
    let mut seqs = Vec::new();
    let ended = view
        .look_back(ROOMY.scan, |_, line| {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            seqs.push(v["seq"].as_u64().unwrap());
            if seqs.len() == 2500 {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(ended, super::view::Ended::Stopped);
    assert_eq!(seqs, (501..=3000).rev().collect::<Vec<_>>());
}
