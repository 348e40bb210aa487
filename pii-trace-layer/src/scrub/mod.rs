//! The PII scrubber: one engine, built once, shared by the trace layer, the
//! log writer and the `scrub` tool.
//!
//! One multi-pattern scan finds every candidate (leftmost first); most text
//! has none, and then the input is returned borrowed, untouched. Candidates
//! a pattern alone can't decide are validated (Luhn for cards, mod-97 for
//! IBANs, address parsing for IPs) so lookalikes — order numbers, versions,
//! timestamps, hashes, request ids — survive. Replacements are typed
//! (`[email]`, `[card]`, `[jwt]`, …) and never break JSON: they contain no
//! quote or backslash, and a bare JSON number replaced by a pseudonym is
//! quoted.
//!
//! Values under secret keys (`password`, `token`, `authorization`,
//! `cookie`, …) are removed whatever they look like; values under identity
//! keys (`user_id`, `sub`, `email`, `owner_id`, `full_name`, …) become a
//! keyed pseudonym (`usr_3f9a1c2b7d04e615`), so lines stay correlatable without the
//! raw id. Both work for `key=value`, `key: value` and JSON `"key":"value"`.
//!
//! # Example
//!
//! ```
//! use pii_trace_layer::Scrubber;
//! use guardrail_core::Pseudonymizer;
//!
//! let scrubber = Scrubber::new(Pseudonymizer::new(b"log key"));
//! let line = r#"{"event":"user.signup","email":"jane@example.com","card":"4111 1111 1111 1111","order_id":"4111111111111112"}"#;
//! let clean = scrubber.scrub(line);
//! assert!(!clean.contains("jane") && !clean.contains("4111 1111"));
//! assert!(clean.contains("4111111111111112"), "fails Luhn: an order number, kept");
//! serde_json::from_str::<serde_json::Value>(&clean).unwrap();
//!
//! // Clean text is returned as is, without a copy.
//! assert!(matches!(scrubber.scrub("GET /api/health 200 3ms"), std::borrow::Cow::Borrowed(_)));
//! ```

mod detect;
mod json;
mod lines;

pub use lines::LineScrubber;

use std::{borrow::Cow, fmt};

use guardrail_core::Pseudonymizer;
use regex_automata::{Anchored, Input, meta, util::captures::Captures};

use detect::{Rule, RuleKind};

/// The kinds of sensitive data the scrubber knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Class {
    /// Email addresses (also URL-encoded).
    Email,
    /// Phone numbers.
    Phone,
    /// IPv4 addresses (loopback kept).
    Ipv4,
    /// IPv6 addresses (loopback kept).
    Ipv6,
    /// Payment card numbers (Luhn-valid).
    CreditCard,
    /// US social security numbers.
    Ssn,
    /// IBANs (mod-97-valid).
    Iban,
    /// Tokens, API keys, passwords, private keys, URL credentials.
    Secret,
    /// The user part of home-directory paths.
    HomePath,
    /// Identifiers under identity keys.
    UserId,
    /// Names under name keys.
    Name,
}

impl Class {
    /// A stable lower-case name (`email`, `credit_card`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
            Self::Ipv4 => "ipv4",
            Self::Ipv6 => "ipv6",
            Self::CreditCard => "credit_card",
            Self::Ssn => "ssn",
            Self::Iban => "iban",
            Self::Secret => "secret",
            Self::HomePath => "home_path",
            Self::UserId => "user_id",
            Self::Name => "name",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Adjustments to the built-in detectors: `[trace.scrub]` in the config
/// file, or the `scrub` tool's `--config` file.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ScrubConfig {
    /// Classes not to detect, e.g. `["ipv4", "phone"]`.
    pub disable: Vec<Class>,
    /// Replace IP addresses by their /24 (IPv4) or /48 (IPv6) network
    /// instead of `[ipv4]`/`[ipv6]`.
    pub mask_ips: bool,
    /// More keys whose values are removed (`x-internal-signature`).
    pub secret_keys: Vec<String>,
    /// More keys whose values are pseudonymized (`employee_id`).
    pub identity_keys: Vec<String>,
    /// More patterns, each replaced by its `replacement` (default
    /// `[<name>]`).
    pub rules: Vec<CustomRule>,
}

/// A pattern of your own: `[[rules]] name = "employee_id", pattern =
/// "EMP-[0-9]{6}"`.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CustomRule {
    /// A short name, used in the default replacement.
    pub name: String,
    /// A regular expression (Rust `regex` syntax).
    pub pattern: String,
    /// What replaces a match (default `[<name>]`).
    #[serde(default)]
    pub replacement: Option<String>,
}

