//! Throttling of failed logins that cannot be turned into a lockout (AUTH-05, AUTH-06).
//!
//! Follows the OWASP Authentication Cheat Sheet ("Protect against automated attacks": limit
//! failed attempts without letting an attacker lock the account) and ASVS 5.0 V6.3.1
//! ("controls to prevent ... brute force ... while not allowing an attacker to lock the
//! account"). Every limit is a GCRA key in `rate_limits` ([`runwarden_ratelimit`]), so every
//! instance sees the same state and every block ends by itself.
//!
//! Three kinds of keys, all counting *failed* logins (a wrong password and an unknown email
//! alike, [`record_failure`]):
//!
//! - **(account, client IP)**, [`CLIENT`] and [`CLIENT_DAY`]: 5 failures, then one every 3
//!   minutes, and at most 20 a day (then one every 72 minutes): the `Retry-After` a failing
//!   client sees grows from 3 minutes to 72. Only that client is refused: the owner on
//!   another address is not.
//! - **client IP**, [`IP`]: a stuffing source trying many accounts, 50 failures then one
//!   every 18 s.
//! - **account**, [`ACCOUNT_CEILING`]: 100 failures across all addresses, then one every 9
//!   s. It never refuses on its own: while it is exceeded, a client whose (account, IP) keys
//!   hold no failure is still admitted but *slowed* (every admitted attempt on that account
//!   waits [`SLOWED_BY`] before it is answered, right password or not), and a client that
//!   has been failing on that account is refused until the ceiling has room again.
//!
//! Before a password is checked, login peeks the keys ([`admit`], consuming nothing); a
//! refused attempt is answered 429 with `Retry-After` and its password is not checked at
//! all (not even a right one). A successful login forgets that client's (account, IP) keys
//! ([`forget_client`]), not the IP key (a stuffing source cannot clear its record by
//! logging into its own account) and not the account ceiling (the attack on it goes on).
//!
//! Keys never hold an email in clear: `login:account:<h>`, `login:client:<h>:<ip>`,
//! `login:client-day:<h>:<ip>` (`<h>` the hex SHA-256 of the normalized email, `<ip>`
//! `unknown` when the client's address is not known) and `login:ip:<ip>`.
//!
//! The peek and the consume are separate statements, so attempts already past the peek when
//! the limit is reached are still checked (at most as many as run at once; the password
//! hashing pool bounds that), but the keys themselves never go past their limits.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use aws_lc_rs::digest;
use runwarden_ratelimit::{Decision, Quota};
use sqlx::PgPool;

use crate::email::Email;

/// One client failing on one account: five failures at once, then one every 3 minutes.
pub const CLIENT: Quota = Quota {
    per_period: 5,
    period: Duration::from_secs(15 * 60),
    burst: 5,
};

/// The same client over a day: 20 failures, then one every 72 minutes.
pub const CLIENT_DAY: Quota = Quota {
    per_period: 20,
    period: Duration::from_secs(24 * 60 * 60),
    burst: 20,
};

/// A stuffing source trying many accounts: 50 failures at once, then one every 18 s.
pub const IP: Quota = Quota {
    per_period: 50,
    period: Duration::from_secs(15 * 60),
    burst: 50,
};

/// Failures on one account from all addresses together before its logins are slowed (and
/// clients that have been failing on it refused): 100, then one every 9 s.
pub const ACCOUNT_CEILING: Quota = Quota {
    per_period: 100,
    period: Duration::from_secs(15 * 60),
    burst: 100,
};

/// How long an admitted attempt on an account past its ceiling waits before its answer.
pub const SLOWED_BY: Duration = Duration::from_secs(1);

/// The `RateLimit-Policy` names a 429 reports.
pub const CLIENT_POLICY: &str = "login-client";
pub const CLIENT_DAY_POLICY: &str = "login-client-day";
pub const IP_POLICY: &str = "login-ip";
pub const ACCOUNT_POLICY: &str = "login-account";

/// The rate-limit keys of one login attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// The account ceiling.
    pub account: String,
    /// (account, client IP), short window.
    pub client: String,
    /// (account, client IP), one day.
    pub client_day: String,
    /// None when the client's IP is unknown.
    pub ip: Option<String>,
}

impl Keys {
    pub fn new(email: &Email, ip: Option<IpAddr>) -> Self {
        let hash = email_hash(email);
        let client_ip = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_canonical().to_string());
        Self {
            account: format!("login:account:{hash}"),
            client: format!("login:client:{hash}:{client_ip}"),
            client_day: format!("login:client-day:{hash}:{client_ip}"),
            ip: ip.map(ip_key),
        }
    }
}

