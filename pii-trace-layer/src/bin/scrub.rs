//! `scrub`: scrub log lines from stdin to stdout, or check them.
//!
//! ```text
//! scrub [--check] [--config FILE] < input > output
//! ```
//!
//! - Without `--check`: every line is written scrubbed (JSON lines stay
//!   valid JSON).
//! - `--check`: nothing is written but a summary of findings per class;
//!   exits 1 when anything was found, 0 when the input is clean. For
//!   scanning logs and fixtures in CI.
//! - `--config FILE`: a TOML file with `disable`, `mask_ips`,
//!   `secret_keys`, `identity_keys` and `[[rules]]` (see `ScrubConfig`).
//! - Pseudonyms use the key in `GUARDRAILS_PSEUDONYM_KEY` if set (stable
//!   across runs), else a random one.
//!
//! Memory stays constant: input is read a line at a time, and a line longer
//! than 1 MiB is processed in 1 MiB pieces. Invalid UTF-8 is replaced
//! (U+FFFD), never a panic. Exit 2 on a usage or config error.

use std::{
    collections::BTreeMap,
    io::{self, BufRead, BufWriter, Write},
    process::ExitCode,
};

use guardrail_core::Pseudonymizer;
use pii_trace_layer::{Class, LineScrubber, ScrubConfig, Scrubber};

const MAX_LINE: usize = 1 << 20;

struct Args {
    check: bool,
    config: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        check: false,
        config: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--check" => args.check = true,
            "--config" => args.config = Some(it.next().ok_or("--config needs a file")?),
            "-h" | "--help" => {
                println!("usage: scrub [--check] [--config FILE] < input > output");
                std::process::exit(0);
            }
            other => {
                return Err(format!(
                    "unknown argument `{other}`; usage: scrub [--check] [--config FILE]"
                ));
            }
        }
    }
    Ok(args)
}

fn scrubber(config: Option<&str>) -> Result<Scrubber, String> {
    let config: ScrubConfig = match config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            toml::from_str(&text).map_err(|e| format!("{path}: {e}"))?
        }
        None => ScrubConfig::default(),
    };
    let pseudonymizer = match std::env::var("GUARDRAILS_PSEUDONYM_KEY") {
        Ok(key) if !key.is_empty() => Pseudonymizer::new(key.as_bytes()),
        _ => Pseudonymizer::random(),
    };
    Scrubber::with_config(pseudonymizer, &config).map_err(|e| e.to_string())
}

/// Reads one line (with its `\n`, if any) or up to `MAX_LINE` bytes of it.
fn read_piece(input: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.clear();
    loop {
        let available = input.fill_buf()?;
        if available.is_empty() {
            return Ok(buf.len());
        }
        let room = MAX_LINE - buf.len();
        let take = available.len().min(room);
        match available[..take].iter().position(|b| *b == b'\n') {
            Some(i) => {
                buf.extend_from_slice(&available[..=i]);
                input.consume(i + 1);
                return Ok(buf.len());
            }
            None => {
                buf.extend_from_slice(&available[..take]);
                input.consume(take);
                if buf.len() >= MAX_LINE {
                    return Ok(buf.len());
                }
            }
        }
    }
}

fn run(args: &Args) -> io::Result<bool> {
    let scrubber = match scrubber(args.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidInput, e)),
    };
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut buf = Vec::with_capacity(8 * 1024);
    let mut counts: BTreeMap<Class, usize> = BTreeMap::new();
    let mut lines = 0usize;
    let mut by_line = LineScrubber::new(&scrubber);
    while read_piece(&mut input, &mut buf)? > 0 {
        lines += 1;
        let text = String::from_utf8_lossy(&buf);
        if args.check {
            for finding in scrubber.findings(&text) {
                *counts.entry(finding.class).or_default() += 1;
            }
        } else {
            // One line out per line in: the terminator is written back as
            // it was, and the scrubbed line never holds a line break.
            let (line, terminator) = match text.strip_suffix('\n') {
                Some(line) => match line.strip_suffix('\r') {
                    Some(line) => (line, "\r\n"),
                    None => (line, "\n"),
                },
                None => (&*text, ""),
            };
            out.write_all(by_line.scrub_line(line).as_bytes())?;
            out.write_all(terminator.as_bytes())?;
        }
    }
    if args.check {
        let total: usize = counts.values().sum();
        if total == 0 {
            writeln!(out, "scrub: {lines} lines, no sensitive data found")?;
        } else {
            let detail: Vec<String> = counts.iter().map(|(c, n)| format!("{c}={n}")).collect();
            writeln!(
                out,
                "scrub: {lines} lines, {total} findings: {}",
                detail.join(" ")
            )?;
        }
        out.flush()?;
        return Ok(total > 0);
    }
    out.flush()?;
    Ok(false)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("scrub: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::from(1),
        Ok(false) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scrub: {e}");
            ExitCode::from(2)
        }
    }
}
