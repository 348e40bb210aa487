//! RFC 9457 `application/problem+json` responses, the one error body of every
//! guardrail layer.
//!
//! Every text a client sees (`type`, `title`, `detail`) is a `&'static str`:
//! there is no way to format an internal error, a key id or a token into a
//! problem by accident. Dynamic, non-sensitive facts go into typed extension
//! members, and the request id is attached from the request's extensions.
//!
//! # Example
//!
//! ```
//! use guardrail_core::{Problem, RequestId};
//! use http::{StatusCode, header};
//! use http_body_util::{BodyExt, Full};
//! use bytes::Bytes;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let id = RequestId::parse("req-42").unwrap();
//! let response = Problem::too_many_requests(30)
//!     .detail("Too many requests from this client. Try again later.")
//!     .request_id(id)
//!     .into_response::<Full<Bytes>>();
//!
//! assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(response.headers()[header::CONTENT_TYPE], "application/problem+json");
//! assert_eq!(response.headers()[header::RETRY_AFTER], "30");
//!
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(json["status"], 429);
//! assert_eq!(json["title"], "Too Many Requests");
//! assert_eq!(json["request_id"], "req-42");
//! # }
//! ```

use bytes::Bytes;
use http::{Extensions, HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use crate::RequestId;

/// The media type of a problem document.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Problem type URIs used by the guardrail layers.
///
/// Each names one kind of rejection, so clients can branch on `type` rather
/// than parse `title` or `detail`.
pub mod types {
    /// No more specific type applies (RFC 9457 §4.2.1).
    pub const ABOUT_BLANK: &str = "about:blank";
    /// No credentials, or credentials that could not be verified (401).
    pub const UNAUTHENTICATED: &str = "urn:guardrails:problem:unauthenticated";
    /// Authenticated, but not allowed to do this (403).
    pub const FORBIDDEN: &str = "urn:guardrails:problem:forbidden";
    /// Multi-factor authentication is required (403).
    pub const MFA_REQUIRED: &str = "urn:guardrails:problem:mfa-required";
    /// A rate limit was exceeded (429).
    pub const RATE_LIMITED: &str = "urn:guardrails:problem:rate-limited";
    /// The request was malformed (400).
    pub const BAD_REQUEST: &str = "urn:guardrails:problem:bad-request";
    /// The request body exceeded a size limit (413).
    pub const PAYLOAD_TOO_LARGE: &str = "urn:guardrails:problem:payload-too-large";
    /// A dependency is unavailable; retry later (503).
    pub const UNAVAILABLE: &str = "urn:guardrails:problem:unavailable";
    /// The request deadline passed (504).
    pub const DEADLINE_EXCEEDED: &str = "urn:guardrails:problem:deadline-exceeded";
    /// The feature behind this route is turned off (404).
    pub const FEATURE_DISABLED: &str = "urn:guardrails:problem:feature-disabled";
    /// An unexpected failure inside the service (500).
    pub const INTERNAL: &str = "urn:guardrails:problem:internal";
}

/// Members a problem document defines itself; extension members may not use
/// them.
const RESERVED_MEMBERS: [&str; 6] = [
    "type",
    "title",
    "status",
    "detail",
    "instance",
    "request_id",
];

/// An RFC 9457 problem, turned into an `application/problem+json` response.
///
/// Build one with a constructor ([`Problem::new`] or a descriptive one such
/// as [`Problem::unauthorized`]), refine it with the builder methods, and
/// finish with [`Problem::into_response`].
#[derive(Clone, Debug)]
pub struct Problem {
    status: StatusCode,
    type_uri: &'static str,
    title: &'static str,
    detail: Option<&'static str>,
    request_id: Option<RequestId>,
    extensions: Vec<(&'static str, serde_json::Value)>,
    headers: HeaderMap,
}

impl Problem {
    /// A problem of type `about:blank` whose title is the status's reason
    /// phrase.
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            type_uri: types::ABOUT_BLANK,
            title: status.canonical_reason().unwrap_or("Error"),
            detail: None,
            request_id: None,
            extensions: Vec::new(),
            headers: HeaderMap::new(),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request() -> Self {
        Self::new(StatusCode::BAD_REQUEST).with_type(types::BAD_REQUEST)
    }

    /// 401 Unauthorized. The caller adds the `WWW-Authenticate` challenge
    /// with [`Problem::header`].
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED).with_type(types::UNAUTHENTICATED)
    }

    /// 403 Forbidden.
    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN).with_type(types::FORBIDDEN)
    }

    /// 413 Content Too Large.
    pub fn payload_too_large() -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE).with_type(types::PAYLOAD_TOO_LARGE)
    }

    /// 429 Too Many Requests with `Retry-After: retry_after_secs`.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS)
            .with_type(types::RATE_LIMITED)
            .retry_after(retry_after_secs)
    }

    /// 503 Service Unavailable with `Retry-After: retry_after_secs`.
    pub fn service_unavailable(retry_after_secs: u64) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_type(types::UNAVAILABLE)
            .retry_after(retry_after_secs)
    }

    /// 504 Gateway Timeout.
    pub fn gateway_timeout() -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT).with_type(types::DEADLINE_EXCEEDED)
    }

    /// 404 Not Found, the same for a path no route matches and a feature
    /// hidden behind a flag, so one can't be told from the other.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND).detail("No resource matches this path.")
    }

    /// 500 Internal Server Error. Its detail never describes the failure.
    pub fn internal_error() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR).with_type(types::INTERNAL)
    }

    /// Sets the problem type URI (see [`types`]).
    pub fn with_type(mut self, type_uri: &'static str) -> Self {
        self.type_uri = type_uri;
        self
    }

    /// Sets the short, human-readable title.
    pub fn title(mut self, title: &'static str) -> Self {
        self.title = title;
        self
    }

    /// Sets the user-facing explanation. It is a `&'static str` on purpose:
    /// a detail never carries internal error text.
    pub fn detail(mut self, detail: &'static str) -> Self {
        self.detail = Some(detail);
        self
    }

    /// Sets the request id member.
    pub fn request_id(mut self, id: RequestId) -> Self {
        self.request_id = Some(id);
        self
    }

    /// Takes the request id from a request's extensions, if one was set by
    /// [`SetRequestIdLayer`](crate::SetRequestIdLayer).
    pub fn request_id_from(mut self, extensions: &Extensions) -> Self {
        if let Some(id) = extensions.get::<RequestId>() {
            self.request_id = Some(id.clone());
        }
        self
    }

    /// Adds an extension member. Reserved member names (`type`, `title`,
    /// `status`, `detail`, `instance`, `request_id`) are ignored so an
    /// extension can never overwrite them.
    pub fn extension(mut self, name: &'static str, value: impl Into<serde_json::Value>) -> Self {
        if !RESERVED_MEMBERS.contains(&name) {
            self.extensions.retain(|(n, _)| *n != name);
            self.extensions.push((name, value.into()));
        }
        self
    }

    /// Adds a response header, e.g. `WWW-Authenticate`.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Sets `Retry-After` in seconds (and a `retry_after` member).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.headers
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        self.extension("retry_after", secs)
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The problem type URI.
    pub fn type_uri(&self) -> &'static str {
        self.type_uri
    }

    /// The headers that will be sent with the response.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The problem document as JSON.
    pub fn to_json(&self) -> Bytes {
        #[derive(Serialize)]
        struct Doc<'a> {
            #[serde(rename = "type")]
            type_uri: &'a str,
            title: &'a str,
            status: u16,
            #[serde(skip_serializing_if = "Option::is_none")]
            detail: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            request_id: Option<&'a str>,
            #[serde(flatten)]
            extensions: serde_json::Map<String, serde_json::Value>,
        }
        let doc = Doc {
            type_uri: self.type_uri,
            title: self.title,
            status: self.status.as_u16(),
            detail: self.detail,
            request_id: self.request_id.as_ref().map(RequestId::as_str),
            extensions: self
                .extensions
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        };
        // Serializing strings, numbers and `serde_json::Value`s cannot fail.
        serde_json::to_vec(&doc).map_or_else(|_| Bytes::new(), Bytes::from)
    }

    /// The `application/problem+json` response, with the body in any
    /// [`RejectionBody`](crate::RejectionBody) type (the layers return the
    /// inner service's body type).
    pub fn into_response<B: crate::RejectionBody>(self) -> Response<B> {
        let body = B::from_bytes(self.to_json());
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        *headers = self.headers;
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(id) = &self.request_id {
            headers.insert(crate::request_id::X_REQUEST_ID, id.header_value().clone());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn the_same_document_in_any_rejection_body_type() {
        let guard = json_of(Problem::too_many_requests(3)).await.1;
        let full = Problem::too_many_requests(3).into_response::<http_body_util::Full<Bytes>>();
        assert_eq!(full.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(full.headers()["content-type"], PROBLEM_JSON);
        assert_eq!(full.headers()["retry-after"], "3");
        let bytes = full.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
            guard
        );

        let text = Problem::too_many_requests(3).into_response::<String>();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(text.body()).unwrap(),
            guard
        );

        #[cfg(feature = "axum")]
        {
            let axum = Problem::too_many_requests(3).into_response::<axum::body::Body>();
            let bytes = axum.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
                guard
            );
        }
    }

    async fn json_of(problem: Problem) -> (Response<()>, serde_json::Value) {
        let (parts, body) = problem.into_response::<Full<Bytes>>().into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            Response::from_parts(parts, ()),
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    #[tokio::test]
    async fn problem_has_rfc9457_shape_and_content_type() {
        let (res, json) = json_of(
            Problem::forbidden()
                .detail("Administrator role required.")
                .request_id(RequestId::parse("abc-123").unwrap()),
        )
        .await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert_eq!(res.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(res.headers()["x-request-id"], "abc-123");
        assert_eq!(
            json,
            serde_json::json!({
                "type": types::FORBIDDEN,
                "title": "Forbidden",
                "status": 403,
                "detail": "Administrator role required.",
                "request_id": "abc-123",
            })
        );
    }

    #[tokio::test]
    async fn optional_members_are_omitted() {
        let (_, json) = json_of(Problem::new(StatusCode::NOT_FOUND)).await;
        assert_eq!(
            json,
            serde_json::json!({"type": "about:blank", "title": "Not Found", "status": 404})
        );
    }

    #[tokio::test]
    async fn extensions_cannot_overwrite_reserved_members() {
        let (_, json) = json_of(
            Problem::bad_request()
                .extension("status", 200)
                .extension("type", "evil")
                .extension("field", "limit")
                .extension("field", "burst"),
        )
        .await;
        assert_eq!(json["status"], 400);
        assert_eq!(json["type"], types::BAD_REQUEST);
        assert_eq!(json["field"], "burst");
    }

    #[tokio::test]
    async fn retry_after_is_a_header_and_a_member() {
        let (res, json) = json_of(Problem::service_unavailable(7)).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "7");
        assert_eq!(json["retry_after"], 7);
    }

    #[tokio::test]
    async fn extra_headers_are_sent() {
        let (res, _) = json_of(Problem::unauthorized().header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"api\""),
        ))
        .await;
        assert_eq!(
            res.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"api\""
        );
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    }

    #[test]
    fn request_id_is_taken_from_extensions() {
        let mut ext = Extensions::new();
        ext.insert(RequestId::parse("from-ext").unwrap());
        let json: serde_json::Value =
            serde_json::from_slice(&Problem::bad_request().request_id_from(&ext).to_json())
                .unwrap();
        assert_eq!(json["request_id"], "from-ext");
    }
}
