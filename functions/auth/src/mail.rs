//! Outgoing mail: a transactional outbox (`mail_outbox`) and the sender that drains it over
//! SMTP ([`lettre`]).
//!
//! What causes a mail (a sign-up, a resend, a password reset) writes it with [`enqueue`] in
//! its own transaction: when the transaction rolls back no mail goes out, when it commits
//! the mail is sent even if the relay is down right now. No request ever waits on SMTP, so a
//! request that mails costs the same whoever it mails. After the commit, the caller wakes
//! the sender ([`Mailer::wake`]); the sender also sweeps every [`SWEEP_INTERVAL`].
//!
//! The sender claims due rows with `FOR UPDATE SKIP LOCKED` (instances never send one mail
//! twice), sends each and marks it sent, clearing its body (it holds a live token); a
//! failure is retried with exponential backoff, up to [`MAX_ATTEMPTS`]. Bodies, tokens and
//! links are never logged; a mail is logged by its id only.
//!
//! Configuration: `SMTP_URL` (a secret: it may hold the relay's credentials), `MAIL_FROM`,
//! `PUBLIC_APP_URL` (the base of the links in mails). See `.env.example`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use runwarden_platform::config::{optional_secret, optional_var, parse_value, required_secret};
use runwarden_platform::{ConfigError, Environment};
use secrecy::{ExposeSecret, SecretString};
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use url::Url;
use uuid::Uuid;

use crate::email::Email;

/// The local SMTP sink that `scripts/dev` and `scripts/test` start (`scripts/lib/mail_sink.py`).
pub const DEV_SMTP_URL: &str = "smtp://127.0.0.1:2525";
pub const DEV_MAIL_FROM: &str = "Runwarden <no-reply@runwarden.localhost>";
pub const DEV_PUBLIC_APP_URL: &str = "http://localhost:8080";

/// How often the sender looks for due mail without being woken (retries, other instances).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(15);
/// A mail not sent after this many attempts stays unsent (backoff reaches an hour long
/// before; 16 attempts span about a day, the life of a verification link).
pub const MAX_ATTEMPTS: i32 = 16;
/// Mails claimed per round.
const BATCH: i64 = 20;
/// How long one SMTP conversation may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

/// Mail configuration, from the environment.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// lettre's URL form: `smtp://host:port` (plain, local sink only),
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS) or `smtps://user:pass@host:465`.
    pub smtp_url: SecretString,
    pub from: Mailbox,
    /// The base of the links in mails, e.g. `https://app.example.com`.
    pub public_app_url: Url,
}

impl MailConfig {
    /// `SMTP_URL` is required in production (a secret); development defaults to the local
    /// sink. `MAIL_FROM` and `PUBLIC_APP_URL` are required in production.
    pub fn from_env(env: Environment) -> Result<Self, ConfigError> {
        let (smtp_url, from, public) = if env.is_production() {
            (
                required_secret("SMTP_URL")?,
                runwarden_platform::config::required_var("MAIL_FROM")?,
                runwarden_platform::config::required_var("PUBLIC_APP_URL")?,
            )
        } else {
            (
                optional_secret("SMTP_URL").unwrap_or_else(|| SecretString::from(DEV_SMTP_URL)),
                optional_var("MAIL_FROM").unwrap_or_else(|| DEV_MAIL_FROM.into()),
                optional_var("PUBLIC_APP_URL").unwrap_or_else(|| DEV_PUBLIC_APP_URL.into()),
            )
        };
        // Checked now so a bad URL stops the start, not the first mail. The error names the
        // variable, never its value (it may hold a password).
        AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url.expose_secret()).map_err(|_| {
            ConfigError::Invalid {
                name: "SMTP_URL",
                reason: "not an smtp:// or smtps:// URL lettre accepts".into(),
            }
        })?;
        Ok(Self {
            smtp_url,
            from: parse_value("MAIL_FROM", &from)?,
            public_app_url: runwarden_platform::config::http_url("PUBLIC_APP_URL", &public)?,
        })
    }

    /// The local sink's settings (development and tests), with `SMTP_URL` if set.
    pub fn local() -> Self {
        Self {
            smtp_url: optional_secret("SMTP_URL")
                .unwrap_or_else(|| SecretString::from(DEV_SMTP_URL)),
            from: DEV_MAIL_FROM
                .parse()
                .expect("the development sender parses"),
            public_app_url: Url::parse(DEV_PUBLIC_APP_URL).expect("the development URL parses"),
        }
    }
}