/// A scrubber. Build one and share it (`Arc`); scrubbing takes `&self`.
pub struct Scrubber {
    rules: Vec<Rule>,
    scan: meta::Regex,
    /// Per detector: the same pattern with captures, run only on a found
    /// span, anchored at its start.
    detail: Vec<meta::Regex>,
    /// The id fields of a user object (`"id": …`, `login: …`).
    id_field: regex::Regex,
    pseudonymizer: Pseudonymizer,
}

/// The scrubber as core's [`Scrub`](guardrail_core::Scrub), for layers that
/// log text they did not write (the error boundary).
impl guardrail_core::Scrub for Scrubber {
    fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        Scrubber::scrub(self, text)
    }
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrubber")
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

/// One thing found: where, and what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The kind of data.
    pub class: Class,
    /// Byte range in the input.
    pub start: usize,
    /// End of the byte range.
    pub end: usize,
}

impl Scrubber {
    /// The built-in detectors, with identity values pseudonymized under
    /// `pseudonymizer`'s key.
    pub fn new(pseudonymizer: Pseudonymizer) -> Self {
        // The built-in patterns are constants covered by tests: failing to
        // compile them is a bug in this crate, not an input error.
        Self::with_config(pseudonymizer, &ScrubConfig::default())
            .expect("built-in scrubber patterns compile")
    }

    /// The built-ins adjusted by `config`: classes turned off, extra secret
    /// and identity keys, custom patterns, masked instead of replaced IPs.
    /// A pattern that doesn't compile is an error naming it.
    pub fn with_config(
        pseudonymizer: Pseudonymizer,
        config: &ScrubConfig,
    ) -> Result<Self, crate::TraceError> {
        let scrub = |message: String| crate::TraceError::Scrub { message };
        let rules = detect::rules(config).map_err(scrub)?;
        let patterns: Vec<&str> = rules.iter().map(|r| r.pattern.as_str()).collect();
        let scan = meta::Regex::builder()
            .configure(meta::Config::new().hybrid_cache_capacity(16 << 20))
            .build_many(&patterns)
            .map_err(|e| scrub(format!("the scrubber patterns don't compile together: {e}")))?;
        let detail = patterns
            .iter()
            .map(|p| meta::Regex::new(p).map_err(|e| scrub(format!("`{p}`: {e}"))))
            .collect::<Result<_, _>>()?;
        let id_field =
            regex::Regex::new(ID_FIELD).map_err(|e| scrub(format!("the id field pattern: {e}")))?;
        Ok(Self {
            rules,
            scan,
            detail,
            id_field,
            pseudonymizer,
        })
    }

    /// The pseudonymizer identity values are replaced with.
    pub fn pseudonymizer(&self) -> &Pseudonymizer {
        &self.pseudonymizer
    }

