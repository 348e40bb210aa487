//! Reading a header that must appear at most once.
//!
//! A credential, a signature, a forwarded address or a request id sent
//! twice is ambiguous: a proxy and the client may each have added one.
//! Every guardrail reads such headers through [`single_header`], so none of
//! them picks "the first" (or "the last") by accident.
//!
//! # Example
//!
//! ```
//! use guardrail_core::{RepeatedHeader, single_header};
//! use http::{HeaderMap, header::AUTHORIZATION};
//!
//! let mut headers = HeaderMap::new();
//! assert_eq!(single_header(&headers, AUTHORIZATION), Ok(None));
//! headers.append(AUTHORIZATION, "Bearer a".parse().unwrap());
//! assert_eq!(single_header(&headers, AUTHORIZATION).unwrap().unwrap(), "Bearer a");
//! headers.append(AUTHORIZATION, "Bearer b".parse().unwrap());
//! assert_eq!(single_header(&headers, AUTHORIZATION), Err(RepeatedHeader));
//! ```

use std::fmt;

use http::{HeaderMap, HeaderValue, header::AsHeaderName};

/// A header that must appear at most once appeared several times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RepeatedHeader;

impl fmt::Display for RepeatedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the header appears more than once")
    }
}

impl std::error::Error for RepeatedHeader {}

/// The one value of header `name`: `Ok(None)` when it is absent,
/// `Err(RepeatedHeader)` when it appears more than once.
pub fn single_header<K: AsHeaderName>(
    headers: &HeaderMap,
    name: K,
) -> Result<Option<&HeaderValue>, RepeatedHeader> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (first, None) => Ok(first),
        (Some(_), Some(_)) | (None, Some(_)) => Err(RepeatedHeader),
    }
}
