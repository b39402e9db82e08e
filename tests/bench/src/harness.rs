//! What the sections share beyond the end-to-end harness (`runwarden_e2e`): the binaries a
//! section needs, a fresh database's admin pool, auth's JWKS stood in for, and stopping a
//! function that a section started.

use std::time::Duration;

use anyhow::{Context, ensure};
use runwarden_e2e::Proc;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// Fails with the build command to run when one of `bins` is missing next to this program.
pub fn require_binaries(bins: &[&str], build: &str) -> anyhow::Result<()> {
    for bin in bins {
        let path = runwarden_e2e::target_dir().join(bin);
        ensure!(
            path.is_file(),
            "{} is missing: build it first ({build})",
            path.display()
        );
    }
    Ok(())
}

/// The profile the binaries were built with (`release`, or `debug` for a smoke run), from the
/// directory they are in, for the tables' headings.
pub fn profile() -> String {
    runwarden_e2e::target_dir()
        .file_name()
        .map_or_else(|| "?".into(), |n| n.to_string_lossy().into_owned())
}

/// A small superuser pool on `BENCH_DB_ADMIN_URL`'s database (`admin_url`), after checking
/// that `table` is empty: every section wants a fresh database of its own.
pub async fn fresh_admin_pool(admin_url: &str, table: &str) -> anyhow::Result<PgPool> {
    let admin = PgPoolOptions::new()
        .max_connections(2)
        .connect(admin_url)
        .await
        .context("connecting to BENCH_DB_ADMIN_URL")?;
    let existing: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&admin)
        .await?;
    ensure!(
        existing == 0,
        "{table} is not empty: the benchmark needs a fresh database"
    );
    Ok(admin)
}

/// SIGTERM, then up to `grace` to exit (else it is killed when dropped); then prints the
/// last lines it wrote (the sections start functions with `RUST_LOG=warn`, so these are its
/// warnings and errors).
pub async fn stop(proc: &mut Proc, grace: Duration) {
    if proc.try_status().is_none() {
        proc.terminate();
    }
    match proc.wait_exit(grace).await {
        Some(status) if status.success() => {}
        Some(status) => eprintln!(
            "warning: {} exited with {status} after SIGTERM",
            proc.name()
        ),
        None => eprintln!(
            "warning: {} did not exit within {grace:?} of SIGTERM; killing it",
            proc.name()
        ),
    }
    let logged = format!("{}{}", proc.stdout(), proc.stderr());
    if !logged.trim().is_empty() {
        let lines: Vec<&str> = logged.lines().collect();
        eprintln!(
            "==> {} warnings and errors during the run (last lines):",
            proc.name()
        );
        for line in &lines[lines.len().saturating_sub(10)..] {
            eprintln!("{line}");
        }
    }
}

/// auth's `/.well-known/jwks.json` stood in for: a tiny server on a free 127.0.0.1 port that
/// answers every request with one signer's JWKS (one request per connection), for functions
/// that fetch `AUTH_JWKS_URL` at start. Stops when dropped.
pub struct JwksServer {
    /// `http://127.0.0.1:<port>/.well-known/jwks.json`.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(signer: &runwarden_tokens::TokenSigner) -> anyhow::Result<JwksServer> {
        let body = std::sync::Arc::new(serde_json::to_string(&signer.jwks())?);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr()?);
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(answer_json(socket, body.clone()));
            }
        });
        Ok(JwksServer { url, task })
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads a request head (a GET has no body), answers `body` as JSON and closes.
async fn answer_json(mut socket: tokio::net::TcpStream, body: std::sync::Arc<String>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 && head.len() < 16 * 1024 => head.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}
