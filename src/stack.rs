//! The recommended stack of every configured guardrail, as one layer.
//!
//! The stack is the list in [`guardrail_stack!`] below, outermost first.
//! Each entry names a layer, its type, and how it is built from the
//! validated configuration; an entry behind a cargo feature is tower's
//! `Identity` when the feature is off. Adding a guardrail is one entry
//! here, one field in [`GuardrailsConfig`](crate::GuardrailsConfig) and one
//! validation call.

use guardrail_core::{
    BackgroundTasks, Pseudonymizer, ResolveClientIpLayer, SetRequestIdLayer, health::HealthRegistry,
};
use tower::ServiceBuilder;
use tower_layer::{Identity, Layer};

use crate::ValidConfig;

/// Builds, from one list of `name [if "feature"]: Type = expression;`
/// entries (outermost first): a type alias per entry (`Identity` when its
/// feature is off), the nested `Stack` type of them all, and the function
/// that builds it. The expressions see the wiring context under the name
/// given after `fn`.
macro_rules! guardrail_stack {
    (
        type $layers:ident;
        fn $build:ident($cx:ident: &mut $cxty:ty) -> Result<_, $err:ty>;
        $( $name:ident $(if $feature:literal)? : $ty:ty = $expr:expr; )+
    ) => {
        #[allow(non_camel_case_types)]
        mod parts {
            #[allow(unused_imports)]
            use super::*;
            $( guardrail_stack!(@alias $name $(if $feature)? : $ty); )+
        }

        /// The stack's layers, nested as `ServiceBuilder` nests them.
        type $layers = guardrail_stack!(@nest Identity; $(parts::$name),+);

        fn $build($cx: &mut $cxty) -> Result<$layers, $err> {
            Ok(ServiceBuilder::new()
                $( .layer(guardrail_stack!(@build $cx $(if $feature)? => $expr)) )+
                .into_inner())
        }
    };
    (@alias $name:ident : $ty:ty) => {
        pub(super) type $name = $ty;
    };
    (@alias $name:ident if $feature:literal : $ty:ty) => {
        #[cfg(feature = $feature)]
        pub(super) type $name = $ty;
        #[cfg(not(feature = $feature))]
        pub(super) type $name = tower_layer::Identity;
    };
    (@nest $acc:ty;) => { $acc };
    (@nest $acc:ty; $head:ty $(, $rest:ty)*) => {
        guardrail_stack!(@nest tower_layer::Stack<$head, $acc>; $($rest),*)
    };
    (@build $cx:ident => $expr:expr) => { $expr };
    (@build $cx:ident if $feature:literal => $expr:expr) => {{
        #[cfg(feature = $feature)]
        let layer = $expr;
        #[cfg(not(feature = $feature))]
        let layer = {
            let _ = &$cx;
            tower_layer::Identity::new()
        };
        layer
    }};
}

