//! JSON strings seen through their escapes.
//!
//! In a JSON log line the message is one string literal: quotes inside it
//! are `\"`, line breaks `\n`, and JSON logged inside it (a request body, an
//! upstream error) has every key and value escaped. The flat pass reads the
//! escaped text, so `{\"full_name\":\"Ada Lovelace\"}` hides its key and
//! `\n4111…` glues a card to an `n`. This pass decodes each string literal
//! that holds an escape, scrubs the decoded text (itself JSON or not, to a
//! bounded depth) and writes it back escaped, so the line stays valid JSON.

use std::borrow::Cow;

/// How deep JSON inside JSON strings is followed.
const MAX_DEPTH: usize = 3;

/// Whether an escape (`next`: the letter after the backslash, and the byte
/// after that) can hide something from the flat pass: a quote (keys and
/// quoted values inside), a `\u` escape (any character), or a line break
/// or tab glued to a letter or digit (`\n4111…` has no word boundary).
/// An escaped backslash or slash hides nothing the flat rules don't read
/// as written.
fn escape_hides(next: &[u8]) -> bool {
    match next[0] {
        b'"' | b'u' => true,
        b'n' | b't' | b'r' => next[1].is_ascii_alphanumeric() || next[1] == b'+',
        _ => false,
    }
}

/// The string literals of a JSON text that hold an escape that can hide
/// something (see [`escape_hides`]): byte ranges of their contents
/// (without the quotes). `None` when the text is not a JSON
/// object or array.
fn escaped_strings(text: &str) -> Option<Vec<(usize, usize)>> {
    let trimmed = text.trim_start();
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        return None;
    }
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut j = start;
        let mut hides = false;
        loop {
            match bytes.get(j)? {
                b'\\' => {
                    hides |= escape_hides(bytes.get(j + 1..j + 3)?);
                    j += 2;
                }
                b'"' => break,
                _ => j += 1,
            }
        }
        if hides {
            spans.push((start, j));
        }
        i = j + 1;
    }
    Some(spans)
}

/// `text` with every escaped JSON string literal decoded, passed through
/// `scrub` and encoded again. Borrowed when nothing changed or `text` is
/// not valid JSON.
pub(super) fn scrub_strings<'a>(
    text: &'a str,
    depth: usize,
    scrub: &dyn Fn(&str, usize) -> String,
) -> Cow<'a, str> {
    // No backslash, no escape: most lines leave here after one memchr.
    if depth >= MAX_DEPTH || !text.contains('\\') {
        return Cow::Borrowed(text);
    }
    let Some(spans) = escaped_strings(text) else {
        return Cow::Borrowed(text);
    };
    if spans.is_empty() || serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() {
        return Cow::Borrowed(text);
    }
    let mut out: Option<String> = None;
    let mut copied = 0;
    for (start, end) in spans {
        let literal = &text[start - 1..=end];
        let Ok(decoded) = serde_json::from_str::<String>(literal) else {
            continue;
        };
        let scrubbed = scrub(&decoded, depth + 1);
        if scrubbed == decoded {
            continue;
        }
        let Ok(encoded) = serde_json::to_string(&scrubbed) else {
            continue;
        };
        let buf = out.get_or_insert_with(|| String::with_capacity(text.len()));
        buf.push_str(&text[copied..start - 1]);
        buf.push_str(&encoded);
        copied = end + 1;
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut buf) => {
            buf.push_str(&text[copied..]);
            Cow::Owned(buf)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_literals_with_escapes_are_spans() {
        let text = r#"{"a":"plain","b":"x\"y","c":["\n"]}"#;
        let spans = escaped_strings(text).unwrap();
        let contents: Vec<&str> = spans.iter().map(|&(s, e)| &text[s..e]).collect();
        // `\n` before the closing quote glues nothing: not a span.
        assert_eq!(contents, [r#"x\"y"#]);
        let glued = r#"{"m":"card:\n4111"}"#;
        assert_eq!(escaped_strings(glued).unwrap().len(), 1);
        assert!(escaped_strings("plain text \"x\\\"y\"").is_none());
        assert!(escaped_strings(r#"{"unterminated":"abc\"#).is_none());
    }

    #[test]
    fn decoded_strings_are_rewritten_and_the_json_stays_valid() {
        let text = r#"{"message":"body={\"name\":\"x\"}\nnest","n":1}"#;
        let out = scrub_strings(text, 0, &|s, _| s.replace('x', "[y]"));
        assert_eq!(out, r#"{"message":"body={\"name\":\"[y]\"}\nnest","n":1}"#);
        serde_json::from_str::<serde_json::Value>(&out).unwrap();
        // Not JSON: untouched.
        let not_json = r#"{"message":"a\"x"#;
        assert_eq!(
            scrub_strings(not_json, 0, &|s, _| s.replace('x', "y")),
            not_json
        );
    }
}