/// What request handlers hold (in `AppState`): the links' base, and the bell that wakes the
/// sender after a commit.
#[derive(Debug, Clone)]
pub struct Mailer {
    wake: Arc<Notify>,
    public_app_url: Arc<str>,
}

impl Mailer {
    pub fn new(public_app_url: &Url) -> Self {
        Self {
            wake: Arc::new(Notify::new()),
            public_app_url: public_app_url.as_str().trim_end_matches('/').into(),
        }
    }

    /// `{PUBLIC_APP_URL}{path}?token={token}`: the link a mail carries (`path` starts
    /// with `/`). Tokens are base64url, safe in a query as they are.
    pub fn link(&self, path: &str, token: &str) -> String {
        format!("{}{path}?token={token}", self.public_app_url)
    }

    /// `{PUBLIC_APP_URL}{path}`: a page a mail points to.
    pub fn page(&self, path: &str) -> String {
        format!("{}{path}", self.public_app_url)
    }

    /// Tells the sender that mail was just committed. A wake with no sender waiting is kept
    /// until it next waits, so none is lost.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// One mail to send: plain text, to one address.
#[derive(Debug, Clone)]
pub struct OutgoingMail {
    pub to: Email,
    pub subject: String,
    /// Never logged: it may carry a token.
    pub body_text: String,
}

/// Writes `mail` to the outbox in the caller's transaction; the sender sends it once the
/// transaction commits (call [`Mailer::wake`] after the commit). Answers the mail's id.
pub async fn enqueue(conn: &mut PgConnection, mail: &OutgoingMail) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO mail_outbox (id, to_address, subject, body_text) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(mail.to.as_str())
    .bind(&mail.subject)
    .bind(&mail.body_text)
    .execute(conn)
    .await?;
    Ok(id)
}

/// Drains the outbox over SMTP. One per instance, run as a background task.
pub struct Sender {
    pool: PgPool,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    wake: Arc<Notify>,
}

impl Sender {
    pub fn new(pool: PgPool, config: &MailConfig, mailer: &Mailer) -> anyhow::Result<Self> {
        let transport =
            AsyncSmtpTransport::<Tokio1Executor>::from_url(config.smtp_url.expose_secret())
                .map_err(|_| anyhow::anyhow!("SMTP_URL is not a URL lettre accepts"))?
                .timeout(Some(SMTP_TIMEOUT))
                .build();
        Ok(Self {
            pool,
            transport,
            from: config.from.clone(),
            wake: mailer.wake.clone(),
        })
    }

