//! Why a request was refused, and the response and event each reason gives.

use std::fmt;

use guardrail_core::{EventName, Problem, emit, problem::types};
use http::{Extensions, HeaderValue, Method, header::WWW_AUTHENTICATE};

/// Why authentication failed. The [`reason`](AuthError::reason) code is what
/// events carry; clients only see a generic, safe description.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization` header.
    Missing,
    /// Several `Authorization` headers (token smuggling).
    MultipleCredentials,
    /// An `Authorization` scheme other than `Bearer`.
    UnsupportedScheme,
    /// The token is not a well-formed JWS compact serialization.
    Malformed,
    /// The token is larger than the configured cap.
    Oversized,
    /// The header's `alg` is not the configured key's algorithm (or `none`).
    WrongAlgorithm,
    /// The header carries `crit`, `jku`, `x5u`, `jwk` or `x5c`.
    ForbiddenHeader,
    /// No configured key has the token's `kid`.
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// `exp` is in the past.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    IssuedInFuture,
    /// `aud` is not the configured audience.
    WrongAudience,
    /// `iss` is not the configured issuer.
    WrongIssuer,
    /// A required claim (`exp`, `sub`, `iss`, `aud`) is absent or mistyped.
    MissingClaim,
    /// The claims could not be mapped to a principal.
    InvalidClaims,
    /// No key could be obtained (JWKS endpoint down, nothing cached).
    KeysUnavailable,
}

impl AuthError {
    /// The stable reason code carried by `security.auth_failed` events.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::MultipleCredentials => "multiple_credentials",
            Self::UnsupportedScheme => "unsupported_scheme",
            Self::Malformed => "malformed",
            Self::Oversized => "oversized",
            Self::WrongAlgorithm => "wrong_algorithm",
            Self::ForbiddenHeader => "forbidden_header",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::WrongAudience => "wrong_audience",
            Self::WrongIssuer => "wrong_issuer",
            Self::MissingClaim => "missing_claim",
            Self::InvalidClaims => "invalid_claims",
            Self::KeysUnavailable => "keys_unavailable",
        }
    }

    /// The RFC 6750 `error_description`: safe to show a client.
    fn description(self) -> &'static str {
        match self {
            Self::Expired => "The access token expired",
            Self::NotYetValid => "The access token is not valid yet",
            Self::Oversized => "The access token is too large",
            Self::MultipleCredentials => "Send exactly one Authorization header",
            _ => "The access token is invalid",
        }
    }

    /// The `WWW-Authenticate` challenge for this failure.
    fn challenge(self, realm: &str) -> HeaderValue {
        let text = match self {
            Self::Missing | Self::UnsupportedScheme | Self::KeysUnavailable => {
                format!("Bearer realm=\"{realm}\"")
            }
            Self::MultipleCredentials => format!(
                "Bearer realm=\"{realm}\", error=\"invalid_request\", error_description=\"{}\"",
                self.description()
            ),
            _ => format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
                self.description()
            ),
        };
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }

    /// Emits this failure's event and returns its problem+json rejection.
    pub(crate) fn problem(self, realm: &str, method: &Method, extensions: &Extensions) -> Problem {
        let problem = if self == Self::KeysUnavailable {
            emit!(
                ERROR,
                EventName::SECURITY_AUTH_FAILED,
                from = extensions,
                reason = self.reason(),
                method = %method,
            );
            Problem::service_unavailable(30)
                .detail("Authentication is temporarily unavailable. Try again shortly.")
        } else {
            emit!(
                WARN,
                EventName::SECURITY_AUTH_FAILED,
                from = extensions,
                reason = self.reason(),
                method = %method,
            );
            Problem::unauthorized().detail(match self {
                Self::Missing | Self::UnsupportedScheme => "This endpoint requires a bearer token.",
                Self::Expired => "The access token expired. Sign in again.",
                _ => "The access token is invalid.",
            })
        };
        problem
            .header(WWW_AUTHENTICATE, self.challenge(realm))
            .request_id_from(extensions)
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for AuthError {}

/// What a route needing MFA (or fresher MFA) answers a caller without it:
/// `auth.step_up`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum StepUp {
    /// 403 with an MFA hint (`mfa-required` problem type): the default.
    #[default]
    Forbid,
    /// 401 with an RFC 9470 step-up challenge
    /// (`error="insufficient_user_authentication"`, `acr_values="aal2"`,
    /// `max_age` when freshness is the reason), so a client knows to
    /// re-authenticate rather than give up.
    Challenge,
}