guardrail_stack! {
    type Layers;
    fn build_layers(w: &mut Wiring<'_>) -> Result<_, StackError>;

    request_id: SetRequestIdLayer = SetRequestIdLayer::from_config(&w.config.request_id);
    client_ip: ResolveClientIpLayer = ResolveClientIpLayer::new(w.config.client_ip.clone());
    trace if "pii-trace-layer": pii_trace_layer::TraceLayer =
        pii_trace_layer::TraceLayer::from_config(&w.config.trace, w.scrubber.clone())?;
    metrics if "monitor-layer": monitor_layer::MetricsLayer =
        monitor_layer::MetricsLayer::new().stats(w.stats.clone());
    error_boundary if "timeout-retry-layer": timeout_retry_layer::ErrorBoundaryLayer =
        w.error_boundary();
    load_shed if "timeout-retry-layer": timeout_retry_layer::LoadShedLayer = w.load_shed();
    deadline if "timeout-retry-layer": timeout_retry_layer::RequestDeadlineLayer =
        timeout_retry_layer::RequestDeadlineLayer::from_config(&w.config.timeout);
    body_limit if "timeout-retry-layer": timeout_retry_layer::RequestBodyLimitLayer =
        timeout_retry_layer::RequestBodyLimitLayer::from_config(&w.config.body_limit);
    limit_before_auth if "ratelimit-layer": ratelimit_layer::RateLimitLayer =
        w.rate_limits()?.before_auth;
    auth if "auth-layer": auth_layer::AuthenticateLayer = w.auth()?;
    limit_after_auth if "ratelimit-layer": ratelimit_layer::RateLimitLayer =
        w.rate_limits()?.after_auth;
}

/// Why the stack could not be built from a validated configuration: a
/// resource validation can't check (a key file that became unreadable) or
/// a fallible setup step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StackError {
    /// `[auth]`.
    #[cfg(feature = "auth-layer")]
    #[error(transparent)]
    Auth(#[from] auth_layer::AuthConfigError),
    /// `[rate_limit]`.
    #[cfg(feature = "ratelimit-layer")]
    #[error("rate_limit: {0}")]
    RateLimit(#[from] ratelimit_layer::RateLimitError),
    /// `[trace]`.
    #[cfg(feature = "pii-trace-layer")]
    #[error(transparent)]
    Trace(#[from] pii_trace_layer::TraceError),
    /// `[redis]`.
    #[error(transparent)]
    Redis(#[from] guardrail_core::RedisError),
    /// `[flags]`: the flag file or an environment off switch.
    #[cfg(feature = "flag-layer")]
    #[error("flags: {0}")]
    Flags(#[from] flag_layer::FlagError),
}

/// What building a layer may need besides its section, and what it leaves
/// for the service: background tasks and health sources.
struct Wiring<'a> {
    config: &'a ValidConfig,
    pseudonymizer: Pseudonymizer,
    tasks: BackgroundTasks,
    health: HealthRegistry,
    #[cfg(feature = "pii-trace-layer")]
    scrubber: std::sync::Arc<pii_trace_layer::Scrubber>,
    #[cfg(feature = "ratelimit-layer")]
    rate_limits: Option<ratelimit_layer::RateLimitStages>,
    #[cfg(feature = "auth-layer")]
    auth: Option<auth_layer::AuthenticateLayer>,
    redis: Option<guardrail_core::RedisConnection>,
    #[cfg(feature = "monitor-layer")]
    stats: monitor_layer::RequestStats,
}

impl Wiring<'_> {
    /// The error boundary, logging through the one scrubber (when the
    /// trace layer is built in) and keeping caught panics off stderr.
    #[cfg(feature = "timeout-retry-layer")]
    fn error_boundary(&mut self) -> timeout_retry_layer::ErrorBoundaryLayer {
        timeout_retry_layer::install_panic_hook();
        let layer = timeout_retry_layer::ErrorBoundaryLayer::from_config(
            &self.config.error_boundary,
            self.config.profile(),
        );
        #[cfg(feature = "pii-trace-layer")]
        let layer = layer.scrubber(self.scrubber.clone());
        layer
    }

    /// The alert rules of `[monitor.alerts]` over the stack's statistics
    /// and health report, evaluated in the background; the firing set in
    /// the report as `alerts`.
    #[cfg(feature = "monitor-layer")]
    fn alerts(&mut self) -> Option<monitor_layer::Alerts> {
        let config = &self.config.monitor.alerts;
        if !config.enabled {
            return None;
        }
        let alerts = monitor_layer::Alerts::new(config.clone(), self.stats.clone())
            .health(self.health.clone());
        self.tasks.push("alert_rules", alerts.run());
        self.health.register(alerts.clone());
        Some(alerts)
    }

    /// Load shedding, its count in the health report.
    #[cfg(feature = "timeout-retry-layer")]
    fn load_shed(&mut self) -> timeout_retry_layer::LoadShedLayer {
        let layer = timeout_retry_layer::LoadShedLayer::from_config(&self.config.load_shed);
        if layer.max_in_flight().is_some() {
            self.health.register_arc(layer.health_source());
        }
        layer
    }

    /// The flag store of `[flags]` (with the environment's off switches),
    /// its reload and health.
    #[cfg(feature = "flag-layer")]
    fn flags(&mut self) -> Result<flag_layer::FlagStore, StackError> {
        let redis = self.redis(self.config.flags.uses_redis())?;
        let (store, tasks) =
            self.config
                .flags
                .store(self.pseudonymizer.clone(), env_vars(), redis)?;
        self.tasks.extend(tasks);
        self.health.register_arc(store.health_source());
        Ok(store)
    }

    /// The outbound layers of each upstream, their breakers in the
    /// health report.
    #[cfg(feature = "timeout-retry-layer")]
    fn upstreams(
        &mut self,
    ) -> std::collections::BTreeMap<String, timeout_retry_layer::UpstreamLayers> {
        let config = self.config;
        config
            .upstreams
            .iter()
            .map(|(name, upstream)| {
                let layers = upstream.layers(name);
                self.health.register_arc(layers.circuit.health_source());
                (name.clone(), layers)
            })
            .collect()
    }

    /// The shared `[redis]` connection, prepared once, if a layer uses it.
    fn redis(
        &mut self,
        needed: bool,
    ) -> Result<Option<guardrail_core::RedisConnection>, StackError> {
        if needed && self.redis.is_none() {
            self.redis = Some(self.config.redis.connect()?);
        }
        Ok(self.redis.clone().filter(|_| needed))
    }

    /// The authentication layer, built (and registered) once.
    #[cfg(feature = "auth-layer")]
    fn auth(&mut self) -> Result<auth_layer::AuthenticateLayer, StackError> {
        if let Some(layer) = &self.auth {
            return Ok(layer.clone());
        }
        let layer = auth_layer::AuthenticateLayer::from_config(
            &self.config.auth,
            self.config.profile(),
            self.pseudonymizer.clone(),
        )?;
        self.tasks.extend(layer.background_tasks());
        for source in layer.health_sources() {
            self.health.register_arc(source);
        }
        self.auth = Some(layer.clone());
        Ok(layer)
    }

    /// Both rate-limit stages, built (and registered) once.
    #[cfg(feature = "ratelimit-layer")]
    fn rate_limits(&mut self) -> Result<ratelimit_layer::RateLimitStages, StackError> {
        if let Some(stages) = &self.rate_limits {
            return Ok(stages.clone());
        }
        let redis = self.redis(self.config.rate_limit.uses_redis())?;
        let stages = ratelimit_layer::RateLimitLayer::from_config(
            &self.config.rate_limit,
            redis,
            self.pseudonymizer.clone(),
        )?;
        for source in stages.health_sources() {
            self.health.register_arc(source);
        }
        self.rate_limits = Some(stages.clone());
        Ok(stages)
    }
}

/// Layer that applies every configured guardrail in the recommended order
/// (outermost first): request id → client IP resolution → scrubbed
/// request tracing (one `api.request` per request) → request metrics
/// (`http_server_*`, through the `metrics` facade) → error boundary
/// (panics and bare 5xx become problems) → load shedding (when
/// `load_shed.max_in_flight` is set) → request deadline → body limit →
/// rate limits of stage `before_auth` (per IP: protects the
/// authenticator) → authentication (deny by default) → rate limits of
/// stage `after_auth` (per principal). Route-level requirements
/// (`RequireLayer`) go on the routes themselves. Later guardrails join
/// this stack as their crates land.
///
/// With the `timeout-retry-layer` feature the inner service receives the
/// request body wrapped in a
/// [`LimitedBody`](timeout_retry_layer::LimitedBody) (axum's router takes
/// any body), and building the layer installs
/// [`install_panic_hook`](timeout_retry_layer::install_panic_hook).
#[derive(Clone)]
pub struct GuardrailsLayer {
    layers: Layers,
}

impl std::fmt::Debug for GuardrailsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardrailsLayer").finish_non_exhaustive()
    }
}

/// Everything [`GuardrailsLayer::from_config`] builds: the layer, and what
/// the service runs and reads beside it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Guardrails {
    /// The stack, for `Router::layer`.
    pub layer: GuardrailsLayer,
    /// Work to run beside the server (a JWKS refresh): spawn it with
    /// [`BackgroundTasks::spawn`] and stop it on shutdown with
    /// [`RunningTasks::shutdown`](guardrail_core::RunningTasks::shutdown).
    pub tasks: BackgroundTasks,
    /// The layers' state for the health report (rate limiter, JWKS cache).
    pub health: HealthRegistry,
    /// The one pseudonymizer (of `trace.pseudonym_key`) every layer names
    /// users with; hand it to route layers (`AuthConfig::require_admin`).
    pub pseudonymizer: Pseudonymizer,
    /// The one scrubber of `[trace]`, shared with the request log: pass it
    /// to `init_json_logging` so every line is scrubbed with the same rules.
    #[cfg(feature = "pii-trace-layer")]
    pub scrubber: std::sync::Arc<pii_trace_layer::Scrubber>,
    /// The authentication layer of the stack, e.g. to log its public routes.
    #[cfg(feature = "auth-layer")]
    pub auth: auth_layer::AuthenticateLayer,
    /// The one `[redis]` connection, prepared when a configured layer uses
    /// it (Redis rate limits, `auth.webhook.replay_store = "redis"`): hand
    /// it to route layers (`VerifyWebhookLayer::from_config`).
    pub redis: Option<guardrail_core::RedisConnection>,
    /// Request rate, 5xx error rate and latency percentiles over the last
    /// 1 m, 5 m, 30 m and 1 h (counts over 6 h), as the stack's metrics layer records them (for
    /// the health report and alert rules).
    #[cfg(feature = "monitor-layer")]
    pub stats: monitor_layer::RequestStats,
    /// The in-process alert rules (`[monitor.alerts]`, `None` when
    /// disabled): evaluated by a task in [`tasks`](Self::tasks), the firing
    /// set in [`health`](Self::health) as `alerts`.
    #[cfg(feature = "monitor-layer")]
    pub alerts: Option<monitor_layer::Alerts>,
    /// The flags of `[flags]`, for route gates (`FlagLayer::new(flags,
    /// "ai_recommendations")`) and handlers (`flags.is_enabled(…)`); its
    /// reload is in [`tasks`](Self::tasks), its state in
    /// [`health`](Self::health) as `flags`.
    #[cfg(feature = "flag-layer")]
    pub flags: flag_layer::FlagStore,
    /// The outbound layers of every `[upstreams.<name>]`, by name, each
    /// breaker registered in [`health`](Self::health) as `circuit:<name>`:
    /// put them over the client that calls the upstream
    /// (`guardrails.upstreams["weather"].layer(client)`).
    #[cfg(feature = "timeout-retry-layer")]
    pub upstreams: std::collections::BTreeMap<String, timeout_retry_layer::UpstreamLayers>,
}

