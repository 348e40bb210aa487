//! Scrubber throughput on PII-free and PII-dense log text.
//!
//! `cargo bench -p floyo-pii-trace-layer --bench scrub`
//!
//! Two kinds of input, each scrubbed line by line (as the log writer
//! does), repeated to about 1 MiB:
//!
//! - `realistic_*`: `benches/data/realistic_{clean,dense}.log`, 600 lines
//!   each from about 60 templates in a production mix of formats (JSON,
//!   logfmt, access logs, stack traces, SQL, header dumps), written apart
//!   from the detectors. `clean` has no PII; every `dense` line has one to
//!   three values. These are the figures the budget applies to.
//! - `corpus_*`: the visible corpus `../shared/data/pii/corpus.jsonl`, its
//!   negative lines (lookalikes) and its lines with PII, the text the
//!   detectors were tuned on.

#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use guardrail_core::Pseudonymizer;
use pii_trace_layer::Scrubber;

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Log lines of a realistic file. Multi-line records (stack traces) are
/// scrubbed one line at a time, as a line-based writer would.
fn realistic(name: &str) -> Vec<String> {
    let path = format!("{}/benches/data/{name}.log", env!("CARGO_MANIFEST_DIR"));
    read(&path).lines().map(str::to_owned).collect()
}

fn corpus(pii: bool) -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/pii/corpus.jsonl"
    );
    read(path)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|row| {
            row["classes"]
                .as_array()
                .is_some_and(|c| c.is_empty() != pii)
        })
        .map(|row| row["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// `lines` repeated to about 1 MiB.
fn to_one_mib(lines: Vec<String>) -> Vec<String> {
    assert!(!lines.is_empty());
    lines
        .iter()
        .cycle()
        .scan(0, |size, l| {
            *size += l.len() + 1;
            (*size <= 1 << 20).then(|| l.clone())
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let scrubber = Scrubber::new(Pseudonymizer::new(b"bench"));
    let mut group = c.benchmark_group("scrub");
    for (name, lines) in [
        ("realistic_clean", realistic("realistic_clean")),
        ("realistic_dense", realistic("realistic_dense")),
        ("corpus_pii_free", corpus(false)),
        ("corpus_pii_dense", corpus(true)),
    ] {
        let lines = to_one_mib(lines);
        let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(name, |b| {
            b.iter(|| lines.iter().map(|l| scrubber.scrub(l).len()).sum::<usize>())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