/// Why an authenticated caller was refused (403).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Denial {
    /// Not authenticated with a second factor (aal2).
    MfaRequired,
    /// MFA happened longer ago than the route allows.
    MfaTooOld,
    /// Lacks an administrator role.
    AdminRequired,
    /// The resource belongs to another user.
    NotOwner,
}

impl Denial {
    /// The stable reason code carried by `security.forbidden` events.
    pub fn reason(self) -> &'static str {
        match self {
            Self::MfaRequired => "mfa_required",
            Self::MfaTooOld => "mfa_too_old",
            Self::AdminRequired => "admin_required",
            Self::NotOwner => "not_owner",
        }
    }

    /// Whether the caller could pass by authenticating again (with a
    /// second factor, or a fresher one).
    pub fn is_step_up(self) -> bool {
        matches!(self, Self::MfaRequired | Self::MfaTooOld)
    }

    /// Emits this denial's event and returns its problem+json rejection:
    /// 403 with an `insufficient_scope` challenge, or, for an MFA denial
    /// under [`StepUp::Challenge`], 401 with an RFC 9470
    /// `insufficient_user_authentication` challenge naming `acr_values`
    /// and, when freshness was the reason, the route's `max_age`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn problem(
        self,
        realm: &str,
        step_up: StepUp,
        max_age: Option<std::time::Duration>,
        user: Option<&str>,
        route: Option<&str>,
        extensions: &Extensions,
    ) -> Problem {
        let challenge_step_up = step_up == StepUp::Challenge && self.is_step_up();
        emit!(
            WARN,
            EventName::SECURITY_FORBIDDEN,
            from = extensions,
            reason = self.reason(),
            user = user,
            route = route,
            step_up = challenge_step_up,
        );
        if challenge_step_up {
            let description = match self {
                Self::MfaTooOld => "A more recent authentication is required",
                _ => "A second authentication factor is required",
            };
            let mut challenge = format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_user_authentication\", error_description=\"{description}\", acr_values=\"aal2\""
            );
            if let (Self::MfaTooOld, Some(max_age)) = (self, max_age) {
                challenge.push_str(&format!(", max_age={}", max_age.as_secs()));
            }
            let detail = match self {
                Self::MfaTooOld => {
                    "Recent multi-factor authentication required. Verify again and retry."
                }
                _ => "Multi-factor authentication required. Verify and retry.",
            };
            return Problem::unauthorized()
                .with_type(types::MFA_REQUIRED)
                .detail(detail)
                .header(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_str(&challenge)
                        .unwrap_or_else(|_| HeaderValue::from_static("Bearer")),
                )
                .request_id_from(extensions);
        }
        let (problem, detail) = match self {
            Self::MfaRequired => (
                Problem::forbidden().with_type(types::MFA_REQUIRED),
                "Multi-factor authentication required.",
            ),
            Self::MfaTooOld => (
                Problem::forbidden().with_type(types::MFA_REQUIRED),
                "Recent multi-factor authentication required. Verify again and retry.",
            ),
            Self::AdminRequired => (Problem::forbidden(), "Administrator role required."),
            Self::NotOwner => (
                Problem::forbidden(),
                "You can only access your own resources.",
            ),
        };
        let challenge = format!("Bearer realm=\"{realm}\", error=\"insufficient_scope\"");
        problem
            .detail(detail)
            .header(
                WWW_AUTHENTICATE,
                HeaderValue::from_str(&challenge)
                    .unwrap_or_else(|_| HeaderValue::from_static("Bearer")),
            )
            .request_id_from(extensions)
    }
}
