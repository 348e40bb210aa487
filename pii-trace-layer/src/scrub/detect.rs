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
    /// The `value` group is an object: scrubbed, and its id fields
    /// pseudonymized.
    Object,
    /// The `value` group is a cookie header's value (see
    /// [`scrub_cookies`]).
    Cookies,
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
/// it *ends* with one of these words (`slack_token`, `STRIPE_SECRET_KEY`);
/// session cookie names (`sid`, `connect.sid`, `JSESSIONID`) only as
/// themselves (`MessageSid` is an id).
macro_rules! secret_keys {
    () => {
        r"(?i-u:[A-Za-z0-9_.-]*?(?:(?:password|passwd|pwd|passphrase)(?:[_-]?(?:confirmation|confirm|again|repeat|hash|digest))?|secret|secret[_-]?key|secret[_-]?key[_-]?base|token|api[_-]?key|apikey|private[_-]?key|access[_-]?key|signing[_-]?key|credentials?|authorization|cookie|session|session[_-]?id|sessionid)|sid|connect\.sid|jsessionid|phpsessid)"
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
        r"(?i-u:sub|(?:[a-z0-9]+[_.-])*(?:user[_.-]?id|userid|uid|actor[_.-]?id|enduser[_.-]?id|principal[_.-]?id|person[_.-]?id|phone|phone[_-]?number|mobile|msisdn|email|e-mail|email[_-]?address|owner[_-]?id|customer[_-]?id|account[_-]?id|member[_-]?id|username|user[_-]?name|login|anonymous[_-]?id|user[_-]?pseudo[_-]?id|requester[_-]?id|reporter[_-]?id|author[_-]?id|assignee[_-]?id|x-forwarded-user|x-forwarded-email|x-user-id|x-user-email))"
    };
}

/// Keys that hold a person (their id or their name) in some logs and other
/// things in others (`subject="Your invoice"`, `user=root`): their values
/// are pseudonymized when shaped like an id or a name (see [`id_shaped`],
/// [`name_shaped`]).
macro_rules! weak_identity_keys {
    () => {
        r"(?i-u:(?:[a-z0-9]+[_.-])*(?:subject|principal|assignee|created[_-]?by|updated[_-]?by|deleted[_-]?by|customer|actor|owner|author|requester|reporter|sender|recipient|member|user|applicant|beneficiary|contact|employee|patient|signer|payee|pusher|committer))"
    };
}

/// Keys whose values are national identity numbers (SSN and the like):
/// removed, in any spelling (`ssn`, `SSN`, `social_security_number`,
/// `socialSecurityNumber`, `tax-id`, `applicant.tin`, Stripe's `id_number`),
/// when they hold nine digits.
macro_rules! ssn_keys {
    () => {
        r"(?i-u:(?:[a-z0-9]+[_.-])*(?:ssn|social[_-]?security(?:[_-]?(?:number|num|no))?|tax[_-]?id|taxpayer[_-]?id|tin|itin|id[_-]?number|national[_-]?id(?:[_-]?(?:number|num|no))?))"
    };
}

/// Keys whose values are names: pseudonymized, with any prefix ending in a
/// separator (`billing_first_name`, `customer.lastName`).
macro_rules! name_keys {
    () => {
        r"(?i-u:(?:[a-z0-9]+[_.-])*(?:full[_-]?name|fullname|first[_-]?name|last[_-]?name|given[_-]?name|family[_-]?name|display[_-]?name|customer[_-]?name|contact[_-]?name|legal[_-]?name|holder[_-]?name|account[_-]?holder(?:[_-]?name)?|card[_-]?holder(?:[_-]?name)?|holder|beneficiary(?:[_-]?name)?|recipient[_-]?name|payee(?:[_-]?name)?|debtor[_-]?name|creditor[_-]?name|applicant[_-]?name|middle[_-]?name|surname|forename|maiden[_-]?name))"
    };
}

