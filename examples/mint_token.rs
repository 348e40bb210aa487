//! A development token tool: prints an HS256 access token that the example
//! service (`guarded_service`) accepts, signed with `GUARDRAILS_JWT_SECRET`.
//!
//! ```sh
//! export GUARDRAILS_JWT_SECRET=$(head -c 48 /dev/urandom | base64)
//! TOKEN=$(cargo run -q --release --example mint_token -- --sub user-1)
//! ADMIN=$(cargo run -q --release --example mint_token -- --sub admin-1 --mfa --admin)
//! ```
//!
//! Options: `--sub <id>` (default `user-1`), `--mfa` (a second factor
//! just now: `aal2`), `--admin` (the `admin` role in `app_metadata.roles`),
//! `--ttl <duration>` (default `10m`), `--aud <audience>` (default
//! `authenticated`), `--iss <issuer>` (default: none, as in the example's
//! development config). The claims are Supabase-shaped, like the tokens the
//! example is configured for. For development only: a real service gets
//! its tokens from its identity provider.

use std::{
    process::ExitCode,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

/// What to put in the token.
#[derive(Debug)]
struct Options {
    sub: String,
    mfa: bool,
    admin: bool,
    ttl: Duration,
    aud: String,
    iss: Option<String>,
}

const USAGE: &str = "usage: mint_token [--sub ID] [--mfa] [--admin] [--ttl 10m] [--aud authenticated] [--iss URL]\n\
                     signs with GUARDRAILS_JWT_SECRET (HS256)";

fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        sub: "user-1".into(),
        mfa: false,
        admin: false,
        ttl: Duration::from_secs(600),
        aud: "authenticated".into(),
        iss: None,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .filter(|v| !v.starts_with("--"))
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--sub" => options.sub = value("--sub")?,
            "--mfa" => options.mfa = true,
            "--admin" => options.admin = true,
            "--ttl" => {
                let raw = value("--ttl")?;
                options.ttl = humantime::parse_duration(&raw)
                    .map_err(|e| format!("--ttl {raw}: {e} (e.g. 10m, 1h)"))?;
            }
            "--aud" => options.aud = value("--aud")?,
            "--iss" => options.iss = Some(value("--iss")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if options.sub.is_empty() {
        return Err("--sub can't be empty".into());
    }
    Ok(options)
}

/// Supabase-shaped claims for `options`, issued at `now` (seconds).
fn claims(options: &Options, now: u64) -> serde_json::Value {
    let mut methods = vec![json!({"method": "password", "timestamp": now})];
    if options.mfa {
        methods.push(json!({"method": "totp", "timestamp": now}));
    }
    let mut claims = json!({
        "sub": options.sub,
        "aud": options.aud,
        "iat": now,
        "exp": now.saturating_add(options.ttl.as_secs()),
        "role": "authenticated",
        "aal": if options.mfa { "aal2" } else { "aal1" },
        "amr": methods,
        "session_id": format!("dev-{now}"),
    });
    if options.admin {
        claims["app_metadata"] = json!({"roles": ["admin"]});
    }
    if let Some(iss) = &options.iss {
        claims["iss"] = json!(iss);
    }
    claims
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("mint_token: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let Ok(secret) = std::env::var("GUARDRAILS_JWT_SECRET") else {
        eprintln!("mint_token: set GUARDRAILS_JWT_SECRET to the secret the service uses");
        return ExitCode::from(2);
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match encode(
        &Header::new(Algorithm::HS256),
        &claims(&options, now),
        &EncodingKey::from_secret(secret.as_bytes()),
    ) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("mint_token: {err}");
            ExitCode::FAILURE
        }
    }
}
