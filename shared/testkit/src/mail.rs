//! The mail the local sink received (`scripts/lib/mail_sink.py`: one `.eml` file per
//! message under `.dev/mail/`), for tests that follow a mailed link.
//!
//! Where the files are: `MAIL_DIR` when set (scripts/test exports it), else the directory
//! the running sink names in its SMTP greeting (`SMTP_URL`, default `smtp://127.0.0.1:2525`).
//! Messages are parsed with `mail-parser` (headers, encoded words, quoted-printable bodies);
//! a message is "to" an address when its envelope recipient (`X-Runwarden-Rcpt-To`, added by
//! the sink) or its `To` header names it, case-insensitively.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mail_parser::MessageParser;

/// How long [`wait_for_token`] and [`wait_for_messages`] wait.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// One received message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub path: PathBuf,
    pub recipients: Vec<String>,
    pub subject: String,
    /// The decoded text body.
    pub body: String,
}

impl Mail {
    /// The value after the first `marker` (e.g. `"token="`) in the body, up to the end of
    /// the URL it is in.
    pub fn token(&self, marker: &str) -> Option<String> {
        token_in(&self.body, marker)
    }
}

/// The characters after `marker` in `text` that a URL query value may hold unescaped.
pub fn token_in(text: &str, marker: &str) -> Option<String> {
    let start = text.find(marker)? + marker.len();
    let token: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '%'))
        .collect();
    (!token.is_empty()).then_some(token)
}

/// The sink's directory: `MAIL_DIR`, else asked of the running sink. Panics with what to do
/// when neither answers.
pub fn dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MAIL_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let url = std::env::var("SMTP_URL").unwrap_or_else(|_| "smtp://127.0.0.1:2525".into());
    let addr = url::Url::parse(&url)
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port().unwrap_or(25))))
        .unwrap_or_else(|| "127.0.0.1:2525".into());
    ask_sink(&addr).unwrap_or_else(|| {
        panic!(
            "no mail sink answers on {addr} and MAIL_DIR is not set: start it with \
             `bash -c 'source scripts/lib/stack.sh; ensure_mail_sink'` (or run scripts/test)"
        )
    })
}

/// Reads the sink's greeting: `220 <host> runwarden-mail-sink dir=<dir>`.
fn ask_sink(addr: &str) -> Option<PathBuf> {
    let stream = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).ok()?;
    let _ = (&stream).write_all(b"QUIT\r\n");
    let dir = line.trim_end().split_once("runwarden-mail-sink dir=")?.1;
    Some(PathBuf::from(dir))
}

/// Every message to `to` in `dir`, oldest first (file names start with the arrival time).
pub fn messages_to(dir: &Path, to: &str) -> Vec<Mail> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().is_some_and(|x| x == "eml")
                        && !p
                            .file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with('.'))
                })
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|path| parse(&path))
        .filter(|mail| mail.recipients.iter().any(|r| r.eq_ignore_ascii_case(to)))
        .collect()
}

fn parse(path: &Path) -> Option<Mail> {
    let raw = std::fs::read(path).ok()?;
    let message = MessageParser::default().parse(&raw)?;
    let mut recipients: Vec<String> = message
        .header_values("X-Runwarden-Rcpt-To")
        .filter_map(|v| v.as_text().map(|t| t.trim().to_owned()))
        .collect();
    if let Some(to) = message.to() {
        recipients.extend(to.iter().filter_map(|a| a.address().map(str::to_owned)));
    }
    Some(Mail {
        path: path.to_owned(),
        recipients,
        subject: message.subject().unwrap_or_default().to_owned(),
        body: message
            .body_text(0)
            .map(|b| b.into_owned())
            .unwrap_or_default(),
    })
}

/// Waits (up to [`TIMEOUT`]) until `dir` holds at least `n` messages to `to`; answers them
/// all, oldest first.
pub async fn wait_for_messages(dir: &Path, to: &str, n: usize) -> Vec<Mail> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let found = messages_to(dir, to);
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "mail: {} message(s) to {to} in {} after {TIMEOUT:?}, expected {n} \
             (is the mail sink running and auth's mail sender pointed at it?)",
            found.len(),
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The token after `marker` in the newest message to `to`, waiting (up to [`TIMEOUT`]) for
/// one to arrive.
pub async fn wait_for_token(dir: &Path, to: &str, marker: &str) -> String {
    let mail = wait_for_messages(dir, to, 1).await.pop().unwrap();
    mail.token(marker).unwrap_or_else(|| {
        panic!(
            "mail: the newest message to {to} ({}) has no {marker:?}",
            mail.path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_end_where_the_url_does() {
        assert_eq!(
            token_in(
                "open http://x/verify-email?token=ev_a-b_C9\r\nthanks",
                "token="
            )
            .as_deref(),
            Some("ev_a-b_C9")
        );
        assert_eq!(token_in("no link", "token="), None);
    }

    #[test]
    fn messages_are_matched_by_recipient_and_decoded() {
        let dir = std::env::temp_dir().join(format!("testkit-mail-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        // A quoted-printable body whose link is split by a soft line break, as mailers write it.
        let raw = "X-Runwarden-Rcpt-To: Bob@Example.com\r\nTo: bob@example.com\r\n\
                   Subject: =?utf-8?q?Hello?=\r\nContent-Type: text/plain; charset=utf-8\r\n\
                   Content-Transfer-Encoding: quoted-printable\r\n\r\n\
                   link: http://x/verify-email?token=3Dev_abc=\r\ndef\r\n";
        std::fs::write(dir.join("20260101T000000Z-a.eml"), raw).unwrap();
        std::fs::write(dir.join(".20260101T000001Z-b.eml.tmp"), raw).unwrap();
        let found = messages_to(&dir, "bob@example.com");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].subject, "Hello");
        assert_eq!(found[0].token("token=").as_deref(), Some("ev_abcdef"));
        assert!(messages_to(&dir, "alice@example.com").is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