    /// `text` without sensitive data; borrowed when nothing was found.
    ///
    /// A JSON line is also scrubbed through its escapes: every string
    /// literal holding an escape (`\"`, `\n`) is decoded, scrubbed (JSON
    /// inside it too, a few levels deep) and encoded again, so the line
    /// stays valid JSON.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.scrub_at(text, 0)
    }

    fn scrub_at<'a>(&self, text: &'a str, depth: usize) -> Cow<'a, str> {
        let flat = self.scrub_flat(text);
        let nested =
            match json::scrub_strings(&flat, depth, &|s, d| self.scrub_at(s, d).into_owned()) {
                Cow::Owned(nested) => Some(nested),
                Cow::Borrowed(_) => None,
            };
        match nested {
            Some(nested) => Cow::Owned(nested),
            None => flat,
        }
    }

    /// One pass of every detector over `text` as written.
    fn scrub_flat<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out: Option<String> = None;
        let mut copied = 0;
        self.visit(text, |_, start, end, replacement| {
            let buf = out.get_or_insert_with(|| String::with_capacity(text.len() + 16));
            buf.push_str(&text[copied..start]);
            buf.push_str(&replacement);
            copied = end;
        });
        match out {
            None => Cow::Borrowed(text),
            Some(mut buf) => {
                buf.push_str(&text[copied..]);
                Cow::Owned(buf)
            }
        }
    }

    /// What [`scrub`](Self::scrub) would replace, without replacing it.
    pub fn findings(&self, text: &str) -> Vec<Finding> {
        let mut found = Vec::new();
        self.visit(text, |class, start, end, _| {
            found.push(Finding { class, start, end })
        });
        found
    }

    /// `object` with the values of its id fields pseudonymized (quoted in
    /// JSON); `None` when it has none to change.
    fn id_fields(&self, object: &str, json: bool) -> Option<String> {
        let mut out = String::with_capacity(object.len() + 16);
        let mut copied = 0;
        for caps in self.id_field.captures_iter(object) {
            let Some(value) = caps.name("value") else {
                continue;
            };
            let raw = value.as_str();
            // `\"…\"`: a quoted value inside a JSON string.
            let escaped = raw.len() >= 4 && raw.starts_with("\\\"") && raw.ends_with("\\\"");
            let inner = if escaped {
                &raw[2..raw.len() - 2]
            } else {
                raw.trim_matches('"')
            };
            if inner.is_empty()
                || already_scrubbed(inner)
                || matches!(inner, "null" | "true" | "false")
            {
                continue;
            }
            let pseudonym = self.pseudonymizer.pseudonym("usr", inner);
            out.push_str(&object[copied..value.start()]);
            if escaped {
                out.push_str("\\\"");
                out.push_str(&pseudonym);
                out.push_str("\\\"");
            } else if json || raw.starts_with('"') {
                out.push('"');
                out.push_str(&pseudonym);
                out.push('"');
            } else {
                out.push_str(&pseudonym);
            }
            copied = value.end();
        }
        (copied > 0).then(|| {
            out.push_str(&object[copied..]);
            out
        })
    }

    /// Calls `f` with each sensitive span, left to right, and its replacement.
    fn visit(&self, original: &str, mut f: impl FnMut(Class, usize, usize, Cow<'static, str>)) {
        // Matching runs on a view where JSON escapes `\n`, `\t`, `\r` are
        // blanks and line breaks of the same length: a value after a
        // newline in a JSON message then starts at a word boundary, a
        // header value ends at its line's end, and no match can swallow an
        // escape letter. Spans map one to one onto the original.
        let view = neutralize_escapes(original);
        let text: &str = &view;
        let mut at = 0;
        while at < text.len() {
            let Some(m) = self.scan.search(&Input::new(text).range(at..)) else {
                return;
            };
            let index = m.pattern().as_usize();
            let detector = &self.rules[index];
            match self.resolve(detector, index, text, m.start(), m.end()) {
                Outcome::Found(start, end, replacement) => {
                    f(detector.class, start, end, replacement);
                    at = m.end().max(at + 1);
                }
                Outcome::Lookalike => at = m.end().max(next_char(text, m.start())),
                Outcome::NotHere => at = next_char(text, m.start()),
            }
        }
    }

    /// The groups of detector `index`'s match at `start..end` (the span
    /// the scan found for it). The search is anchored and bounded by that
    /// span — with look-arounds still seeing the text around it — so the
    /// match is the one the scan found, and its cost the span's, not the
    /// rest of the line's.
    fn captures<'t>(
        &self,
        index: usize,
        text: &'t str,
        start: usize,
        end: usize,
    ) -> Option<Groups<'t>> {
        let regex = &self.detail[index];
        let mut caps = regex.create_captures();
        let input = Input::new(text).range(start..end).anchored(Anchored::Yes);
        regex.search_captures(&input, &mut caps);
        caps.is_match().then_some(Groups { caps, text })
    }

    /// What a candidate match is.
    fn resolve(&self, d: &Rule, index: usize, text: &str, start: usize, end: usize) -> Outcome {
        match &d.kind {
            RuleKind::Group(label) | RuleKind::Pseudonym(label) => {
                self.resolve_value(d, label, index, text, start, end)
            }
            RuleKind::Object => self
                .resolve_object(index, text, start, end)
                .map_or(Outcome::NotHere, Outcome::found),
            _ => self
                .resolve_whole(d, index, text, start, end)
                .map_or(Outcome::Lookalike, Outcome::found),
        }
    }

    /// What a rule replacing its whole match (or rewriting a cookie header)
    /// replaces; `None` for a lookalike.
    fn resolve_whole(
        &self,
        d: &Rule,
        index: usize,
        text: &str,
        start: usize,
        end: usize,
    ) -> Option<(usize, usize, Cow<'static, str>)> {
        let found = &text[start..end];
        match &d.kind {
            RuleKind::Replace(label) => {
                if !(d.validate)(found) {
                    return None;
                }
                let (start, end) = detect::in_context(d.class, text, start, end)?;
                Some((start, end, Cow::Owned(label.clone())))
            }
            RuleKind::MaskIp => {
                let (start, end) = detect::in_context(d.class, text, start, end)?;
                let found = &text[start..end];
                let ip: std::net::IpAddr = found.parse().ok().filter(|_| (d.validate)(found))?;
                let masked = guardrail_core::ClientIp::new(ip).masked().to_string();
                Some((start, end, Cow::Owned(masked)))
            }
            RuleKind::Cookies => {
                let caps = self.captures(index, text, start, end)?;
                let value = caps.name("value")?;
                let cookies = detect::scrub_cookies(value.as_str())?;
                Some((value.start(), value.end(), Cow::Owned(cookies)))
            }
            _ => None,
        }
    }

    /// A user object, scrubbed, with its id fields pseudonymized; `None`
    /// when nothing in it changes.
    fn resolve_object(
        &self,
        index: usize,
        text: &str,
        start: usize,
        end: usize,
    ) -> Option<(usize, usize, Cow<'static, str>)> {
        let caps = self.captures(index, text, start, end)?;
        let value = caps.name("value")?;
        let object = self.scrub_flat(value.as_str());
        let json = caps.name("jsonkey").is_some();
        let ids = self.id_fields(&object, json);
        if matches!((&object, &ids), (Cow::Borrowed(_), None)) {
            return None;
        }
        let replacement = ids.unwrap_or_else(|| object.into_owned());
        Some((value.start(), value.end(), Cow::Owned(replacement)))
    }

    /// A key rule: only the `value` group is replaced; the rest (a key, a
    /// scheme, quotes) stays.
    fn resolve_value(
        &self,
        d: &Rule,
        label: &str,
        index: usize,
        text: &str,
        start: usize,
        end: usize,
    ) -> Outcome {
        let Some(caps) = self.captures(index, text, start, end) else {
            return Outcome::NotHere;
        };
        let Some(value) = caps.name("value") else {
            return Outcome::NotHere;
        };
        if !(d.validate)(value.as_str()) || !is_key(text, start, value.start()) {
            return Outcome::NotHere;
        }
        let raw = value.as_str();
        // A bare JSON scalar (number, `null`, …) becomes a quoted
        // string, so the document stays valid JSON.
        let escaped = raw.len() >= 4 && raw.starts_with("\\\"") && raw.ends_with("\\\"");
        let bare_json = caps.name("jsonkey").is_some() && !raw.starts_with('"') && !escaped;
        if bare_json && matches!(raw, "null" | "true" | "false") {
            return Outcome::NotHere;
        }
        // Already scrubbed (a second pass, e.g. the log writer after
        // the trace layer): leave it, so pseudonyms stay stable, and
        // skip the key whole, so it isn't read again from its
        // second letter.
        let inner = raw.trim_matches(|c| c == '"' || c == '\\' || c == '\'');
        if already_scrubbed(inner) {
            return Outcome::Lookalike;
        }
        let replacement = match &d.kind {
            RuleKind::Pseudonym(prefix) => self.pseudonymizer.pseudonym(prefix, inner),
            _ => label.to_owned(),
        };
        let replacement = if bare_json {
            format!("\"{replacement}\"")
        } else {
            replacement
        };
        let (vs, ve) = (value.start(), value.end());
        // Keep the quotes (single, double or escaped) around a quoted value.
        let (vs, ve) = if escaped {
            (vs + 2, ve - 2)
        } else if raw.len() >= 2
            && ((raw.starts_with('"') && raw.ends_with('"'))
                || (raw.starts_with('\'') && raw.ends_with('\'')))
        {
            (vs + 1, ve - 1)
        } else {
            (vs, ve)
        };
        Outcome::Found(vs, ve, Cow::Owned(replacement))
    }
}