/// `name`: a person's name in some logs, a thing's in others
/// (`name=api.request`, `"name": "billing-api"`): pseudonymized when the
/// value is shaped like a person's name (see [`name_shaped`]).
macro_rules! person_keys {
    () => {
        r"(?i-u:(?:[a-z0-9]+[_.-])*name)"
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
        r#"(?P<value>"(?:[^"\\]|\\.)*"|\\"(?:[^"\\]|\\[^"])*\\"|'(?:[^'\\]|\\.)*'|[^\t\n\r ,;}\]"\\]+)"#
    };
}

/// A family of keys whose values are sensitive whatever they look like,
/// and what becomes of those values. Each family is matched in every
/// syntax a log line uses to attach a value to a key (see [`FORMS`]).
pub(super) struct KeyFamily {
    class: Class,
    /// A regex alternation of the keys, spelling variants included.
    keys: &'static str,
    /// The syntaxes its values are read in.
    forms: &'static [&'static str],
    kind: Kind,
    validate: fn(&str) -> bool,
}

/// The key families, in priority order.
pub(super) static KEY_FAMILIES: &[KeyFamily] = &[
    KeyFamily {
        class: Class::Secret,
        keys: secret_keys!(),
        forms: FORMS,
        kind: Kind::Group("[redacted]"),
        validate: any,
    },
    KeyFamily {
        class: Class::Ssn,
        keys: ssn_keys!(),
        forms: FORMS,
        kind: Kind::Group("[ssn]"),
        validate: nine_digits,
    },
    KeyFamily {
        class: Class::Name,
        keys: name_keys!(),
        forms: FORMS,
        kind: Kind::Pseudonym("name"),
        validate: name_like,
    },
    KeyFamily {
        class: Class::UserId,
        keys: identity_keys!(),
        forms: FORMS,
        kind: Kind::Pseudonym("usr"),
        validate: not_placeholder,
    },
    KeyFamily {
        class: Class::UserId,
        keys: weak_identity_keys!(),
        forms: FORMS,
        kind: Kind::Pseudonym("usr"),
        validate: id_or_name_shaped,
    },
    KeyFamily {
        class: Class::Name,
        keys: person_keys!(),
        forms: PERSON_FORMS,
        kind: Kind::Pseudonym("name"),
        validate: name_shaped,
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
    // Nested form parameters too: `user[email]=…`, `individual[ssn]=…`.
    concat!(r"(?-u:\b){k}\]?[ \t]*=[ \t]*", kv_value!()),
    // `key: value`: YAML, header dumps, Rust/Go struct dumps.
    // A name over several words after `key: ` (receipts, YAML):
    // `CARDHOLDER: EMEKA P KERRIGAN`. Only name-like values pass.
    r"(?-u:\b){k}:[ \t]+(?P<value>\p{Lu}[\p{L}.'-]*(?:[ \t]+\p{Lu}[\p{L}.'-]*)+)",
    concat!(r"(?-u:\b){k}:[ \t]+", colon_value!()),
    // PHP `var_dump` / `print_r`: `["ssn"]=>\\n  string(9) "…"`.
    r#"\[["']?{k}["']?\][ \t]*=>[ \t\r\n]*(?:string\([0-9]+\)[ \t]*)?(?P<value>"(?:[^"\\]|\\.)*"|[^\t\n\r ,;)]+)"#,
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

/// A person's name: two to four capitalised words (checked again by
/// [`name_shaped`]).
macro_rules! person_name {
    ($sep:literal) => {
        concat!(r"\p{Lu}[\p{L}.'-]*(?:", $sep, r"\p{Lu}[\p{L}.'-]*){1,3}")
    };
}

/// The syntaxes of [`FORMS`] with only a name-shaped value: `"name":
/// "request"` (a span's name) is then no candidate at all, which keeps
/// JSON logs cheap to scan.
const PERSON_FORMS: &[&str] = &[
    concat!(
        r#"(?P<jsonkey>)"{k}"[\t\n\r ]*:[\t\n\r ]*(?P<value>""#,
        person_name!(" "),
        r#"")"#
    ),
    concat!(
        r#"(?P<jsonkey>)\\"{k}\\"[\t\n\r ]*:[\t\n\r ]*(?P<value>\\""#,
        person_name!(" "),
        r#"\\")"#
    ),
    concat!(
        r#"(?-u:\b){k}\]?[ \t]*(?:=|:)[ \t]*(?P<value>""#,
        person_name!(" "),
        r#""|\\""#,
        person_name!(" "),
        r#"\\"|'"#,
        person_name!(" "),
        r#"'|"#,
        person_name!("(?:\\+|%20)"),
        r#"|"#,
        person_name!(" "),
        r#")"#
    ),
    concat!(
        r#"(?:"{k}"[ \t]*=>|'{k}'[ \t]*(?:=>|:))[ \t]*(?P<value>""#,
        person_name!(" "),
        r#""|'"#,
        person_name!(" "),
        r#"')"#
    ),
    concat!(
        r"<(?:[A-Za-z0-9_-]+:)?{k}(?:[ \t][^<>]*)?>(?P<value>",
        person_name!(" "),
        r")</"
    ),
];

/// The rules of one key family: one per form.
pub(super) fn key_rules(
    class: Class,
    keys: &str,
    forms: &[&str],
    kind: &RuleKind,
    validate: fn(&str) -> bool,
) -> Vec<Rule> {
    forms
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
pub(super) static LEADING: &[Detector] = &[
    Detector {
        class: Class::Secret,
        // Credentials in header lines, up to the end of the line, of an
        // enclosing JSON string or of a quoted shell argument; the scheme
        // (`Bearer`, `Basic`) stays.
        pattern: r#"(?m:(?-u:\b)(?i-u:authorization|proxy-authorization)[ \t]*:[ \t]*(?:(?i-u:bearer|basic|digest|token|negotiate|apikey|hmac|aws4-hmac-sha256)[ \t]+)?(?P<value>[^\r\n"'\\]+))"#,
        kind: Kind::Group("[redacted]"),
        validate: any,
    },
    Detector {
        class: Class::Secret,
        // Cookie headers: session-like cookies lose their values; cookie
        // attributes and preferences (`theme=dark`) stay.
        pattern: r#"(?m:(?-u:\b)(?i-u:cookie|set-cookie)[ \t]*:[ \t]*(?P<value>[^\r\n"'\\]+))"#,
        kind: Kind::Cookies,
        validate: any,
    },
];

/// A cookie header's value with the values of session-like cookies
/// replaced; `None` when there are none. A cookie counts as session-like
/// by its name (`sid`, `session`, `token`, `auth`, …) or by its value
/// (long and random-looking). Attributes (`Path=/`, `HttpOnly`) stay.
pub(super) fn scrub_cookies(header: &str) -> Option<String> {
    const ATTRIBUTES: [&str; 10] = [
        "path",
        "domain",
        "expires",
        "max-age",
        "samesite",
        "secure",
        "httponly",
        "priority",
        "partitioned",
        "version",
    ];
    // Anywhere in the name, or as one of its `_`/`-`/`.` separated words.
    const SECRET_PARTS: [&str; 10] = [
        "sess", "token", "auth", "jwt", "remember", "csrf", "xsrf", "login", "secret", "pass",
    ];
    const SECRET_WORDS: [&str; 6] = ["sid", "key", "id", "uid", "user", "userid"];
    let mut out = String::with_capacity(header.len());
    let mut changed = false;
    for (i, part) in header.split(';').enumerate() {
        if i > 0 {
            out.push(';');
        }
        let Some((name, value)) = part.split_once('=') else {
            out.push_str(part);
            continue;
        };
        let lower = name.trim().to_ascii_lowercase();
        let random = value.len() >= 24 || (value.len() >= 16 && has_digit_and_letter(value));
        let secret = !ATTRIBUTES.contains(&lower.as_str())
            && (SECRET_PARTS.iter().any(|s| lower.contains(s))
                || lower
                    .split(['_', '-', '.'])
                    .any(|w| SECRET_WORDS.contains(&w))
                || random);
        if secret && !value.trim().is_empty() && value.trim() != "[redacted]" {
            out.push_str(name);
            out.push_str("=[redacted]");
            changed = true;
        } else {
            out.push_str(part);
        }
    }
    changed.then_some(out)
}

pub(super) static DETECTORS: &[Detector] = &[
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
        class: Class::Secret,
        // Passwords on command lines: `mysql -u root -pS3cret`.
        pattern: r#"(?-u:\b)(?:mysql|mysqldump|mariadb|mysqladmin)[ \t][^\n|;]*?[ \t]-p(?P<value>[^\s'"-][^\s'"]*)"#,
        kind: Kind::Group("[redacted]"),
        validate: any,
    },
    Detector {
        class: Class::Secret,
        // `redis-cli -a <password>`.
        pattern: r#"(?-u:\b)redis-cli[ \t][^\n|;]*?[ \t](?:-a|--pass)[ \t]+(?P<value>[^\s'"]+)"#,
        kind: Kind::Group("[redacted]"),
        validate: any,
    },
    Detector {
        class: Class::Secret,
        // `curl -u user:password`, `--user user:password`.
        pattern: r#"[ \t](?:-u|--user)[ \t=]+['"]?[^\s:'"]+:(?P<value>[^\s'"@]+)"#,
        kind: Kind::Group("[redacted]"),
        validate: any,
    },
    Detector {
        class: Class::Secret,
        // Session ids in cache keys: `sess:4c5f…`, `session:rDOe…`.
        pattern: r"(?-u:\b)(?i-u:sess|session)[:_](?P<value>[A-Za-z0-9_-]{16,})",
        kind: Kind::Group("[redacted]"),
        validate: has_digit_and_letter,
    },
    Detector {
        class: Class::UserId,
        // A user object in JSON (`"user": {"id": …, "login": …}`) or Rust
        // `Debug` output (`User { id: 42, … }`): its id fields.
        pattern: concat!(
            r#"(?P<jsonkey>)"(?:"#,
            identity_keys!(),
            "|",
            weak_identity_keys!(),
            r#")"[\t\n\r ]*:[\t\n\r ]*(?P<value>\{[^{}]*\})"#
        ),
        kind: Kind::Object,
        validate: any,
    },
    Detector {
        class: Class::UserId,
        pattern: r"(?-u:\b)(?:User|Customer|Account|Member|Actor|Owner|Principal|Subject|Person)[A-Za-z]*[ \t]*(?P<value>\{[^{}]*\})",
        kind: Kind::Object,
        validate: any,
    },
    Detector {
        class: Class::UserId,
        // Ids in paths and cache keys: `/api/users/5532865/orders`,
        // `/v1/customers/cus_…`, `user:8230635:profile` (a digit required:
        // `/users/me`, `/users/{id}` stay).
        pattern: r"(?:/(?i-u:users?|customers?|accounts?|members?|profiles?|people|persons?|employees?|patients?)/|(?-u:\b)(?i-u:user|customer|account|member)s?:)(?P<value>[A-Za-z0-9_|-]*[0-9][A-Za-z0-9_|-]*)(?-u:\b)",
        kind: Kind::Pseudonym("usr"),
        validate: not_placeholder,
    },
    Detector {
        class: Class::UserId,
        // Stripe customer ids, wherever they are.
        pattern: r"(?-u:\b)(?P<value>cus_[A-Za-z0-9]{8,})(?-u:\b)",
        kind: Kind::Pseudonym("usr"),
        validate: any,
    },
    Detector {
        class: Class::UserId,
        // A key and its id in prose: `Login succeeded for UserId 6f24…`.
        pattern: r"(?-u:\b)(?i-u:user[_-]?id|customer[_-]?id|account[_-]?id|member[_-]?id)[ \t]+(?P<value>[A-Za-z0-9_|-]*[0-9][A-Za-z0-9_|-]*)(?-u:\b)",
        kind: Kind::Pseudonym("usr"),
        validate: any,
    },
    Detector {
        class: Class::UserId,
        // The authenticated user of a common/combined access log line:
        // `203.0.113.9 - jdoe [10/Oct/2024:13:55:36 +0000]`.
        pattern: r#" - (?P<value>[^\s\[\]"-][^\s\[\]"]*) \[[0-9]{2}/[A-Za-z]{3}/[0-9]{4}:[0-9]"#,
        kind: Kind::Pseudonym("usr"),
        validate: any,
    },
    Detector {
        class: Class::Name,
        // Git trailers and mail headers: `Co-authored-by: Ada Lovelace <…>`.
        pattern: r"(?-u:\b)(?i-u:co-authored-by|signed-off-by|reviewed-by|acked-by|author|committer|from|to|cc|reply-to):[ \t]+(?P<value>[^<>\r\n:,]+?)[ \t]*<",
        kind: Kind::Pseudonym("name"),
        validate: name_shaped,
    },
    Detector {
        class: Class::Email,
        pattern: r"[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
        kind: Kind::Replace("[email]"),
        validate: any,
    },
    Detector {
        class: Class::HomePath,
        // Unix and macOS homes, Windows profiles (any case, JSON-escaped
        // backslashes too), UNC home shares (`\\nas\home$\jdoe`).
        pattern: r"(?:/home/|/Users/|(?-u:\b)[A-Za-z]:\\{1,2}(?i-u:users)\\{1,2}|\\{2,4}[A-Za-z0-9._-]+\\{1,2}(?i-u:home|homes|users|profiles)\$?\\{1,2})(?P<value>[A-Za-z0-9._-]+)",
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
        // Grouped by spaces, or their form encodings `+` and `%20`.
        pattern: r"(?-u:\b)[A-Z]{2}[0-9]{2}(?:(?: |\+|%20)?[A-Z0-9]{4}){2,7}(?:(?: |\+|%20)?[A-Z0-9]{1,3})?(?-u:\b)",
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
        // Contiguous, in fours (the last group shorter on 19-digit
        // cards), or 4-6-5 / 4-6-4 (Amex, Diners): fixed groups keep the
        // automaton small.
        pattern: r"(?-u:\b)[2-6][0-9]{3}(?:[0-9]{9,15}|(?:[ +-]|%20)[0-9]{4}(?:(?:[ +-]|%20)[0-9]{4}){1,2}(?:(?:[ +-]|%20)[0-9]{1,4})?|(?:[ +-]|%20)[0-9]{6}(?:[ +-]|%20)[0-9]{4,5})(?-u:\b)",
        kind: Kind::Replace("[card]"),
        validate: card_valid,
    },
    Detector {
        class: Class::Ipv6,
        // Compressed (`2001:db8::7`, `::ffff:198.51.100.4`, `fe80::1`),
        // full (eight groups) or with an IPv4 tail. Times (`08:02:23.470`)
        // and Rust paths (`ledger::outbox`) are not candidates at all.
        // A port after a bare colon is split off in `in_context`.
        pattern: r"(?i-u:(?-u:\b)[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6}::(?:[0-9a-f]{1,5}(?:[:.][0-9a-f]{1,5}){0,7})?|::[0-9a-f]{1,5}(?:[:.][0-9a-f]{1,5}){0,7}|(?-u:\b)[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){7}(?::[0-9]{1,5})?|(?-u:\b)(?:[0-9a-f]{1,4}:){6}[0-9]{1,3}(?:\.[0-9]{1,3}){3})",
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
        // `Version=8.0.0.0`, `Chrome/124.0.0.0`: versions, not addresses.
        Class::Ipv4 if is_version(&text[..start]) => None,
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
            // Apache, Redis and HAProxy append a port with a bare colon
            // (`2001:db8::7:51234`, eight groups and a port).
            let (address, port) = text[start..end].rsplit_once(':')?;
            (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && ipv6_valid(address))
                .then_some((start, start + address.len()))
        }
        _ => Some((start, end)),
    }
}

/// Whether the text before a dotted quad makes it a version: a `version`
/// key (`Version=`, `version: `) or a product token (`Chrome/`).
fn is_version(before: &str) -> bool {
    let b = before.as_bytes();
    let tail = &b[b.len().saturating_sub(10)..];
    let mut keyed = tail;
    while let [rest @ .., b' ' | b'=' | b':' | b'"'] = keyed {
        keyed = rest;
    }
    let product = tail.len() >= 2
        && tail[tail.len() - 1] == b'/'
        && tail[tail.len() - 2].is_ascii_alphabetic();
    let keyed_version = keyed
        .len()
        .checked_sub(7)
        .is_some_and(|at| keyed[at..].eq_ignore_ascii_case(b"version"));
    keyed_version || product
}

fn not_null(v: &str) -> bool {
    !matches!(v, "null" | "true" | "false" | "\"\"")
}

/// Not a placeholder, and not a thing's name: a person's name has no `/`
/// (`"full_name": "acme/billing-api"` is a repository).
fn name_like(v: &str) -> bool {
    not_placeholder(v) && !v.contains('/')
}

/// Shaped like a person's name: two to four words, each a capital letter
/// and letters (`Ada Lovelace`, `EMEKA P KERRIGAN`, `Anne-Marie O'Neil`),
/// separated by spaces, `+` or `%20` (form encodings).
pub(super) fn name_shaped(v: &str) -> bool {
    let v = v.trim_matches(|c| c == '"' || c == '\'' || c == '\\');
    let words: Vec<&str> = v
        .split([' ', '+'])
        .flat_map(|w| w.split("%20"))
        .filter(|w| !w.is_empty())
        .collect();
    (2..=4).contains(&words.len())
        && words.iter().all(|w| {
            let mut chars = w.chars();
            chars.next().is_some_and(char::is_uppercase)
                && chars.all(|c| c.is_alphabetic() || matches!(c, '.' | '\'' | '-'))
        })
}

/// Shaped like an identifier: no spaces, at least three characters, with a
/// digit or a provider separator (`auth0|…`). `root`, `admin` and
/// `"Your invoice"` are not.
fn id_shaped(v: &str) -> bool {
    let v = v.trim_matches(|c| c == '"' || c == '\'');
    v.len() >= 3
        && !v.contains([' ', '\t', '+'])
        && !v.contains("%20")
        && v.bytes().any(|b| b.is_ascii_digit() || b == b'|')
        && not_placeholder(v)
}

fn id_or_name_shaped(v: &str) -> bool {
    id_shaped(v) || name_shaped(v)
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
    let s = s.replace("%20", " ");
    let compact: Vec<u8> = s.bytes().filter(|b| !matches!(b, b' ' | b'+')).collect();
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
    /// The `value` group is an object: scrubbed, and its id fields
    /// pseudonymized.
    Object,
    /// The `value` group is a cookie header's value (see
    /// [`scrub_cookies`]).
    Cookies,
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
        rules.extend(key_rules(Class::Secret, &keys, FORMS, &kind, not_null));
    }
    if !config.identity_keys.is_empty() {
        let keys = format!("(?i-u:{})", configured(&config.identity_keys));
        let kind = RuleKind::Pseudonym("usr".into());
        rules.extend(key_rules(
            Class::UserId,
            &keys,
            FORMS,
            &kind,
            not_placeholder,
        ));
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
        rules.extend(key_rules(
            family.class,
            family.keys,
            family.forms,
            &kind,
            family.validate,
        ));
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
            Kind::Object => RuleKind::Object,
            Kind::Cookies => RuleKind::Cookies,
        }
    }
}
