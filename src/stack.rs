//! The recommended stack of every configured guardrail, as one layer.

use guardrail_core::{ResolveClientIp, ResolveClientIpLayer, SetRequestId, SetRequestIdLayer};
use tower_layer::Layer;

use crate::GuardrailsConfig;

#[cfg(feature = "auth-layer")]
type Authed<S> = auth_layer::Authenticate<S>;
#[cfg(not(feature = "auth-layer"))]
type Authed<S> = S;

#[cfg(feature = "ratelimit-layer")]
type Limited<S> = ratelimit_layer::RateLimit<S>;
#[cfg(not(feature = "ratelimit-layer"))]
type Limited<S> = S;

#[cfg(feature = "pii-trace-layer")]
type Traced<S> = pii_trace_layer::Trace<S>;
#[cfg(not(feature = "pii-trace-layer"))]
type Traced<S> = S;
#[cfg(not(feature = "ratelimit-layer"))]
type Limited<S> = S;

/// Layer that applies every configured guardrail in the recommended order
/// (outermost first): request id → client IP resolution → scrubbed
/// request tracing (one `api.request` per request) → rate limits of
/// stage `before_auth` (per IP: protects the authenticator) →
/// authentication (deny by default) → rate limits of stage `after_auth`
/// (per principal). Route-level requirements (`RequireLayer`) go on the
/// routes themselves. Later guardrails join this stack as their crates land.
#[derive(Clone, Debug)]
pub struct GuardrailsLayer {
    request_id: SetRequestIdLayer,
    client_ip: ResolveClientIpLayer,
    #[cfg(feature = "pii-trace-layer")]
    trace: pii_trace_layer::TraceLayer,
    #[cfg(feature = "ratelimit-layer")]
    limit_before_auth: ratelimit_layer::RateLimitLayer,
    #[cfg(feature = "auth-layer")]
    auth: auth_layer::AuthenticateLayer,
    #[cfg(feature = "ratelimit-layer")]
    limit_after_auth: ratelimit_layer::RateLimitLayer,
}

impl GuardrailsLayer {
    /// Builds the stack from a validated configuration. Fails (with a
    /// message naming the problem) only where validation would have. With a
    /// Redis rate-limit backend or a JWKS key source it needs a tokio
    /// runtime (connections are prepared, not opened).
    pub fn from_config(config: &GuardrailsConfig) -> Result<Self, String> {
        #[cfg(feature = "ratelimit-layer")]
        let (limit_before_auth, limit_after_auth) = {
            use ratelimit_layer::Stage;
            let rl = &config.rate_limit;
            let redis = rl.redis_backend()?;
            (
                rl.layer(Stage::BeforeAuth, redis.clone())?,
                rl.layer(Stage::AfterAuth, redis)?,
            )
        };
        Ok(Self {
            request_id: SetRequestIdLayer::new()
                .header(config.request_id.header.clone())
                .trust_incoming(config.request_id.trust_incoming),
            client_ip: ResolveClientIpLayer::new(config.client_ip.clone()),
            #[cfg(feature = "pii-trace-layer")]
            trace: config.trace.layer(config.trace.scrubber()?),
            #[cfg(feature = "ratelimit-layer")]
            limit_before_auth,
            #[cfg(feature = "auth-layer")]
            auth: config.auth.authenticate_layer()?,
            #[cfg(feature = "ratelimit-layer")]
            limit_after_auth,
        })
    }

    /// The authentication layer of the stack, e.g. to log its public routes.
    #[cfg(feature = "auth-layer")]
    pub fn auth(&self) -> &auth_layer::AuthenticateLayer {
        &self.auth
    }
}

impl<S> Layer<S> for GuardrailsLayer {
    type Service = SetRequestId<ResolveClientIp<Traced<Limited<Authed<Limited<S>>>>>>;

    fn layer(&self, inner: S) -> Self::Service {
        #[cfg(feature = "ratelimit-layer")]
        let inner = self.limit_after_auth.layer(inner);
        #[cfg(feature = "auth-layer")]
        let inner = self.auth.layer(inner);
        #[cfg(feature = "ratelimit-layer")]
        let inner = self.limit_before_auth.layer(inner);
        #[cfg(feature = "pii-trace-layer")]
        let inner = self.trace.layer(inner);
        self.request_id.layer(self.client_ip.layer(inner))
    }
}