/// The hex SHA-256 of the normalized email: the database never holds the address itself.
fn email_hash(email: &Email) -> String {
    let hash = digest::digest(&digest::SHA256, email.as_str().as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in hash.as_ref() {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// `login:account:<hex SHA-256 of the normalized email>`.
pub fn account_key(email: &Email) -> String {
    format!("login:account:{}", email_hash(email))
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
    /// The password may be checked.
    Admitted {
        /// The client's (account, IP) keys hold failures a success should forget.
        client_has_failures: bool,
        /// The account is past its ceiling: answer only after [`SLOWED_BY`].
        slowed: bool,
    },
    /// Refused (the longest wait of the limits that refuse).
    Throttled(Throttled),
}

/// Peeks the keys of an attempt without consuming anything.
pub async fn admit(pool: &PgPool, keys: &Keys) -> Result<Admission, sqlx::Error> {
    let client = runwarden_ratelimit::peek(pool, &keys.client, CLIENT).await?;
    let client_day = runwarden_ratelimit::peek(pool, &keys.client_day, CLIENT_DAY).await?;
    let ip = match &keys.ip {
        Some(key) => Some(runwarden_ratelimit::peek(pool, key, IP).await?),
        None => None,
    };
    let account = runwarden_ratelimit::peek(pool, &keys.account, ACCOUNT_CEILING).await?;
    Ok(decide(client, client_day, ip, account))
}

/// The pure decision of [`admit`] from the four peeks.
pub fn decide(
    client: Decision,
    client_day: Decision,
    ip: Option<Decision>,
    account: Decision,
) -> Admission {
    let client_has_failures = !client.reset_after.is_zero() || !client_day.reset_after.is_zero();
    let slowed = !account.allowed;
    let refusals = [
        Some(Throttled {
            policy: CLIENT_POLICY,
            quota: CLIENT,
            decision: client,
        }),
        Some(Throttled {
            policy: CLIENT_DAY_POLICY,
            quota: CLIENT_DAY,
            decision: client_day,
        }),
        ip.map(|decision| Throttled {
            policy: IP_POLICY,
            quota: IP,
            decision,
        }),
        // The ceiling refuses only a client that has been failing on this account.
        (slowed && client_has_failures).then_some(Throttled {
            policy: ACCOUNT_POLICY,
            quota: ACCOUNT_CEILING,
            decision: account,
        }),
    ];
    match refusals
        .into_iter()
        .flatten()
        .filter(|t| !t.decision.allowed)
        .max_by_key(|t| t.decision.retry_after)
    {
        Some(longest) => Admission::Throttled(longest),
        None => Admission::Admitted {
            client_has_failures,
            slowed,
        },
    }
}

/// Counts one failed login on every key of the attempt. A key already at its limit
/// (attempts that raced past [`admit`], or the account ceiling) stays at it.
pub async fn record_failure(pool: &PgPool, keys: &Keys) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    runwarden_ratelimit::check(&mut *conn, &keys.client, CLIENT).await?;
    runwarden_ratelimit::check(&mut *conn, &keys.client_day, CLIENT_DAY).await?;
    if let Some(ip) = &keys.ip {
        runwarden_ratelimit::check(&mut *conn, ip, IP).await?;
    }
    runwarden_ratelimit::check(&mut *conn, &keys.account, ACCOUNT_CEILING).await?;
    Ok(())
}

/// Forgets the client's failures on the account after a successful login. The IP key and
/// the account ceiling are left alone.
pub async fn forget_client(conn: &mut sqlx::PgConnection, keys: &Keys) -> Result<(), sqlx::Error> {
    runwarden_ratelimit::reset(&mut *conn, &keys.client).await?;
    runwarden_ratelimit::reset(&mut *conn, &keys.client_day).await?;
    Ok(())
}

/// Forgets the account's failures after a password reset: the owner proved they read the
/// address's mail, so the account ceiling and this client's failures start over. Other
/// clients' failures (and the IP keys) still count.
pub async fn forget_after_reset(
    conn: &mut sqlx::PgConnection,
    keys: &Keys,
) -> Result<(), sqlx::Error> {
    forget_client(&mut *conn, keys).await?;
    runwarden_ratelimit::reset(&mut *conn, &keys.account).await?;
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
        let hash = "08168cd80dfd534ab0f10af10f1303fe00af2d43ab5c1432360d137f8197e17a";
        let unknown = Keys::new(&email, None);
        assert_eq!(unknown.ip, None);
        assert_eq!(unknown.client, format!("login:client:{hash}:unknown"));
        let known = Keys::new(&email, Some(mapped));
        assert_eq!(known.ip.as_deref(), Some("login:ip:203.0.113.7"));
        assert_eq!(known.account, format!("login:account:{hash}"));
        assert_eq!(known.client, format!("login:client:{hash}:203.0.113.7"));
        assert_eq!(
            known.client_day,
            format!("login:client-day:{hash}:203.0.113.7")
        );
    }

    #[test]
    fn the_client_quota_allows_five_then_one_every_three_minutes() {
        assert_eq!(CLIENT.interval_us(), 180_000_000);
        let mut tat = None;
        for _ in 0..5 {
            let (ok, next) = CLIENT.step(tat);
            assert!(ok);
            tat = Some(next);
        }
        let (ok, after) = CLIENT.peek(tat);
        assert!(!ok);
        let refused = CLIENT.decision(ok, after);
        assert_eq!(refused.retry_after_secs(), Some(180));
        // Three minutes later, exactly one more failure is allowed.
        let later = tat.map(|t| t - 180_000_000);
        let (ok, next) = CLIENT.step(later);
        assert!(ok);
        assert!(!CLIENT.peek(Some(next)).0);
    }

    #[test]
    fn the_client_day_quota_makes_the_wait_grow_to_72_minutes() {
        assert_eq!(CLIENT_DAY.interval_us(), 72 * 60 * 1_000_000);
        let mut tat = None;
        for _ in 0..20 {
            let (ok, next) = CLIENT_DAY.step(tat);
            assert!(ok);
            tat = Some(next);
        }
        let (ok, after) = CLIENT_DAY.peek(tat);
        assert!(!ok);
        assert_eq!(
            CLIENT_DAY.decision(ok, after).retry_after_secs(),
            Some(72 * 60)
        );
    }

    #[test]
    fn the_account_ceiling_allows_a_hundred_then_one_every_nine_seconds() {
        assert_eq!(ACCOUNT_CEILING.interval_us(), 9_000_000);
        assert_eq!(ACCOUNT_CEILING.burst, 100);
    }

    fn fresh(quota: Quota) -> Decision {
        quota.decision(true, 0)
    }

    fn failing(quota: Quota) -> Decision {
        quota.decision(true, quota.interval_us())
    }

    fn exhausted(quota: Quota) -> Decision {
        quota.decision(false, quota.tolerance_us())
    }

    #[test]
    fn the_ceiling_slows_a_fresh_client_and_refuses_a_failing_one() {
        // Under the ceiling: admitted, not slowed, whatever the client's history.
        assert_eq!(
            decide(
                fresh(CLIENT),
                fresh(CLIENT_DAY),
                None,
                failing(ACCOUNT_CEILING)
            ),
            Admission::Admitted {
                client_has_failures: false,
                slowed: false
            }
        );
        assert_eq!(
            decide(
                failing(CLIENT),
                failing(CLIENT_DAY),
                Some(fresh(IP)),
                fresh(ACCOUNT_CEILING)
            ),
            Admission::Admitted {
                client_has_failures: true,
                slowed: false
            }
        );
        // Past the ceiling: a client without failures is admitted, slowed; never refused.
        assert_eq!(
            decide(
                fresh(CLIENT),
                fresh(CLIENT_DAY),
                Some(fresh(IP)),
                exhausted(ACCOUNT_CEILING)
            ),
            Admission::Admitted {
                client_has_failures: false,
                slowed: true
            }
        );
        // ... and a client that has been failing is refused by the ceiling.
        let Admission::Throttled(t) = decide(
            failing(CLIENT),
            failing(CLIENT_DAY),
            Some(fresh(IP)),
            exhausted(ACCOUNT_CEILING),
        ) else {
            panic!("a failing client is refused past the ceiling");
        };
        assert_eq!(t.policy, ACCOUNT_POLICY);
        assert_eq!(t.decision.retry_after_secs(), Some(9));
        // The client's own limit refuses with the longest wait of those that refuse.
        let Admission::Throttled(t) = decide(
            exhausted(CLIENT),
            exhausted(CLIENT_DAY),
            Some(fresh(IP)),
            exhausted(ACCOUNT_CEILING),
        ) else {
            panic!("refused");
        };
        assert_eq!(t.policy, CLIENT_DAY_POLICY);
        let Admission::Throttled(t) = decide(
            fresh(CLIENT),
            fresh(CLIENT_DAY),
            Some(exhausted(IP)),
            fresh(ACCOUNT_CEILING),
        ) else {
            panic!("refused");
        };
        assert_eq!(t.policy, IP_POLICY);
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
