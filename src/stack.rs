//! The recommended stack of every configured guardrail, as one layer.

use guardrail_core::{ResolveClientIp, ResolveClientIpLayer, SetRequestId, SetRequestIdLayer};
use tower_layer::Layer;

use crate::GuardrailsConfig;

/// Layer that applies every configured guardrail in the recommended order
/// (outermost first): request id → client IP resolution. Later guardrails
/// join this stack as their crates land.
#[derive(Clone, Debug)]
pub struct GuardrailsLayer {
    request_id: SetRequestIdLayer,
    client_ip: ResolveClientIpLayer,
}

impl GuardrailsLayer {
    /// Builds the stack from a (validated) configuration.
    pub fn from_config(config: &GuardrailsConfig) -> Self {
        Self {
            request_id: SetRequestIdLayer::new()
                .header(config.request_id.header.clone())
                .trust_incoming(config.request_id.trust_incoming),
            client_ip: ResolveClientIpLayer::new(config.client_ip.clone()),
        }
    }
}

impl<S> Layer<S> for GuardrailsLayer {
    type Service = SetRequestId<ResolveClientIp<S>>;

    fn layer(&self, inner: S) -> Self::Service {
        self.request_id.layer(self.client_ip.layer(inner))
    }
}
