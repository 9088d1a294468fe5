//! The Kafka replay example killed in the middle and started again: the published topic holds each
//! output exactly once, checked with kcat (read_committed) as an independent reader.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

fn brokers() -> Option<String> {
    backfill_testkit::services::service("BACKFILL_TEST_KAFKA_BROKERS", "a Kafka broker")
}

fn replay(b: &str, dir: &std::path::Path, topics: &(String, String), extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kafka-replay"));
    c.args([
        "--brokers",
        b,
        "--source-topic",
        &topics.0,
        "--target-topic",
        &topics.1,
    ])
    .args(["--records", "8000", "--run-id", &format!("bf-{}", topics.0)])
    .arg("--data-dir")
    .arg(dir)
    .args(extra);
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `(partition, key)` of every record of `topic` that read_committed readers see, and the
/// `backfill_run_id` headers they carry.
fn kcat(b: &str, topic: &str, format: &str) -> Vec<String> {
    let out = Command::new("kcat")
        .args(["-C", "-b", b, "-t", topic, "-o", "beginning", "-e", "-q"])
        .args([
            "-X",
            "isolation.level=read_committed",
            "-X",
            "receive.message.max.bytes=2000000000",
        ])
        .args(["-f", format])
        .output()
        .expect("kcat must be installed (scripts/test.sh installs it)");
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("Unknown topic or partition") {
        return Vec::new();
    }
    assert!(out.status.success(), "kcat: {err}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn topics(name: &str) -> (String, String) {
    let s = format!("{name}-{}", std::process::id());
    (format!("orders-{s}"), format!("orders-{s}.backfill"))
}

/// What an uninterrupted replay of the same range publishes: the keys of the source range.
fn expected_keys(b: &str, source: &str) -> BTreeSet<String> {
    // Each partition is replayed from 10% to 90% of its offsets (see the example's manifest).
    let mut by_partition: std::collections::BTreeMap<String, Vec<(i64, String)>> =
        Default::default();
    for line in kcat(b, source, "%p %o %k\n") {
        let mut it = line.splitn(3, ' ');
        let (p, o, k) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
        by_partition
            .entry(p.to_owned())
            .or_default()
            .push((o.parse().unwrap(), k.to_owned()));
    }
    let mut keys = BTreeSet::new();
    for recs in by_partition.values() {
        let hi = recs.len() as i64;
        keys.extend(
            recs.iter()
                .filter(|(o, _)| *o >= hi / 10 && *o < hi - hi / 10)
                .map(|(_, k)| k.clone()),
        );
    }
    keys
}

fn check_published_once(b: &str, t: &(String, String), out: &Output) {
    let lines = kcat(b, &t.1, "%k\n");
    let keys: BTreeSet<String> = lines.iter().cloned().collect();
    assert_eq!(lines.len(), keys.len(), "a key was published twice");
    assert_eq!(keys, expected_keys(b, &t.0));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim_end()
            .ends_with(&format!("published {} records to {}", keys.len(), t.1)),
        "{}",
        text(out)
    );
    // The trail names every staged chunk once, also when the process died between the ledger's
    // record of a chunk and its evidence.
    assert_eq!(evidence_chunks(out), 4, "{}", text(out));
    // Every published record carries the lineage headers.
    for h in kcat(b, &t.1, "%h\n") {
        for name in [
            "backfill_run_id=bf-",
            "transform_version=2.0.0",
            "processing_mode=REPLAY",
            "source_offset=",
        ] {
            assert!(h.contains(name), "headers {h} lack {name}");
        }
    }
}

/// How many `chunk_staged` lines the example's evidence summary prints.
fn evidence_chunks(out: &Output) -> usize {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("chunk_staged"))
        .count()
}

#[test]
fn an_exit_after_three_chunks_resumes_and_publishes_each_record_once() {
    let Some(b) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let t = topics("exit");
    let out = replay(&b, dir.path(), &t, &["--crash-after-chunks", "3"])
        .output()
        .unwrap();
    assert!(
        text(&out).contains("injected crash after 3 chunks"),
        "{}",
        text(&out)
    );
    assert!(
        kcat(&b, &t.1, "%k\n").is_empty(),
        "nothing is published before the run validates"
    );
    let out = replay(&b, dir.path(), &t, &[]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // Two chunks run at once: the one in flight beside the third may have been recorded too.
    assert!(
        text(&out).contains("3 already done") || text(&out).contains("4 already done"),
        "{}",
        text(&out)
    );
    check_published_once(&b, &t, &out);
    // A third invocation publishes nothing again.
    let again = replay(&b, dir.path(), &t, &[]).output().unwrap();
    assert!(again.status.success(), "{}", text(&again));
    check_published_once(&b, &t, &again);
}

#[test]
fn a_kill_9_in_the_middle_of_staging_resumes_and_publishes_each_record_once() {
    let Some(b) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let t = topics("kill");
    let mut child = replay(&b, dir.path(), &t, &[])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    for line in BufReader::new(stderr).lines() {
        // Kill while later chunks are being produced (mid-transaction for some of them).
        if line.unwrap().contains("chunk  2/") {
            child.kill().unwrap();
            break;
        }
    }
    let _ = child.wait();
    let out = replay(&b, dir.path(), &t, &[]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    check_published_once(&b, &t, &out);
}