impl GuardrailsLayer {
    /// Builds the stack from a validated configuration (see
    /// [`GuardrailsConfig::validate`](crate::GuardrailsConfig::validate)).
    /// Fails only on what validation can't check (a key file read, a Redis
    /// URL prepared). With a Redis rate-limit backend it needs a tokio
    /// runtime (the connection is prepared, not opened).
    pub fn from_config(config: &ValidConfig) -> Result<Guardrails, StackError> {
        #[cfg(feature = "pii-trace-layer")]
        let pseudonymizer = config.trace.pseudonymizer();
        #[cfg(not(feature = "pii-trace-layer"))]
        let pseudonymizer = Pseudonymizer::random();
        let mut wiring = Wiring {
            config,
            #[cfg(feature = "pii-trace-layer")]
            scrubber: config.trace.scrubber(pseudonymizer.clone())?,
            pseudonymizer,
            tasks: BackgroundTasks::new(),
            health: HealthRegistry::new(),
            #[cfg(feature = "ratelimit-layer")]
            rate_limits: None,
            #[cfg(feature = "auth-layer")]
            auth: None,
            redis: None,
            #[cfg(feature = "monitor-layer")]
            stats: monitor_layer::RequestStats::new(),
        };
        let layers = build_layers(&mut wiring)?;
        let redis = wiring.redis(config.uses_redis())?;
        #[cfg(feature = "timeout-retry-layer")]
        let upstreams = wiring.upstreams();
        #[cfg(feature = "flag-layer")]
        let flags = wiring.flags()?;
        #[cfg(feature = "monitor-layer")]
        wiring.health.register(wiring.stats.clone());
        #[cfg(feature = "monitor-layer")]
        let alerts = wiring.alerts();
        Ok(Guardrails {
            #[cfg(feature = "monitor-layer")]
            alerts,
            #[cfg(feature = "monitor-layer")]
            stats: wiring.stats.clone(),
            #[cfg(feature = "flag-layer")]
            flags,
            #[cfg(feature = "timeout-retry-layer")]
            upstreams,
            redis,
            #[cfg(feature = "auth-layer")]
            auth: wiring.auth()?,
            layer: GuardrailsLayer { layers },
            tasks: wiring.tasks,
            health: wiring.health,
            pseudonymizer: wiring.pseudonymizer,
            #[cfg(feature = "pii-trace-layer")]
            scrubber: wiring.scrubber,
        })
    }
}

impl<S> Layer<S> for GuardrailsLayer
where
    Layers: Layer<S>,
{
    type Service = <Layers as Layer<S>>::Service;

    fn layer(&self, inner: S) -> Self::Service {
        self.layers.layer(inner)
    }
}

/// The environment's variables that are UTF-8 (`std::env::vars` panics on
/// any that is not; none of ours can be).
pub(crate) fn env_vars() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
}
