//! Throttling of failed sign-ins, per account and per client IP, stored in the database so
//! every instance sees the same counts. Delays grow with each failure past the threshold
//! and always end: an attacker cannot lock a victim out for good.

use std::net::IpAddr;

use sqlx::PgConnection;

use crate::email::Email;
use crate::error::AuthResult;

#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub threshold: i32,
    pub base_delay_secs: f64,
    pub max_delay_secs: f64,
}

/// Five wrong passwords on one account, then 30 s, doubling up to 15 minutes.
pub const ACCOUNT: Rule = Rule {
    threshold: 5,
    base_delay_secs: 30.0,
    max_delay_secs: 900.0,
};
/// A stuffing source trying many accounts: 50 failures, then 60 s, doubling up to 1 hour.
pub const IP: Rule = Rule {
    threshold: 50,
    base_delay_secs: 60.0,
    max_delay_secs: 3600.0,
};
/// Failures are counted in this window.
const WINDOW_SECS: f64 = 900.0;

pub fn account_key(email: &Email) -> String {
    format!("account:{email}")
}

pub fn ip_key(ip: Option<IpAddr>) -> Option<String> {
    ip.map(|ip| format!("ip:{ip}"))
}

pub async fn record_failure(conn: &mut PgConnection, key: &str, rule: Rule) -> AuthResult<()> {
    // One atomic upsert: the row lock of ON CONFLICT serializes concurrent failures.
    sqlx::query(
        "INSERT INTO auth_throttle AS t (key, failures, window_started_at, blocked_until)
         VALUES ($1, 1, now(), CASE WHEN 1 >= $2 THEN now() + make_interval(secs => $3) END)
         ON CONFLICT (key) DO UPDATE SET
            failures = CASE WHEN t.window_started_at < now() - make_interval(secs => $5)
                            THEN 1 ELSE t.failures + 1 END,
            window_started_at = CASE WHEN t.window_started_at < now() - make_interval(secs => $5)
                                     THEN now() ELSE t.window_started_at END,
            blocked_until = CASE
                WHEN t.window_started_at >= now() - make_interval(secs => $5) AND t.failures + 1 >= $2
                THEN now() + make_interval(secs => least($4, $3 * power(2, t.failures + 1 - $2)))
                ELSE t.blocked_until END,
            updated_at = now()",
    )
    .bind(key)
    .bind(rule.threshold)
    .bind(rule.base_delay_secs)
    .bind(rule.max_delay_secs)
    .bind(WINDOW_SECS)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn clear(conn: &mut PgConnection, key: &str) -> AuthResult<()> {
    sqlx::query("DELETE FROM auth_throttle WHERE key = $1")
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}
