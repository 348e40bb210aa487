//! Scrubber throughput on PII-free and PII-dense log text.
//!
//! `cargo bench -p floyo-pii-trace-layer --bench scrub`
//!
//! Both inputs are built from `../shared/data/pii/corpus.jsonl`: the
//! negative lines (no PII, full of lookalikes) and the lines with PII,
//! each repeated to about 1 MiB and scrubbed line by line, as the log
//! writer does.

#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use guardrail_core::Pseudonymizer;
use pii_trace_layer::Scrubber;

fn corpus(pii: bool) -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/pii/corpus.jsonl"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let lines: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|row| {
            row["classes"]
                .as_array()
                .is_some_and(|c| c.is_empty() != pii)
        })
        .map(|row| row["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    let mut out = Vec::new();
    let mut size = 0;
    while size < 1 << 20 {
        for l in &lines {
            size += l.len() + 1;
            out.push(l.clone());
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let scrubber = Scrubber::new(Pseudonymizer::new(b"bench"));
    let mut group = c.benchmark_group("scrub");
    for (name, lines) in [("pii_free", corpus(false)), ("pii_dense", corpus(true))] {
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
