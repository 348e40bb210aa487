//! Signature header formats: what is signed and where the signature is.

use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName};
use sha2::Sha256;

use super::WebhookError;

pub(super) type HmacSha256 = Hmac<Sha256>;

const MAX_SIGNATURES: usize = 16;

/// The signed parts of a delivery, read from its headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignatureHeader {
    /// The signed timestamp (Unix seconds), if the scheme has one.
    pub timestamp: Option<i64>,
    /// Candidate signatures; one must match.
    pub signatures: Vec<Vec<u8>>,
}

/// A webhook signature header format.
pub trait SignatureScheme: Send + Sync + 'static {
    /// Reads the timestamp and signatures from the headers.
    fn read(&self, headers: &HeaderMap) -> Result<SignatureHeader, WebhookError>;
    /// Feeds the signed content into `mac`.
    fn signed_content(&self, timestamp: Option<i64>, body: &[u8], mac: &mut HmacSha256);
    /// Whether deliveries carry a signed timestamp (then a replay is only
    /// possible within the tolerance). Default `true`.
    fn has_timestamp(&self) -> bool {
        true
    }
}

fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<&'a str, WebhookError> {
    guardrail_core::single_header(headers, name)
        .map_err(|_| WebhookError::MalformedSignature)?
        .ok_or(WebhookError::MissingSignature)?
        .to_str()
        .map_err(|_| WebhookError::MalformedSignature)
}

fn sha256_hex(text: &str) -> Result<Vec<u8>, WebhookError> {
    let bytes = hex::decode(text.trim()).map_err(|_| WebhookError::MalformedSignature)?;
    if bytes.len() == 32 {
        Ok(bytes)
    } else {
        Err(WebhookError::MalformedSignature)
    }
}

/// Stripe's `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`, over
/// `"{t}.{body}"`. Other schemes (`v0`) are ignored.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stripe;

impl SignatureScheme for Stripe {
    fn read(&self, headers: &HeaderMap) -> Result<SignatureHeader, WebhookError> {
        let value = single(headers, &HeaderName::from_static("stripe-signature"))?;
        let mut out = SignatureHeader::default();
        for item in value.split(',') {
            let (key, val) = item
                .trim()
                .split_once('=')
                .ok_or(WebhookError::MalformedSignature)?;
            match key {
                "t" if out.timestamp.is_none() => {
                    out.timestamp =
                        Some(val.parse().map_err(|_| WebhookError::MalformedSignature)?);
                }
                "t" => return Err(WebhookError::MalformedSignature),
                "v1" if out.signatures.len() < MAX_SIGNATURES => {
                    out.signatures.push(sha256_hex(val)?)
                }
                "v1" => return Err(WebhookError::MalformedSignature),
                _ => {}
            }
        }
        if out.timestamp.is_none() || out.signatures.is_empty() {
            return Err(WebhookError::MalformedSignature);
        }
        Ok(out)
    }

    fn signed_content(&self, timestamp: Option<i64>, body: &[u8], mac: &mut HmacSha256) {
        mac.update(timestamp.unwrap_or_default().to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
    }
}

/// GitHub's `X-Hub-Signature-256: sha256=<hex>`, over the body. GitHub
/// signs no timestamp, so only the replay cache protects against replays.
#[derive(Clone, Copy, Debug, Default)]
pub struct GitHub;

impl SignatureScheme for GitHub {
    fn has_timestamp(&self) -> bool {
        false
    }

    fn read(&self, headers: &HeaderMap) -> Result<SignatureHeader, WebhookError> {
        let value = single(headers, &HeaderName::from_static("x-hub-signature-256"))?;
        let hex = value
            .strip_prefix("sha256=")
            .ok_or(WebhookError::MalformedSignature)?;
        Ok(SignatureHeader {
            timestamp: None,
            signatures: vec![sha256_hex(hex)?],
        })
    }

    fn signed_content(&self, _timestamp: Option<i64>, body: &[u8], mac: &mut HmacSha256) {
        mac.update(body);
    }
}
