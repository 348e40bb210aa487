//! Scrubbing a stream one line at a time (the `scrub` tool, log files):
//! one line out for every line in, and a private key block that spans
//! lines removed whole.

use std::{borrow::Cow, sync::LazyLock};

use regex::Regex;

use super::Scrubber;

static BEGIN_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----").unwrap_or_else(|_| unreachable!())
});
static END_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"-----END [A-Z0-9 ]*PRIVATE KEY-----").unwrap_or_else(|_| unreachable!())
});

/// What a private key's lines become.
const KEY: &str = "[private_key]";

/// Scrubs a text line by line, remembering across lines whether it is
/// inside a private key block.
///
/// Give it each line without its terminator (`\n` or `\r\n`) and write the
/// terminator back after the result: the result never holds a line break,
/// so the output has exactly as many lines as the input. A line with
/// `-----BEGIN … PRIVATE KEY-----` starts a block: it and every line up to
/// and including the `-----END … PRIVATE KEY-----` line become
/// `[private_key]`, so no line of the key's body is left behind.
///
/// ```
/// use std::sync::Arc;
/// use guardrail_core::Pseudonymizer;
/// use pii_trace_layer::scrub::{LineScrubber, Scrubber};
///
/// let scrubber = Scrubber::new(Pseudonymizer::new(b"key"));
/// let mut lines = LineScrubber::new(&scrubber);
/// let input = "deploy key:\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\nuser=alice@example.com";
/// let out: Vec<String> = input.split('\n').map(|l| lines.scrub_line(l).into_owned()).collect();
/// assert_eq!(out.len(), 5);
/// assert_eq!(out[1..4], ["[private_key]", "[private_key]", "[private_key]"]);
/// assert!(!out.join("\n").contains("MIIEvQ"));
/// assert!(!out[4].contains("alice"));
/// ```
#[derive(Debug)]
pub struct LineScrubber<'a> {
    scrubber: &'a Scrubber,
    in_key: bool,
}

impl<'a> LineScrubber<'a> {
    /// Starts outside any key block.
    pub fn new(scrubber: &'a Scrubber) -> Self {
        Self {
            scrubber,
            in_key: false,
        }
    }

    /// The scrubbed `line` (given without its terminator).
    pub fn scrub_line<'t>(&mut self, line: &'t str) -> Cow<'t, str> {
        if self.in_key {
            if let Some(end) = END_KEY.find(line) {
                self.in_key = false;
                return Cow::Owned(format!("{KEY}{}", self.scrubber.scrub(&line[end.end()..])));
            }
            if is_key_body(line) {
                return Cow::Borrowed(KEY);
            }
            // Not key material after all (a truncated key, or prose that
            // mentioned a BEGIN line): back to scrubbing line by line.
            self.in_key = false;
        }
        match BEGIN_KEY.find(line) {
            Some(begin) if END_KEY.find_at(line, begin.end()).is_none() => {
                self.in_key = true;
                let before = self.scrubber.scrub(&line[..begin.start()]);
                Cow::Owned(format!("{before}{KEY}"))
            }
            // No key, or a whole block on one line: the scrubber removes it.
            _ => self.scrubber.scrub(line),
        }
    }
}

/// A line inside a PEM block: base64, or an RFC 1421 header
/// (`Proc-Type: 4,ENCRYPTED`, `DEK-Info: …`).
fn is_key_body(line: &str) -> bool {
    let line = line.trim();
    line.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\\'))
        || line.starts_with("Proc-Type:")
        || line.starts_with("DEK-Info:")
}

#[cfg(test)]
mod tests {
    use super::*;
    use guardrail_core::Pseudonymizer;
    use proptest::prelude::*;

    /// Built once: compiling the detectors per property case would
    /// dominate the run.
    fn scrubber() -> &'static Scrubber {
        static SCRUBBER: LazyLock<Scrubber> =
            LazyLock::new(|| Scrubber::new(Pseudonymizer::new(b"k")));
        &SCRUBBER
    }

    /// Scrubs `input` as the `scrub` tool does: split at `\n`, scrub each
    /// line, join with `\n`.
    fn scrub_text(scrubber: &Scrubber, input: &str) -> String {
        let mut lines = LineScrubber::new(scrubber);
        input
            .split('\n')
            .map(|l| lines.scrub_line(l).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    const BODY: [&str; 3] = [
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7",
        "q2VmZWxsb3dvcmxkc2VjcmV0a2V5bWF0ZXJpYWxoZXJlZm9yeW91",
        "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5d2FsZG8=",
    ];

    #[test]
    fn a_begin_line_alone_keeps_its_line_and_the_body_goes_too() {
        let s = scrubber();
        let input = format!(
            "before\n-----BEGIN RSA PRIVATE KEY-----\n{}\n{}\n-----END RSA PRIVATE KEY-----\nafter",
            BODY[0], BODY[1]
        );
        let out = scrub_text(s, &input);
        assert_eq!(out.lines().count(), input.lines().count(), "{out}");
        assert_eq!(
            out,
            "before\n[private_key]\n[private_key]\n[private_key]\n[private_key]\nafter"
        );
    }

    #[test]
    fn a_key_glued_to_a_variable_is_removed_from_its_start() {
        let s = scrubber();
        let input = format!(
            "TLS_KEY=-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY----- loaded=true",
            BODY[2]
        );
        let out = scrub_text(s, &input);
        assert!(!out.contains(&BODY[2][..20]), "{out}");
        assert!(out.ends_with("[private_key] loaded=true"), "{out}");
        assert_eq!(out.split('\n').count(), 3);
    }

    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("-----BEGIN PRIVATE KEY-----".to_owned()),
            Just("-----BEGIN EC PRIVATE KEY-----".to_owned()),
            Just("-----END PRIVATE KEY-----".to_owned()),
            Just("-----END EC PRIVATE KEY-----".to_owned()),
            Just(BODY[0].to_owned()),
            Just(BODY[1].to_owned()),
            Just("{\"user_id\":\"u-1\",\"msg\":\"a\\nb\"}".to_owned()),
            Just("email=alice@example.com".to_owned()),
            Just("password=\"p\\\"w\"".to_owned()),
            Just("\r".to_owned()),
            Just(" ".to_owned()),
            Just("\n".to_owned()),
            Just("\\n".to_owned()),
            "[ -~]{0,12}",
        ]
    }

    proptest! {
        #[test]
        fn every_input_keeps_its_line_count(parts in proptest::collection::vec(fragment(), 0..40)) {
            let s = scrubber();
            let input: String = parts.concat();
            let out = scrub_text(s, &input);
            prop_assert_eq!(out.matches('\n').count(), input.matches('\n').count());
        }

        #[test]
        fn no_body_line_of_a_multi_line_key_survives(
            before in "[ -~]{0,20}",
            after in "[ -~]{0,20}",
            body in proptest::collection::vec(0usize..3, 1..6),
        ) {
            let s = scrubber();
            let body: Vec<&str> = body.into_iter().map(|i| BODY[i]).collect();
            let input = format!(
                "{before}-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----{after}",
                body.join("\n")
            );
            let out = scrub_text(s, &input);
            for line in &body {
                prop_assert!(!out.contains(&line[..16]), "{}", out);
            }
            prop_assert_eq!(out.matches('\n').count(), input.matches('\n').count());
        }
    }
}
