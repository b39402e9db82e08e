//! Throttling of failed logins, per account and per client IP, on the same GCRA rate limits
//! as the per-org request rate ([`runwarden_ratelimit`], table `rate_limits`), so every
//! instance sees the same state and a block always ends by itself: an attacker cannot lock
//! a victim out for good, only slow their own guessing to the quota's rate.
//!
//! - Every failed login (wrong password *or* unknown email, alike) consumes one cell on its
//!   account key and one on its IP key ([`record_failure`]).
//! - Before a password is checked, login peeks both keys ([`admit`]); if one more failure
//!   would be refused on either, the attempt is answered 429 with `Retry-After` and the
//!   password is not checked at all (not even a right one).
//! - A successful login forgets the account's failures ([`forget_account`]), not the IP's:
//!   a stuffing source cannot clear its record by logging into its own account.
//!
//! Keys never hold an email in clear: `login:account:<hex SHA-256 of the normalized email>`
//! and `login:ip:<ip>`.
//!
//! The peek and the consume are separate statements, so attempts already past the peek when
//! the limit is reached are still checked (at most as many as run at once; the password
//! hashing pool bounds that), but the key itself never goes past its limit.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use aws_lc_rs::digest;
use runwarden_ratelimit::{Decision, Quota};
use sqlx::PgPool;

use crate::email::Email;

/// Five failures on one account at once, then one more every 3 minutes.
pub const ACCOUNT: Quota = Quota {
    per_period: 5,
    period: Duration::from_secs(15 * 60),
    burst: 5,
};

/// A stuffing source trying many accounts: 50 failures at once, then one every 18 s.
pub const IP: Quota = Quota {
    per_period: 50,
    period: Duration::from_secs(15 * 60),
    burst: 50,
};

/// The `RateLimit-Policy` names a 429 reports.
pub const ACCOUNT_POLICY: &str = "login-account";
pub const IP_POLICY: &str = "login-ip";

/// The rate-limit keys of one login attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub account: String,
    /// None when the client's IP is unknown.
    pub ip: Option<String>,
}

impl Keys {
    pub fn new(email: &Email, ip: Option<IpAddr>) -> Self {
        Self {
            account: account_key(email),
            ip: ip.map(ip_key),
        }
    }
}

/// `login:account:<hex SHA-256 of the normalized email>`: the database never holds the
/// address itself.
pub fn account_key(email: &Email) -> String {
    let hash = digest::digest(&digest::SHA256, email.as_str().as_bytes());
    let mut key = String::with_capacity(14 + 64);
    key.push_str("login:account:");
    for byte in hash.as_ref() {
        let _ = write!(key, "{byte:02x}");
    }
    key
}

/// `login:ip:<ip>`, an IPv4-mapped IPv6 address written as the IPv4 address it is.
pub fn ip_key(ip: IpAddr) -> String {
    format!("login:ip:{}", ip.to_canonical())
}

/// A login refused before its password was checked: which limit, and its decision. A plain
/// value: the edge answers it 429 with `Retry-After` and the `RateLimit` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub policy: &'static str,
    pub quota: Quota,
    pub decision: Decision,
}

/// What [`admit`] decided about an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The password may be checked. `account_has_failures`: the account key has failures
    /// still counting, which a success should forget.
    Admitted { account_has_failures: bool },
    /// Refused on the account key or the IP key (the longer wait of the two when both
    /// refuse).
    Throttled(Throttled),
}

/// Peeks the account key and the IP key without consuming anything.
pub async fn admit(pool: &PgPool, keys: &Keys) -> Result<Admission, sqlx::Error> {
    let account = runwarden_ratelimit::peek(pool, &keys.account, ACCOUNT).await?;
    let ip = match &keys.ip {
        Some(key) => Some(runwarden_ratelimit::peek(pool, key, IP).await?),
        None => None,
    };
    let refusals = [
        Some(Throttled {
            policy: ACCOUNT_POLICY,
            quota: ACCOUNT,
            decision: account,
        }),
        ip.map(|decision| Throttled {
            policy: IP_POLICY,
            quota: IP,
            decision,
        }),
    ];
    Ok(
        match refusals
            .into_iter()
            .flatten()
            .filter(|t| !t.decision.allowed)
            .max_by_key(|t| t.decision.retry_after)
        {
            Some(longest) => Admission::Throttled(longest),
            None => Admission::Admitted {
                account_has_failures: !account.reset_after.is_zero(),
            },
        },
    )
}

/// Counts one failed login on the account key and the IP key. A key already at its limit
/// (attempts that raced past [`admit`]) stays at it.
pub async fn record_failure(pool: &PgPool, keys: &Keys) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    runwarden_ratelimit::check(&mut *conn, &keys.account, ACCOUNT).await?;
    if let Some(ip) = &keys.ip {
        runwarden_ratelimit::check(&mut *conn, ip, IP).await?;
    }
    Ok(())
}

/// Forgets the account's failures after a successful login. The IP key is left alone.
pub async fn forget_account(conn: &mut sqlx::PgConnection, keys: &Keys) -> Result<(), sqlx::Error> {
    runwarden_ratelimit::reset(conn, &keys.account).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_keys_hash_the_normalized_email() {
        let key = account_key(&Email::parse("  A@Example.COM ").unwrap());
        assert_eq!(
            key,
            "login:account:08168cd80dfd534ab0f10af10f1303fe00af2d43ab5c1432360d137f8197e17a"
        );
        assert_eq!(key, account_key(&Email::parse("a@example.com").unwrap()));
        assert!(!key.contains("example"));
        assert_ne!(key, account_key(&Email::parse("b@example.com").unwrap()));
    }

    #[test]
    fn ip_keys_are_canonical() {
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(ip_key(v4), "login:ip:203.0.113.7");
        assert_eq!(ip_key(mapped), ip_key(v4));
        assert_eq!(ip_key(v6), "login:ip:2001:db8::1");
        let email = Email::parse("a@example.com").unwrap();
        assert_eq!(Keys::new(&email, None).ip, None);
        assert_eq!(
            Keys::new(&email, Some(v4)).ip.as_deref(),
            Some("login:ip:203.0.113.7")
        );
    }

    #[test]
    fn the_account_quota_allows_five_then_one_every_three_minutes() {
        assert_eq!(ACCOUNT.interval_us(), 180_000_000);
        let mut tat = None;
        for _ in 0..5 {
            let (ok, next) = ACCOUNT.step(tat);
            assert!(ok);
            tat = Some(next);
        }
        let (ok, after) = ACCOUNT.peek(tat);
        assert!(!ok);
        let refused = ACCOUNT.decision(ok, after);
        assert_eq!(refused.retry_after_secs(), Some(180));
        // Three minutes later, exactly one more failure is allowed.
        let later = tat.map(|t| t - 180_000_000);
        let (ok, next) = ACCOUNT.step(later);
        assert!(ok);
        assert!(!ACCOUNT.peek(Some(next)).0);
    }

    #[test]
    fn the_ip_quota_allows_fifty_then_one_every_eighteen_seconds() {
        assert_eq!(IP.interval_us(), 18_000_000);
        let mut tat = None;
        for _ in 0..50 {
            let (ok, next) = IP.step(tat);
            assert!(ok);
            tat = Some(next);
        }
        let (ok, after) = IP.peek(tat);
        assert!(!ok);
        assert_eq!(IP.decision(ok, after).retry_after_secs(), Some(18));
    }
}