    /// Sends due mail until `stop` resolves: at once when woken, else every
    /// [`SWEEP_INTERVAL`]. Errors are logged and retried at the next round.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let full = match self.send_due().await {
                Ok(n) => n as i64 >= BATCH,
                Err(e) => {
                    tracing::warn!(error = %e, "mail sender: a round failed");
                    false
                }
            };
            if full {
                continue;
            }
            tokio::select! {
                () = &mut stop => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(SWEEP_INTERVAL) => {}
            }
        }
    }

    /// One round: claims up to a batch of due mails, sends each, records the outcome.
    /// Answers how many were claimed.
    pub async fn send_due(&self) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await?;
        let due: Vec<(Uuid, String, String, String, i32)> = sqlx::query_as(
            "SELECT id, to_address, subject, body_text, attempts FROM mail_outbox
              WHERE sent_at IS NULL AND body_text IS NOT NULL
                AND next_attempt_at <= now() AND attempts < $1
              ORDER BY next_attempt_at
              LIMIT $2
                FOR UPDATE SKIP LOCKED",
        )
        .bind(MAX_ATTEMPTS)
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let claimed = due.len();
        for (id, to, subject, body, attempts) in due {
            match self.send_one(&to, subject, body).await {
                Ok(()) => {
                    sqlx::query(
                        "UPDATE mail_outbox SET sent_at = now(), body_text = NULL, attempts = attempts + 1
                          WHERE id = $1",
                    )
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    tracing::info!(mail.id = %id, "mail sent");
                }
                Err(e) => {
                    let delay = backoff(attempts + 1);
                    sqlx::query(
                        "UPDATE mail_outbox SET attempts = attempts + 1,
                                next_attempt_at = now() + make_interval(secs => $2)
                          WHERE id = $1",
                    )
                    .bind(id)
                    .bind(delay.as_secs_f64())
                    .execute(&mut *tx)
                    .await?;
                    tracing::warn!(
                        mail.id = %id,
                        attempts = attempts + 1,
                        retry_in_s = delay.as_secs(),
                        error = %e,
                        "sending a mail failed; it will be retried"
                    );
                }
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn send_one(&self, to: &str, subject: String, body: String) -> anyhow::Result<()> {
        let to: Mailbox = to.parse().context("the recipient is not a mailbox")?;
        // Plain 7-bit when the text allows it (RFC 5322: ASCII, CRLF lines of at most 998
        // characters), so a link stays whole and readable in the .eml a person opens (lettre
        // would pick quoted-printable past 76 characters); lettre encodes anything else.
        let seven_bit = body.is_ascii()
            && !body.contains('\0')
            && body
                .split("\r\n")
                .all(|line| line.len() <= 998 && !line.contains(['\r', '\n']));
        let body = if seven_bit {
            Body::dangerous_pre_encoded(body.into_bytes(), ContentTransferEncoding::SevenBit)
        } else {
            Body::new(body)
        };
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .context("building the message")?;
        self.transport
            .send(message)
            .await
            .context("the SMTP relay refused or did not answer")?;
        Ok(())
    }
}

/// The wait before attempt `attempts + 1`: 30 s doubling, at most an hour.
pub fn backoff(attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 16)).unwrap_or(0);
    Duration::from_secs((30u64 << exp).min(3600))
}

/// The mails auth sends. Plain text; the link is on a line of its own.
pub mod templates {
    use super::OutgoingMail;
    use crate::email::Email;

    pub fn verify_email(to: &Email, link: &str) -> OutgoingMail {
        OutgoingMail {
            to: to.clone(),
            subject: "Confirm your email address for Runwarden".into(),
            body_text: format!(
                "Someone (hopefully you) signed up for Runwarden with this address.\r\n\
                 \r\n\
                 To confirm it and finish signing up, open this link within 24 hours:\r\n\
                 \r\n\
                 {link}\r\n\
                 \r\n\
                 If it was not you, ignore this message: no account is activated without it.\r\n"
            ),
        }
    }

    pub fn already_registered(to: &Email, sign_in: &str, reset: &str) -> OutgoingMail {
        OutgoingMail {
            to: to.clone(),
            subject: "Someone tried to sign up to Runwarden with your address".into(),
            body_text: format!(
                "Someone tried to sign up for Runwarden with this address, which already has \
                 an account. No second account was created.\r\n\
                 \r\n\
                 If it was you, sign in instead:\r\n\
                 \r\n\
                 {sign_in}\r\n\
                 \r\n\
                 or reset your password:\r\n\
                 \r\n\
                 {reset}\r\n\
                 \r\n\
                 If it was not you, you can ignore this message.\r\n"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(1), Duration::from_secs(30));
        assert_eq!(backoff(2), Duration::from_secs(60));
        assert_eq!(backoff(5), Duration::from_secs(480));
        assert_eq!(backoff(8), Duration::from_secs(3600));
        assert_eq!(backoff(100), Duration::from_secs(3600));
        assert_eq!(backoff(0), Duration::from_secs(30));
    }

    #[test]
    fn links_join_the_base_and_the_token() {
        let mailer = Mailer::new(&Url::parse("https://app.example.com/").unwrap());
        assert_eq!(
            mailer.link("/verify-email", "ev_abc"),
            "https://app.example.com/verify-email?token=ev_abc"
        );
    }

    #[test]
    fn the_development_settings_parse() {
        let config = MailConfig::local();
        assert!(
            AsyncSmtpTransport::<Tokio1Executor>::from_url(config.smtp_url.expose_secret()).is_ok()
        );
        assert_eq!(
            config.from.email.to_string(),
            "no-reply@runwarden.localhost"
        );
    }
}
