//! The store as an OpenFeature provider (cargo feature `openfeature`), for
//! services that evaluate flags through the `open-feature` SDK.
//!
//! # Example
//!
//! ```
//! use flag_layer::{Flag, FlagStore, openfeature::FlagProvider};
//! use open_feature::{EvaluationContext, EvaluationReason, provider::FeatureProvider};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = FlagStore::builder(vec![
//!     Flag::new("ai_recommendations").enabled(true).target(["staff-1"]),
//! ])
//! .build()
//! .unwrap();
//! let provider = FlagProvider::new(store);
//! let staff = EvaluationContext::default().with_targeting_key("staff-1");
//! let details = provider.resolve_bool_value("ai_recommendations", &staff).await.unwrap();
//! assert!(details.value);
//! assert_eq!(details.reason, Some(EvaluationReason::TargetingMatch));
//! // Unknown: an error the SDK turns into the caller's default.
//! assert!(provider.resolve_bool_value("ai_unknown", &staff).await.is_err());
//! # }
//! ```

use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationError, EvaluationErrorCode,
    EvaluationReason, EvaluationResult, StructValue, async_trait,
    provider::{FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails},
};

use crate::{FlagStore, Reason, store::EvaluationContext as Context};

/// The targeting key is the user id; `sessionId` / `session_id`,
/// `orgId` / `org_id` and any other string field are read from the custom
/// fields.
impl Context for EvaluationContext {
    fn user_id(&self) -> Option<&str> {
        self.targeting_key.as_deref()
    }

    fn session_id(&self) -> Option<&str> {
        field(self, "sessionId").or_else(|| field(self, "session_id"))
    }

    fn org_id(&self) -> Option<&str> {
        field(self, "orgId").or_else(|| field(self, "org_id"))
    }

    fn property(&self, key: &str) -> Option<&str> {
        field(self, key)
    }
}

fn field<'a>(ctx: &'a EvaluationContext, key: &str) -> Option<&'a str> {
    ctx.custom_fields
        .get(key)
        .and_then(EvaluationContextFieldValue::as_str)
}

/// A [`FlagStore`] as an OpenFeature `FeatureProvider`: boolean flags,
/// each resolution with its reason (`STATIC`, `TARGETING_MATCH`, `SPLIT`,
/// `DISABLED`, `DEFAULT`) and variant (`on` / `off`); an unknown flag is
/// `FLAG_NOT_FOUND`, any other type `TYPE_MISMATCH`. Its status is `STALE`
/// while the store's source (Redis) can't be reached.
#[derive(Debug, Clone)]
pub struct FlagProvider {
    store: FlagStore,
    metadata: ProviderMetadata,
}

impl FlagProvider {
    /// The provider of `store`, named `guardrails-flags`.
    pub fn new(store: FlagStore) -> Self {
        Self {
            store,
            metadata: ProviderMetadata::new("guardrails-flags"),
        }
    }
}

fn mismatch<T>(flag: &str) -> EvaluationResult<ResolutionDetails<T>> {
    Err(EvaluationError::builder()
        .code(EvaluationErrorCode::TypeMismatch)
        .message(format!("{flag} is a boolean flag"))
        .build())
}

#[async_trait]
impl FeatureProvider for FlagProvider {
    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    fn status(&self) -> ProviderStatus {
        if self.store.is_stale() {
            ProviderStatus::STALE
        } else {
            ProviderStatus::Ready
        }
    }

    async fn resolve_bool_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        let evaluation = self.store.evaluate(flag_key, evaluation_context);
        let reason = match evaluation.reason {
            Reason::Static => EvaluationReason::Static,
            Reason::TargetingMatch => EvaluationReason::TargetingMatch,
            Reason::Split => EvaluationReason::Split,
            Reason::Disabled => EvaluationReason::Disabled,
            Reason::Default => EvaluationReason::Default,
            Reason::Error => {
                return Err(EvaluationError::builder()
                    .code(EvaluationErrorCode::FlagNotFound)
                    .message(format!("no flag named {flag_key}"))
                    .build());
            }
        };
        Ok(ResolutionDetails::builder()
            .value(evaluation.enabled)
            .variant(if evaluation.enabled { "on" } else { "off" })
            .reason(reason)
            .build())
    }

    async fn resolve_int_value(
        &self,
        flag_key: &str,
        _: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        mismatch(flag_key)
    }

    async fn resolve_float_value(
        &self,
        flag_key: &str,
        _: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        mismatch(flag_key)
    }

    async fn resolve_string_value(
        &self,
        flag_key: &str,
        _: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        mismatch(flag_key)
    }

    async fn resolve_struct_value(
        &self,
        flag_key: &str,
        _: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        mismatch(flag_key)
    }
}

#[cfg(test)]
mod tests {
    use guardrails_testkit::capture;
    use open_feature::OpenFeature;

    use super::*;
    use crate::{Flag, bucket};

    #[tokio::test]
    async fn the_sdk_resolves_through_the_store_with_reasons_and_defaults() {
        let (_guard, _logs) = capture::json();
        let store = FlagStore::builder(vec![
            Flag::new("ai_recommendations")
                .enabled(true)
                .rollout(50)
                .sticky_on(crate::Stickiness::Org),
            Flag::new("ai_killed").enabled(false).rollout(100),
        ])
        .build()
        .unwrap();
        let mut api = OpenFeature::singleton_mut().await;
        api.set_provider(FlagProvider::new(store)).await;
        let client = api.create_client();
        drop(api);

        // Bucketed by the org from the custom fields, as the store does.
        let org = (0..)
            .map(|i| format!("org-{i}"))
            .find(|o| bucket("ai_recommendations", o) <= 50)
            .unwrap();
        let ctx = EvaluationContext::default()
            .with_targeting_key("user-1")
            .with_custom_field("orgId", org.as_str());
        let details = client
            .get_bool_details("ai_recommendations", Some(&ctx), None)
            .await
            .unwrap();
        assert!(details.value);
        assert_eq!(details.reason, Some(EvaluationReason::Split));
        assert_eq!(details.variant.as_deref(), Some("on"));

        let killed = client
            .get_bool_details("ai_killed", Some(&ctx), None)
            .await
            .unwrap();
        assert_eq!(
            (killed.value, killed.reason),
            (false, Some(EvaluationReason::Disabled))
        );

        // An unknown flag or another type is an error; the caller's default applies.
        let unknown = client.get_bool_value("ai_unknown", Some(&ctx), None).await;
        assert_eq!(unknown.unwrap_err().code, EvaluationErrorCode::FlagNotFound);
        let typed = client
            .get_int_value("ai_recommendations", Some(&ctx), None)
            .await;
        assert_eq!(typed.unwrap_err().code, EvaluationErrorCode::TypeMismatch);
    }
}