/// The capture groups of one detector's match.
struct Groups<'t> {
    caps: Captures,
    text: &'t str,
}

impl<'t> Groups<'t> {
    /// The group called `name`, when it took part in the match.
    fn name(&self, name: &str) -> Option<Group<'t>> {
        let span = self.caps.get_group_by_name(name)?;
        Some(Group {
            text: self.text,
            start: span.start,
            end: span.end,
        })
    }
}

/// One capture group's span in the text.
#[derive(Clone, Copy)]
struct Group<'t> {
    text: &'t str,
    start: usize,
    end: usize,
}

impl<'t> Group<'t> {
    fn as_str(&self) -> &'t str {
        &self.text[self.start..self.end]
    }

    fn start(&self) -> usize {
        self.start
    }

    fn end(&self) -> usize {
        self.end
    }
}

/// What a candidate match turned out to be.
enum Outcome {
    /// Sensitive: this span becomes this replacement.
    Found(usize, usize, Cow<'static, str>),
    /// A lookalike (a timestamp shaped like IPv6, an order number failing
    /// Luhn, a cookie header without session cookies, a value already
    /// scrubbed): skipped whole.
    Lookalike,
    /// A key rule that didn't apply here: retried one character on, so a
    /// value inside is found.
    NotHere,
}

impl Outcome {
    fn found((start, end, replacement): (usize, usize, Cow<'static, str>)) -> Self {
        Self::Found(start, end, replacement)
    }
}

/// An id field inside a user object: JSON, `key: value` or `key=value`.
const ID_FIELD: &str = r#"(?P<key>(?:^|[{,\t\n\r ])"?(?i:id|login|username|uid|user_?id|value|name|display_?name|full_?name)"?[\t\n\r ]*[:=][\t\n\r ]*)(?P<value>"(?:[^"\\]|\\.)*"|\\"(?:[^"\\]|\\[^"])*\\"|[^,}\t\n\r ]+)"#;

/// `text` with each `\n`, `\r` escape pair turned into that line break
/// and a space, and `\t` into two spaces (an escaped backslash stays as it
/// is); borrowed when it has none.
fn neutralize_escapes(text: &str) -> Cow<'_, str> {
    if !text.contains('\\') {
        return Cow::Borrowed(text);
    }
    let mut bytes = text.as_bytes().to_vec();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'\\' && !in_windows_path(&bytes, i) {
            match bytes[i + 1] {
                // A line break stays one, so no value runs past it.
                b'n' => bytes[i..i + 2].copy_from_slice(b"\n "),
                b'r' => bytes[i..i + 2].copy_from_slice(b"\r "),
                b't' => bytes[i..i + 2].copy_from_slice(b"  "),
                _ => {}
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    // Only ASCII bytes were replaced by ASCII bytes: still UTF-8.
    String::from_utf8(bytes).map_or(Cow::Borrowed(text), Cow::Owned)
}

/// Whether the text from `start` to `value` is a key of the value, not a
/// Rust path (`checkout::session: loaded`), a key that only ends like a
/// secret (`PublicKeyToken=`, `page_token=`), or a key over a PEM block
/// (the block is removed whole by its own detector).
fn is_key(text: &str, start: usize, value: usize) -> bool {
    const NOT_SECRET: [&[u8]; 4] = [
        b"publickeytoken",
        b"page_token",
        b"pagetoken",
        b"continuation_token",
    ];
    let key = &text.as_bytes()[start..value];
    let key = key.strip_prefix(b"\"").unwrap_or(key);
    !text[..start].ends_with("::")
        && !NOT_SECRET.iter().any(|k| {
            key.get(..k.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(k))
        })
        && !text[value..]
            .trim_start_matches(['"', '\''])
            .starts_with("-----BEGIN")
}

/// Whether the backslash at `at` separates the segments of a Windows path
/// (`c:\users\teodora`, `\\nas\home$\nina`) rather than starting an
/// escape: the segment before it follows a drive or another backslash.
fn in_windows_path(bytes: &[u8], at: usize) -> bool {
    let segment = bytes[..at]
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'$' | b'-'))
        .count();
    let before = at - segment;
    match before.checked_sub(1).map(|j| bytes[j]) {
        Some(b'\\') => true,
        // A drive letter: one letter, then `:` (`recipients:\n` is no drive).
        Some(b':') => {
            segment == 0
                && before >= 2
                && bytes[before - 2].is_ascii_alphabetic()
                && (before < 3 || !bytes[before - 3].is_ascii_alphanumeric())
        }
        _ => false,
    }
}

/// A pseudonym (`usr_3f9a1c2b7d04e615`) or a label (`[redacted]`) we wrote.
fn already_scrubbed(value: &str) -> bool {
    let label = value.starts_with('[') && value.ends_with(']');
    let pseudonym = value.split_once('_').is_some_and(|(prefix, hex)| {
        matches!(prefix, "usr" | "name")
            && hex.len() == guardrail_core::Pseudonymizer::HEX_DIGITS
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
    });
    label || pseudonym
}

fn next_char(text: &str, at: usize) -> usize {
    text[at..]
        .chars()
        .next()
        .map_or(text.len(), |c| at + c.len_utf8())
}

#[cfg(test)]
mod tests;
