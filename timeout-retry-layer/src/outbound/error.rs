//! The one error of the outbound stack.

use std::{error::Error as StdError, fmt, time::Duration};

use guardrail_core::{Problem, problem::types};

use super::UpstreamStatus;

/// How long a caller is asked to wait after an upstream's 429 without a
/// `Retry-After`.
const DEFAULT_UPSTREAM_WAIT: Duration = Duration::from_secs(30);

/// A boxed error, as the inner clients return them.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// Why an outbound call failed: which guardrail fired, or what the
/// upstream did. Turned into the caller's answer with
/// [`OutboundError::to_problem`], which never says which upstream it was,
/// where it lives, nor anything of its answer's body or headers.
///
/// ```
/// use std::time::Duration;
/// use timeout_retry_layer::OutboundError;
///
/// let open = OutboundError::CircuitOpen { retry_after: Duration::from_millis(2500) };
/// let problem = open.to_problem();
/// assert_eq!(problem.status(), 503);
/// assert_eq!(problem.headers()["retry-after"], "3");
/// assert_eq!(OutboundError::BulkheadFull.to_problem().headers()["retry-after"], "1");
/// assert_eq!(OutboundError::Timeout.to_problem().status(), 504);
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum OutboundError {
    /// The call (or every attempt) ran out of time.
    Timeout,
    /// The circuit breaker is open: calls are refused for `retry_after`.
    CircuitOpen {
        /// Until the breaker lets a probe through.
        retry_after: Duration,
    },
    /// The bulkhead is full: too many calls to this upstream at once.
    BulkheadFull,
    /// The upstream could not be reached, or failed mid-call.
    Upstream(BoxError),
    /// The upstream answered with a failure status (4xx or 5xx), after the
    /// retries; made by [`CheckStatus`](super::CheckStatus).
    Status(UpstreamStatus),
}

impl OutboundError {
    /// Wraps an inner client's error; an `OutboundError` from a layer
    /// further in is taken out of its box, not wrapped again.
    pub fn from_inner(error: impl Into<BoxError>) -> Self {
        match error.into().downcast::<OutboundError>() {
            Ok(own) => *own,
            Err(other) => Self::Upstream(other),
        }
    }

    /// The problem the service answers with: 504 for a timeout, 503 with
    /// `Retry-After` while the circuit is open (its remaining open time,
    /// rounded up), the bulkhead is full (1 s) or the upstream answered
    /// 429 (its own `Retry-After`, capped; 30 s without one), 502 when the
    /// upstream failed or answered another failure status — unless it is a
    /// client error the upstream forwards
    /// ([`ClientErrors::Forward`](super::ClientErrors::Forward)). The
    /// detail never names the upstream nor repeats what it said.
    pub fn to_problem(&self) -> Problem {
        match self {
            Self::Timeout => Problem::gateway_timeout()
                .title("Upstream timed out")
                .detail("A service this request depends on did not answer in time."),
            Self::CircuitOpen { retry_after } => {
                Problem::service_unavailable(ceil_secs(*retry_after))
                    .title("Upstream unavailable")
                    .detail("A service this request depends on is failing; please retry later.")
            }
            Self::BulkheadFull => Problem::service_unavailable(1)
                .title("Upstream busy")
                .detail("Too many requests are waiting on a service this request depends on."),
            Self::Status(s) if s.status() == http::StatusCode::TOO_MANY_REQUESTS => {
                let wait = s.retry_after().unwrap_or(DEFAULT_UPSTREAM_WAIT);
                Problem::service_unavailable(ceil_secs(wait))
                    .title("Upstream busy")
                    .detail("A service this request depends on asks us to slow down; please retry later.")
            }
            Self::Status(s) if s.forwarded() => Problem::new(s.status())
                .detail("A service this request depends on refused the request."),
            Self::Upstream(_) | Self::Status(_) => Problem::new(http::StatusCode::BAD_GATEWAY)
                .with_type(types::UNAVAILABLE)
                .title("Upstream failed")
                .detail("A service this request depends on failed."),
        }
    }
}

/// Whole seconds, rounded up, at least 1.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

impl fmt::Display for OutboundError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("outbound call timed out"),
            Self::CircuitOpen { retry_after } => {
                write!(f, "circuit open for another {retry_after:?}")
            }
            Self::BulkheadFull => f.write_str("bulkhead full"),
            Self::Upstream(e) => write!(f, "upstream failed: {e}"),
            Self::Status(s) => write!(f, "upstream answered {}", s.status()),
        }
    }
}

impl StdError for OutboundError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Upstream(e) => Some(&**e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outbound_error_from_further_in_is_not_wrapped_twice() {
        let boxed: BoxError = Box::new(OutboundError::BulkheadFull);
        assert!(matches!(
            OutboundError::from_inner(boxed),
            OutboundError::BulkheadFull
        ));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = OutboundError::from_inner(io);
        assert!(matches!(err, OutboundError::Upstream(_)));
        assert_eq!(err.to_problem().status(), 502);
    }

    #[test]
    fn problems_never_carry_the_upstreams_words() {
        let err =
            OutboundError::from_inner("connect to 10.1.2.3:8443 failed: secret-host.internal");
        let json = String::from_utf8(err.to_problem().to_json().to_vec()).unwrap();
        assert!(
            !json.contains("10.1.2.3") && !json.contains("secret-host"),
            "{json}"
        );
        assert_eq!(ceil_secs(Duration::from_millis(10)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(30)), 30);
    }
}
