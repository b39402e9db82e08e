//! Abuse limits of sign-up and of the mail it sends, on the shared GCRA rate limits
//! ([`runwarden_ratelimit`], like [`crate::throttle`]):
//!
//! - sign-ups per client IP ([`SIGNUP_IP`]): refused 429 `signup_rate_limited`;
//! - verification resends per client IP ([`RESEND_IP`]): refused 429 `resend_rate_limited`;
//! - mails per address ([`MAIL_ADDRESS`]): sign-up notices, verification links and resends
//!   to one address. The key is the address string, whether or not an account has it, and
//!   its refusal is silent: the request still answers 202 and sends nothing more, so the
//!   limit tells nothing about the address (it is never a 429).
//!
//! Keys never hold an address in clear: `mail:address:<hex SHA-256 of the normalized
//! address>`; IP keys are `signup:ip:<ip>` and `resend:ip:<ip>`. Every refusal logs one
//! `security_event` line (`signup_rate_limited`, `resend_rate_limited`, `mail_rate_limited`).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use aws_lc_rs::digest;
use runwarden_ratelimit::Quota;
use sqlx::PgConnection;

use crate::email::Email;
use crate::throttle::Throttled;

/// Ten sign-ups at once from one client IP, then one every 6 minutes.
pub const SIGNUP_IP: Quota = Quota {
    per_period: 10,
    period: Duration::from_secs(3600),
    burst: 10,
};

/// Ten resends at once from one client IP, then one every 6 minutes.
pub const RESEND_IP: Quota = Quota {
    per_period: 10,
    period: Duration::from_secs(3600),
    burst: 10,
};

/// Three mails at once to one address, then one every 20 minutes.
pub const MAIL_ADDRESS: Quota = Quota {
    per_period: 3,
    period: Duration::from_secs(3600),
    burst: 3,
};

pub const SIGNUP_IP_POLICY: &str = "signup-ip";
pub const RESEND_IP_POLICY: &str = "resend-ip";

/// `mail:address:<hex SHA-256 of the normalized address>`.
pub fn address_key(email: &Email) -> String {
    let hash = digest::digest(&digest::SHA256, email.as_str().as_bytes());
    let mut key = String::with_capacity(13 + 64);
    key.push_str("mail:address:");
    for byte in hash.as_ref() {
        let _ = write!(key, "{byte:02x}");
    }
    key
}

/// Consumes one sign-up (or resend) for `ip`; the refusal when the IP is past its quota.
/// An unknown IP is not limited here (the front door always knows it).
pub async fn admit_ip(
    conn: &mut PgConnection,
    policy: &'static str,
    quota: Quota,
    ip: Option<IpAddr>,
) -> Result<Option<Throttled>, sqlx::Error> {
    let Some(ip) = ip else { return Ok(None) };
    let prefix = if policy == SIGNUP_IP_POLICY {
        "signup"
    } else {
        "resend"
    };
    let key = format!("{prefix}:ip:{}", ip.to_canonical());
    let decision = runwarden_ratelimit::check(&mut *conn, &key, quota).await?;
    if decision.allowed {
        return Ok(None);
    }
    tracing::warn!(
        security_event = if policy == SIGNUP_IP_POLICY {
            "signup_rate_limited"
        } else {
            "resend_rate_limited"
        },
        limit = policy,
        "too many sign-ups or resends from one client; refused"
    );
    Ok(Some(Throttled {
        policy,
        quota,
        decision,
    }))
}

/// Consumes one mail to `email`; false when the address is past its quota (send nothing).
pub async fn admit_mail(conn: &mut PgConnection, email: &Email) -> Result<bool, sqlx::Error> {
    let decision =
        runwarden_ratelimit::check(&mut *conn, &address_key(email), MAIL_ADDRESS).await?;
    if !decision.allowed {
        tracing::warn!(
            security_event = "mail_rate_limited",
            "too many mails to one address; this one is not sent"
        );
    }
    Ok(decision.allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_keys_hash_the_normalized_address() {
        let key = address_key(&Email::parse(" A@Example.COM").unwrap());
        assert!(key.starts_with("mail:address:"));
        assert!(!key.contains("example"));
        assert_eq!(key, address_key(&Email::parse("a@example.com").unwrap()));
        assert_eq!(key.len(), 13 + 64);
    }

    #[test]
    fn three_mails_then_one_every_twenty_minutes() {
        assert_eq!(MAIL_ADDRESS.interval_us(), 1_200_000_000);
        assert_eq!(SIGNUP_IP.interval_us(), 360_000_000);
    }
}
