//! The built-in detectors, in priority order (at one position, the first
//! listed wins; an earlier position always wins).

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::Class;

/// How a detector's match is replaced.
#[derive(Clone, Copy, Debug)]
pub(super) enum Kind {
    /// The whole match becomes the label.
    Replace(&'static str),
    /// The `value` group becomes the label; the rest stays.
    Group(&'static str),
    /// The `value` group becomes a keyed pseudonym with this prefix.
    Pseudonym(&'static str),
}

#[derive(Debug)]
pub(super) struct Detector {
    pub(super) class: Class,
    pub(super) pattern: &'static str,
    pub(super) kind: Kind,
    /// Whether a candidate really is sensitive (the match, or the `value`
    /// group for group kinds).
    pub(super) validate: fn(&str) -> bool,
}

fn any(_: &str) -> bool {
    true
}

/// Keys whose values are secret whatever they look like. A key counts when
/// it *ends* with one of these words (`slack_token`, `STRIPE_SECRET_KEY`).
macro_rules! secret_keys {
    () => {
        r"(?i-u:[A-Za-z0-9_.-]*?(?:password|passwd|pwd|passphrase|secret|secret[_-]?key|token|api[_-]?key|apikey|private[_-]?key|access[_-]?key|credentials?|authorization|cookie|session|session[_-]?id|sessionid))"
    };
}

/// Keys whose values identify a person: pseudonymized. Spelling variants
/// count (`user_id`, `userId`, `USER-ID`), and so do prefixes ending in a
/// separator (`billing_email`, `customer.phone`, `actor.userId`); `sub`
/// only as itself (`pubsub` is no subject). Camel-cased prefixes
/// (`actorUserId`) are not matched: every word would become a candidate
/// key, which cost 11 % of clean-text throughput.
macro_rules! identity_keys {
    () => {
        r"(?i-u:sub|(?:[a-z0-9]+[_.-])*(?:user[_.-]?id|userid|uid|actor[_.-]?id|enduser[_.-]?id|principal[_.-]?id|person[_.-]?id|phone|phone[_-]?number|mobile|msisdn|email|e-mail|email[_-]?address|owner[_-]?id|customer[_-]?id|account[_-]?id|member[_-]?id|username|user[_-]?name|x-forwarded-user|x-forwarded-email|x-user-id|x-user-email))"
    };
}

/// Keys whose values are national identity numbers (SSN and the like):
/// removed, in any spelling (`ssn`, `SSN`, `social_security_number`,
/// `socialSecurityNumber`, `tax-id`).
macro_rules! ssn_keys {
    () => {
        r"(?i-u:ssn|social[_-]?security(?:[_-]?(?:number|num|no))?|tax[_-]?id|national[_-]?id(?:[_-]?(?:number|num|no))?)"
    };
}

/// Keys whose values are names: pseudonymized, with any prefix ending in a
/// separator (`billing_first_name`, `customer.lastName`).
macro_rules! name_keys {
    () => {
        r"(?i-u:(?:[a-z0-9]+[_.-])*(?:full[_-]?name|fullname|first[_-]?name|last[_-]?name|given[_-]?name|family[_-]?name|display[_-]?name|customer[_-]?name|contact[_-]?name|cardholder(?:[_-]?name)?))"
    };
}

/// A JSON string or scalar value.
macro_rules! json_value {
    () => {
        r#"(?P<value>"(?:[^"\\]|\\.)*"|[^,}\]\t\n\r {\[][^,}\]\t\n\r ]*)"#
    };
}

/// A `key=value` value: quoted, or up to a delimiter.
macro_rules! kv_value {
    () => {
        r#"(?P<value>"(?:[^"\\]|\\.)*"|\\"(?:[^"\\]|\\[^"])*\\"|'[^']*'|[^\t\n\r ,;&"'}\])\\\[]+)"#
    };
}

/// A `key: value` value (YAML, headers, struct dumps).
macro_rules! colon_value {
    () => {
        r#"(?P<value>"(?:[^"\\]|\\.)*"|\\"(?:[^"\\]|\\[^"])*\\"|[^\t\n\r ,;}\]"\\]+)"#
    };
}

/// A family of keys whose values are sensitive whatever they look like,
/// and what becomes of those values. Each family is matched in every
/// syntax a log line uses to attach a value to a key (see [`FORMS`]).
pub(super) struct KeyFamily {
    class: Class,
    /// A regex alternation of the keys, spelling variants included.
    keys: &'static str,
    kind: Kind,
    validate: fn(&str) -> bool,
}

/// The key families, in priority order.
pub(super) static KEY_FAMILIES: &[KeyFamily] = &[
    KeyFamily {
        class: Class::Secret,
        keys: secret_keys!(),
        kind: Kind::Group("[redacted]"),
        validate: any,
    },
    KeyFamily {
        class: Class::Ssn,
        keys: ssn_keys!(),
        kind: Kind::Group("[ssn]"),
        validate: nine_digits,
    },
    KeyFamily {
        class: Class::Name,
        keys: name_keys!(),
        kind: Kind::Pseudonym("name"),
        validate: not_placeholder,
    },
    KeyFamily {
        class: Class::UserId,
        keys: identity_keys!(),
        kind: Kind::Pseudonym("usr"),
        validate: not_placeholder,
    },
];

/// The syntaxes that attach a value to a key; `{k}` stands for the keys.
/// Each rule has a `value` group, the part replaced; `jsonkey` marks JSON,
/// where a bare scalar replaced by a string must be quoted.
const FORMS: &[&str] = &[
    // JSON: `"key": "value"`, `"key": 42`.
    concat!(r#"(?P<jsonkey>)"{k}"[\t\n\r ]*:[\t\n\r ]*"#, json_value!()),
    // JSON escaped inside a JSON string: `\"key\":\"value\"`.
    r#"(?P<jsonkey>)\\"{k}\\"[\t\n\r ]*:[\t\n\r ]*(?P<value>\\"(?:[^"\\]|\\[^"])*\\")"#,
    // `key=value`: logfmt, query strings, form bodies, XML attributes,
    // command flags.
    concat!(r"(?-u:\b){k}[ \t]*=[ \t]*", kv_value!()),
    // `key: value`: YAML, header dumps, Rust/Go struct dumps.
    concat!(r"(?-u:\b){k}:[ \t]+", colon_value!()),
    // Go `%+v` and compact debug output: `Email:"…"` (quoted values
    // only; `key:value` unquoted is too often a path or a port).
    r#"(?-u:\b){k}:(?P<value>"(?:[^"\\]|\\.)*")"#,
    // Ruby hashes (`"email"=>"…"`, `:email=>"…"`) and Python dicts
    // (`'email': '…'`).
    r#"(?:"{k}"[ \t]*=>|'{k}'[ \t]*(?:=>|:)|:{k}[ \t]*=>)[ \t]*(?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\t\n\r ,;{}\[\])"'\\]+)"#,
    // XML elements, with a namespace prefix or attributes:
    // `<ns:email type="work">…</ns:email>`.
    r"<(?:[A-Za-z0-9_-]+:)?{k}(?:[ \t][^<>]*)?>(?P<value>[^<>\r\n]+)</",
];

/// The rules of one key family: one per form.
pub(super) fn key_rules(
    class: Class,
    keys: &str,
    kind: &RuleKind,
    validate: fn(&str) -> bool,
) -> Vec<Rule> {
    FORMS
        .iter()
        .map(|form| Rule {
            class,
            pattern: form.replace("{k}", keys),
            kind: kind.clone(),
            validate,
        })
        .collect()
}

/// Rules that must win over the key families at the same position.
pub(super) static LEADING: &[Detector] = &[Detector {
    class: Class::Secret,
    // Header lines: the whole value, schemes and all, up to the end of
    // the line or of an enclosing JSON string.
    pattern: r#"(?m:(?-u:\b)(?i-u:authorization|proxy-authorization|cookie|set-cookie)[ \t]*:[ \t]*(?P<value>[^\r\n"\\]+))"#,
    kind: Kind::Group("[redacted]"),
    validate: any,
}];

pub(super) static DETECTORS: &[Detector] = &[
    Detector {
        class: Class::Name,
        // A bare `name` only when its quoted value looks like a person's
        // name (two words), so `name=api.request` stays.
        pattern: r#"(?P<jsonkey>)"name"[\t\n\r ]*:[\t\n\r ]*(?P<value>"[\p{Lu}][^"\t\n\r ]*(?:[\t\n\r ]+[^"\t\n\r ]+)+")"#,
        kind: Kind::Pseudonym("name"),
        validate: any,
    },
    Detector {
        class: Class::Name,
        pattern: r#"(?-u:\b)(?i-u:name)(?:[ \t]*=[ \t]*|:[ \t]*)(?P<value>"[\p{Lu}][^"\t\n\r ]*(?:[\t\n\r ]+[^"\t\n\r ]+)+")"#,
        kind: Kind::Pseudonym("name"),
        validate: any,
    },
    // --- values recognised by their shape ---
    Detector {
        class: Class::Secret,
        pattern: r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?s:.*?-----END [A-Z0-9 ]*PRIVATE KEY-----|[A-Za-z0-9+/=\t\n\r \\]*)",
        kind: Kind::Replace("[private_key]"),
        validate: any,
    },
    Detector {
        class: Class::Secret,
        pattern: r"(?-u:\b)eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",
        kind: Kind::Replace("[jwt]"),
        validate: any,
    },
    Detector {
        class: Class::Secret,
        pattern: r"(?-u:\b)(?i-u:bearer|basic|token)[ \t]+(?P<value>[A-Za-z0-9._~+/=-]{8,})",
        kind: Kind::Group("[token]"),
        validate: has_digit_and_letter,
    },
    Detector {
        class: Class::Secret,
        pattern: r#"(?-u:\b)[A-Za-z][A-Za-z0-9+.-]*://(?P<value>[^\t\n\r /:@'"]*:[^\t\n\r @'"]+)@"#,
        kind: Kind::Group("[credentials]"),
        validate: any,
    },
    Detector {
        class: Class::Secret,
        pattern: r"(?-u:\b)(?:(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}|(?:AKIA|ASIA)[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{20,}|xox[abposr]-[A-Za-z0-9-]{10,}|whsec_[A-Za-z0-9]{10,}|AIza[0-9A-Za-z_-]{35}|npm_[A-Za-z0-9]{36}|glpat-[A-Za-z0-9_-]{20,}|SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}|shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}|hf_[A-Za-z0-9]{30,}|dop_v1_[a-f0-9]{64})",
        kind: Kind::Replace("[secret]"),
        validate: any,
    },
    Detector {
        class: Class::Email,
        pattern: r"[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
        kind: Kind::Replace("[email]"),
        validate: any,
    },
    Detector {
        class: Class::HomePath,
        pattern: r"(?:/home/|/Users/|(?-u:\b)[A-Za-z]:\\{1,2}Users\\{1,2})(?P<value>[A-Za-z0-9._-]+)",
        kind: Kind::Group("[user]"),
        validate: not_shared_home,
    },
    Detector {
        class: Class::HomePath,
        pattern: r#"(?:^|[\t\n\r "'=(:])~(?P<value>[A-Za-z][A-Za-z0-9._-]*)"#,
        kind: Kind::Group("[user]"),
        validate: any,
    },
    Detector {
        class: Class::Iban,
        pattern: r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?-u:\b)",
        kind: Kind::Replace("[iban]"),
        validate: iban_valid,
    },
    Detector {
        class: Class::Ssn,
        pattern: r"(?-u:\b)[0-9]{3}-[0-9]{2}-[0-9]{4}(?-u:\b)",
        kind: Kind::Replace("[ssn]"),
        validate: ssn_valid,
    },
    Detector {
        class: Class::Phone,
        // International (`+44 …`, `0044 …`, URL-encoded `%2B44…`), North
        // American (`(555) 010-…`, `555-010-…`), and national numbers with
        // a trunk prefix written in groups (`020 7946 0958`,
        // `030 1234 5678`, `01 23 45 67 89`, `07700 900123`).
        pattern: r"\+[0-9][0-9 \-.()]{6,18}[0-9](?-u:\b)|%2[Bb][0-9](?:(?:%20|[ \-.])?[0-9]){7,14}(?-u:\b)|(?-u:\b)00[1-9][0-9]{0,3}(?:[ \-][0-9]{1,4}){2,5}(?-u:\b)|\([0-9]{3}\)[ ]?[0-9]{3}[-. ][0-9]{4}(?-u:\b)|(?-u:\b)[0-9]{3}[-.][0-9]{3}[-.][0-9]{4}(?-u:\b)|(?-u:\b)0[1-9][0-9]{0,3}(?:[ \-][0-9]{2,4}){2,4}(?-u:\b)|(?-u:\b)0[1-9][0-9]{2,4} [0-9]{5,7}(?-u:\b)",
        kind: Kind::Replace("[phone]"),
        validate: phone_valid,
    },
    Detector {
        class: Class::CreditCard,
        // Not after a decimal point (see `fits_context`).
        // Digits grouped by spaces, dashes, `+` or `%20` (form and query
        // encodings of a space).
        pattern: r"(?-u:\b)[2-6](?:(?:[ +-]|%20)?[0-9]){12,18}(?-u:\b)",
        kind: Kind::Replace("[card]"),
        validate: card_valid,
    },
    Detector {
        class: Class::Ipv6,
        pattern: r"(?i-u:(?:[0-9a-f]{1,4}|:)?:[0-9a-f:.]*:[0-9a-f.]+)",
        kind: Kind::Replace("[ipv6]"),
        validate: any,
    },
    Detector {
        class: Class::Ipv4,
        pattern: r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)",
        kind: Kind::Replace("[ipv4]"),
        validate: ipv4_valid,
    },
];

fn is_word(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// Where a candidate of `class` really starts and ends, given the text
/// around it; `None` when the context says it isn't one.
///
/// - Card digits right after a decimal point are a float (a latency).
/// - An IPv6 candidate glued to a word is a path (`h2::codec`); one that
///   starts with a stray `:` (`ip:2001:db8::1`) starts one character later.
/// - A `+` right after a version (`1.4.2+20240411`) is build metadata, not a
///   phone number.
pub(super) fn in_context(
    class: Class,
    text: &str,
    start: usize,
    end: usize,
) -> Option<(usize, usize)> {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    match class {
        Class::CreditCard if before == Some('.') => None,
        Class::Phone
            if text[start..].starts_with('+') && (is_word(before) || before == Some('.')) =>
        {
            None
        }
        Class::Ipv6 => {
            let found = &text[start..end];
            let start = if found.starts_with(':') && !found.starts_with("::") {
                start + 1
            } else {
                start
            };
            let before = text[..start].chars().next_back();
            if is_word(before) || is_word(after) || after == Some(':') {
                return None;
            }
            if ipv6_valid(&text[start..end]) {
                return Some((start, end));
            }
            // Apache and others append a port with a bare colon
            // (`2001:db8::7:51234`): a five-digit group can't be hex.
            let (address, port) = text[start..end].rsplit_once(':')?;
            (port.len() == 5 && port.bytes().all(|b| b.is_ascii_digit()) && ipv6_valid(address))
                .then_some((start, start + address.len()))
        }
        _ => Some((start, end)),
    }
}

fn not_null(v: &str) -> bool {
    !matches!(v, "null" | "true" | "false" | "\"\"")
}

fn has_digit_and_letter(v: &str) -> bool {
    v.bytes().any(|b| b.is_ascii_digit()) && v.bytes().any(|b| b.is_ascii_alphabetic())
}

fn not_shared_home(user: &str) -> bool {
    !matches!(user, "Shared" | "Public" | "Default" | "All Users")
}

fn digits(s: &str) -> impl Iterator<Item = u32> + '_ {
    s.chars().filter_map(|c| c.to_digit(10))
}

/// A card number: Luhn-valid, and when written in groups, grouped the way
/// cards are printed — fours (the last group may be shorter: 19-digit
/// cards) or 4-6-5 / 4-6-4 (Amex, Diners). Byte and duration columns in an
/// access log (`36519 6188928 294 697`) that pass Luhn by chance are not.
fn card_valid(s: &str) -> bool {
    let spaced = s.replace("%20", " ");
    let groups: Vec<usize> = spaced.split([' ', '+', '-']).map(|g| g.len()).collect();
    let grouped = match groups.as_slice() {
        [_] => true,
        [4, 6, 4 | 5] => true,
        [init @ .., last] => init.iter().all(|&g| g == 4) && (1..=4).contains(last),
        [] => false,
    };
    grouped && luhn_valid(s)
}

pub(super) fn luhn_valid(s: &str) -> bool {
    // `%20` separates groups; its digits are not the card's.
    let s = if s.contains('%') {
        Cow::Owned(s.replace("%20", " "))
    } else {
        Cow::Borrowed(s)
    };
    let ds: Vec<u32> = digits(&s).collect();
    if !(13..=19).contains(&ds.len()) {
        return false;
    }
    let sum: u32 = ds
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

pub(super) fn iban_valid(s: &str) -> bool {
    let compact: Vec<u8> = s.bytes().filter(|b| *b != b' ').collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem: u32 = 0;
    for &b in tail.iter().chain(head) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// Not a bind parameter, template slot or schema type standing in for a
/// value: `WHERE email = $1`, `user_id = ?`, `email=%s`, `:email`,
/// `$email`, `{email}`, `{{ user_id }}`, GraphQL's `$email: String!`.
fn not_placeholder(value: &str) -> bool {
    // Quotes around it, and the punctuation a `key: value` match takes
    // along (`$user_id: ID)`, `email: $email,`).
    let v = value
        .trim_matches(|c| c == '"' || c == '\'')
        .trim_end_matches([')', ',', ';']);
    let named = |rest: &str| {
        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    let placeholder = matches!(v, "?" | "%s" | "%d")
        || v.strip_prefix('$').is_some_and(named)
        || v.strip_prefix(':').is_some_and(named)
        // `{name}`, and `{{ name }}` (cut at its first space).
        || v.starts_with('{')
        || is_schema_type(v);
    !placeholder
}

/// A GraphQL type in a variable or field declaration: a built-in scalar,
/// or a type name or list marked non-null (`String!`, `[ID!]!`).
fn is_schema_type(v: &str) -> bool {
    let name = v
        .trim_end_matches('!')
        .trim_start_matches('[')
        .trim_end_matches(['!', ']']);
    matches!(name, "String" | "ID" | "Int" | "Float" | "Boolean")
        || (v.ends_with('!')
            && name.starts_with(|c: char| c.is_ascii_uppercase())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
}

/// A value under an SSN-like key: nine digits, whatever separates them.
fn nine_digits(s: &str) -> bool {
    digits(s).count() == 9
}

fn ssn_valid(s: &str) -> bool {
    let area = &s[..3];
    area != "000"
        && area != "666"
        && !area.starts_with('9')
        && &s[4..6] != "00"
        && &s[7..] != "0000"
}

fn phone_valid(s: &str) -> bool {
    // `%2B` and `%20` are encodings of `+` and a space: not digits.
    let decoded = s
        .replace("%2B", "+")
        .replace("%2b", "+")
        .replace("%20", " ");
    let s = decoded.as_str();
    let n = digits(s).count();
    // Balanced parentheses, 10–15 digits (or 8+ with a country code).
    let balanced = s.matches('(').count() == s.matches(')').count();
    let international = s.starts_with('+') || s.starts_with("00");
    let national = s.starts_with('0') && !s.starts_with("00");
    balanced
        && if national {
            // A trunk prefix and 9–11 more digits, in groups.
            (10..=12).contains(&n)
        } else if s.starts_with("00") {
            (10..=17).contains(&n)
        } else {
            (10..=15).contains(&n) || (international && (8..=15).contains(&n))
        }
}

fn ipv6_valid(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_digit())
        && s.parse::<Ipv6Addr>()
            .is_ok_and(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

fn ipv4_valid(s: &str) -> bool {
    s.parse::<Ipv4Addr>()
        .is_ok_and(|ip| !ip.is_loopback() && !ip.is_unspecified() && !ip.is_broadcast())
}

/// How a rule's match is replaced, at run time.
#[derive(Clone, Debug)]
pub(super) enum RuleKind {
    /// The whole match becomes the label.
    Replace(String),
    /// The `value` group becomes the label; the rest stays.
    Group(String),
    /// The `value` group becomes a keyed pseudonym with this prefix.
    Pseudonym(String),
    /// The whole match (an IP address) becomes its /24 or /48 network.
    MaskIp,
}

/// A detector as a scrubber uses it: a built-in, or one from config.
#[derive(Debug)]
pub(super) struct Rule {
    pub(super) class: Class,
    pub(super) pattern: String,
    pub(super) kind: RuleKind,
    pub(super) validate: fn(&str) -> bool,
}

/// The rules for `config`: its own key rules and patterns first, then the
/// built-ins of every class not turned off.
pub(super) fn rules(config: &super::ScrubConfig) -> Result<Vec<Rule>, String> {
    let on = |class: &Class| !config.disable.contains(class);
    let mut rules = Vec::new();
    let configured = |keys: &[String]| {
        keys.iter()
            .map(|k| regex::escape(k))
            .collect::<Vec<_>>()
            .join("|")
    };
    if !config.secret_keys.is_empty() {
        let keys = format!("(?i-u:{})", configured(&config.secret_keys));
        let kind = RuleKind::Group("[redacted]".into());
        rules.extend(key_rules(Class::Secret, &keys, &kind, not_null));
    }
    if !config.identity_keys.is_empty() {
        let keys = format!("(?i-u:{})", configured(&config.identity_keys));
        let kind = RuleKind::Pseudonym("usr".into());
        rules.extend(key_rules(Class::UserId, &keys, &kind, not_placeholder));
    }
    for (i, custom) in config.rules.iter().enumerate() {
        let re = regex::Regex::new(&custom.pattern)
            .map_err(|e| format!("rules[{i}] ({}): not a valid regex: {e}", custom.name))?;
        if re.is_match("") {
            return Err(format!(
                "rules[{i}] ({}): the pattern matches the empty string",
                custom.name
            ));
        }
        if custom
            .replacement
            .as_deref()
            .is_some_and(|r| r.contains(['"', '\\']))
            || custom.name.contains(['"', '\\'])
        {
            return Err(format!(
                "rules[{i}] ({}): a replacement can't contain quotes or backslashes (it would break JSON)",
                custom.name
            ));
        }
        rules.push(Rule {
            class: Class::Secret,
            pattern: custom.pattern.clone(),
            kind: RuleKind::Replace(
                custom
                    .replacement
                    .clone()
                    .unwrap_or_else(|| format!("[{}]", custom.name)),
            ),
            validate: any,
        });
    }
    let detector_rule = |d: &Detector| Rule {
        class: d.class,
        pattern: d.pattern.to_owned(),
        kind: d.kind.at_run_time(d.class, config.mask_ips),
        validate: d.validate,
    };
    rules.extend(LEADING.iter().filter(|d| on(&d.class)).map(detector_rule));
    for family in KEY_FAMILIES.iter().filter(|f| on(&f.class)) {
        let kind = family.kind.at_run_time(family.class, false);
        rules.extend(key_rules(family.class, family.keys, &kind, family.validate));
    }
    rules.extend(DETECTORS.iter().filter(|d| on(&d.class)).map(detector_rule));
    Ok(rules)
}

impl Kind {
    fn at_run_time(self, class: Class, mask_ips: bool) -> RuleKind {
        match self {
            Kind::Replace(_) if mask_ips && matches!(class, Class::Ipv4 | Class::Ipv6) => {
                RuleKind::MaskIp
            }
            Kind::Replace(label) => RuleKind::Replace(label.into()),
            Kind::Group(label) => RuleKind::Group(label.into()),
            Kind::Pseudonym(prefix) => RuleKind::Pseudonym(prefix.into()),
        }
    }
}
