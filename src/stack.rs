//! The recommended stack of every configured guardrail, as one layer.

use guardrail_core::{ResolveClientIp, ResolveClientIpLayer, SetRequestId, SetRequestIdLayer};
use tower_layer::Layer;

use crate::GuardrailsConfig;

#[cfg(feature = "auth-layer")]
type Innermost<S> = auth_layer::Authenticate<S>;
#[cfg(not(feature = "auth-layer"))]
type Innermost<S> = S;

/// Layer that applies every configured guardrail in the recommended order
/// (outermost first): request id → client IP resolution → authentication
/// (deny by default; feature `auth-layer`). Route-level requirements
/// (`RequireLayer`) go on the routes themselves. Later guardrails join this
/// stack as their crates land.
#[derive(Clone, Debug)]
pub struct GuardrailsLayer {
    request_id: SetRequestIdLayer,
    client_ip: ResolveClientIpLayer,
    #[cfg(feature = "auth-layer")]
    auth: auth_layer::AuthenticateLayer,
}

impl GuardrailsLayer {
    /// Builds the stack from a validated configuration. Fails (with a
    /// message naming the problem) only where validation would have.
    pub fn from_config(config: &GuardrailsConfig) -> Result<Self, String> {
        Ok(Self {
            request_id: SetRequestIdLayer::new()
                .header(config.request_id.header.clone())
                .trust_incoming(config.request_id.trust_incoming),
            client_ip: ResolveClientIpLayer::new(config.client_ip.clone()),
            #[cfg(feature = "auth-layer")]
            auth: config.auth.authenticate_layer()?,
        })
    }

    /// The authentication layer of the stack, e.g. to log its public routes.
    #[cfg(feature = "auth-layer")]
    pub fn auth(&self) -> &auth_layer::AuthenticateLayer {
        &self.auth
    }
}

impl<S> Layer<S> for GuardrailsLayer {
    type Service = SetRequestId<ResolveClientIp<Innermost<S>>>;

    fn layer(&self, inner: S) -> Self::Service {
        #[cfg(feature = "auth-layer")]
        let inner = self.auth.layer(inner);
        self.request_id.layer(self.client_ip.layer(inner))
    }
}
