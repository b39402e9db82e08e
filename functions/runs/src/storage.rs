//! Artifacts in Cloud Storage, through V4 signed URLs only: the runner PUTs an artifact's
//! bytes straight to the bucket, and a media URL answers with a redirect to a signed GET.
//! runs itself never moves the bytes, so it needs no storage client, only a signer
//! (`google-cloud-storage`'s `SignedUrlBuilder`):
//!
//! - production: Application Default Credentials' signer (on Cloud Run the metadata server's
//!   account, signing through IAM `signBlob`; the account needs
//!   `roles/iam.serviceAccountTokenCreator` on itself);
//! - locally and in tests: a service-account key file (`STORAGE_SIGNING_KEY_FILE`), which
//!   signs offline, and the emulator's endpoint (`STORAGE_EMULATOR_HOST`, fake-gcs-server on
//!   port 80, which ignores signatures but serves the signed paths).
//!
//! Every URL lives at most [`MAX_URL_LIFETIME`].

use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use chrono::{DateTime, Utc};
use google_cloud_auth::signer::Signer;
use google_cloud_storage::builder::storage::SignedUrlBuilder;
use google_cloud_storage::http::Method;
use runwarden_contracts::RunId;
use runwarden_events::{Actor, AuditEvent, Target};
use runwarden_tenancy::OrgId;
use serde::Serialize;
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::{RunsError, RunsResult};

/// The longest a signed URL lives: at most 5 minutes, like a media token (see
/// `docs/security.md`).
pub const MAX_URL_LIFETIME: Duration = Duration::from_secs(300);

/// Where artifacts go and how URLs to them are signed. Cheap to share (`Arc` inside).
#[derive(Clone)]
pub struct ArtifactStore {
    /// `projects/_/buckets/{bucket}`, the form the Storage crates take.
    bucket: String,
    signer: Signer,
    /// The emulator's base URL; `None` is Google's (`https://storage.googleapis.com`).
    endpoint: Option<String>,
}

impl std::fmt::Debug for ArtifactStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactStore")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// How URLs are signed.
pub enum SigningKey {
    /// Application Default Credentials (production on Cloud Run).
    Adc,
    /// A service-account key, as the JSON file Google issues (local stack and tests).
    ServiceAccount(serde_json::Value),
}

impl ArtifactStore {
    /// `bucket` is the bare bucket name; `endpoint` the emulator's base URL, if any. A key
    /// file is tried once here, so a bad key stops the start, not the first upload.
    pub async fn new(
        bucket: &str,
        key: SigningKey,
        endpoint: Option<String>,
    ) -> anyhow::Result<Self> {
        let signer = match key {
            SigningKey::Adc => google_cloud_auth::credentials::Builder::default()
                .build_signer()
                .context("building the ADC signer for Cloud Storage URLs")?,
            SigningKey::ServiceAccount(json) => {
                let signer = google_cloud_auth::credentials::service_account::Builder::new(json)
                    .build_signer()
                    .context("the storage signing key is not a service-account key")?;
                signer
                    .sign(b"runwarden start-up check")
                    .await
                    .context("the storage signing key cannot sign")?;
                signer
            }
        };
        Ok(Self {
            bucket: format!("projects/_/buckets/{bucket}"),
            signer,
            endpoint: endpoint.map(|e| e.trim_end_matches('/').to_owned()),
        })
    }

    /// Where an artifact of a run is stored: `runs/{org}/{run}/{name}`.
    pub fn object_name(org: OrgId, run: RunId, name: &ArtifactName) -> String {
        format!("runs/{org}/{run}/{}", name.as_str())
    }

    fn builder(&self, object: String, method: Method, lifetime: Duration) -> SignedUrlBuilder {
        let builder = SignedUrlBuilder::for_object(self.bucket.clone(), object)
            .with_method(method)
            .with_expiration(lifetime.clamp(Duration::from_secs(1), MAX_URL_LIFETIME));
        match &self.endpoint {
            Some(endpoint) => builder.with_endpoint(endpoint.clone()),
            None => builder,
        }
    }

    /// A signed PUT for the object; the upload must send exactly this `content-type`.
    pub async fn upload_url(
        &self,
        object: String,
        content_type: &str,
        lifetime: Duration,
    ) -> anyhow::Result<String> {
        self.builder(object, Method::PUT, lifetime)
            .with_header("content-type", content_type)
            .sign_with(&self.signer)
            .await
            .context("signing an upload URL")
    }

    /// A signed GET for the object.
    pub async fn download_url(&self, object: String, lifetime: Duration) -> anyhow::Result<String> {
        self.builder(object, Method::GET, lifetime)
            .sign_with(&self.signer)
            .await
            .context("signing a download URL")
    }
}

/// An artifact's name: one path segment, `^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$` (so never
/// `..`, `/` or `\`). The same rule is a constraint on `run_artifacts.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactName(String);

impl ArtifactName {
    pub fn parse(raw: &str) -> Option<Self> {
        let bytes = raw.as_bytes();
        let first_ok = bytes.first().is_some_and(u8::is_ascii_alphanumeric);
        let rest_ok = bytes[1.min(bytes.len())..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        (first_ok && rest_ok && bytes.len() <= 100).then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A content type an upload may declare: `type/subtype`, lower-case token characters only
/// (it is signed into the upload URL and served back with the object; no parameters).
pub fn valid_content_type(value: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(
                        b,
                        b'!' | b'#' | b'$' | b'&' | b'^' | b'_' | b'.' | b'+' | b'-'
                    )
            })
    };
    value.len() <= 100
        && value
            .split_once('/')
            .is_some_and(|(t, s)| token(t) && token(s))
}

/// The most artifacts one run may record (its media-token response lists them all).
pub const MAX_ARTIFACTS_PER_RUN: i64 = 200;
/// The largest artifact: Cloud Storage's limit for one PUT (5 GiB).
pub const MAX_ARTIFACT_BYTES: u64 = 5 << 30;

/// A recorded artifact.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Artifact {
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub created_at: DateTime<Utc>,
}

const ARTIFACT_COLUMNS: &str = "name, content_type, size, created_at";

/// Records an upload the runner is about to make (a new name, or a retry of one: its content
/// type and size are replaced), audited as `run.artifact_upload` by the runner. Inside the
/// runner's transaction, which holds the run's row lock, so the per-run limit holds under
/// concurrent uploads.
pub async fn record(
    tx: &mut PgConnection,
    org: OrgId,
    run: RunId,
    name: &ArtifactName,
    content_type: &str,
    size: u64,
) -> RunsResult<Artifact> {
    let artifact = insert_artifact(tx, org, run, name, content_type, size).await?;
    AuditEvent::new(
        org,
        Actor::runner(run),
        "run.artifact_upload",
        Target::new("run", run),
    )
    .with_details(json!({
        "name": artifact.name,
        "content_type": artifact.content_type,
        "size": artifact.size,
    }))
    .record(tx)
    .await?;
    Ok(artifact)
}

async fn insert_artifact(
    tx: &mut PgConnection,
    org: OrgId,
    run: RunId,
    name: &ArtifactName,
    content_type: &str,
    size: u64,
) -> RunsResult<Artifact> {
    let size = i64::try_from(size)
        .ok()
        .filter(|s| u64::try_from(*s).is_ok_and(|s| s <= MAX_ARTIFACT_BYTES))
        .ok_or_else(|| RunsError::invalid("invalid_size", "size must be 0 to 5 GiB"))?;
    let (count, exists): (i64, bool) = sqlx::query_as(
        "SELECT count(*), coalesce(bool_or(name = $3), false)
         FROM run_artifacts WHERE org_id = $1 AND run_id = $2",
    )
    .bind(org)
    .bind(run)
    .bind(name.as_str())
    .fetch_one(&mut *tx)
    .await?;
    if !exists && count >= MAX_ARTIFACTS_PER_RUN {
        return Err(RunsError::conflict(
            "too_many_artifacts",
            format!("a run may record at most {MAX_ARTIFACTS_PER_RUN} artifacts"),
        ));
    }
    Ok(sqlx::query_as(&format!(
        "INSERT INTO run_artifacts (run_id, org_id, name, content_type, size)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (run_id, name)
         DO UPDATE SET content_type = EXCLUDED.content_type, size = EXCLUDED.size
         RETURNING {ARTIFACT_COLUMNS}"
    ))
    .bind(run)
    .bind(org)
    .bind(name.as_str())
    .bind(content_type)
    .bind(size)
    .fetch_one(&mut *tx)
    .await?)
}

/// A run's artifacts, by name.
pub async fn list(tx: &mut PgConnection, org: OrgId, run: RunId) -> RunsResult<Vec<Artifact>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ARTIFACT_COLUMNS} FROM run_artifacts
         WHERE org_id = $1 AND run_id = $2 ORDER BY name"
    ))
    .bind(org)
    .bind(run)
    .fetch_all(tx)
    .await?)
}

/// The artifact `name` of the grant's run, if the token's session is still live (401
/// otherwise) and its holder still a member of that (live) org: one statement (a media
/// URL's check). `None` (404) otherwise.
pub async fn find_for(
    pool: &PgPool,
    grant: &crate::media::Grant,
    name: &ArtifactName,
) -> RunsResult<Option<Artifact>> {
    type Row = (
        bool,
        Option<bool>,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<DateTime<Utc>>,
    );
    let mut tx = pool.begin().await?;
    runwarden_tenancy::set_tenant(&mut tx, Some(grant.org), None).await?;
    let (live, member, name, content_type, size, created_at): Row = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM sessions s
                        WHERE s.id = $5 AND s.user_id = $3
                          AND s.revoked_at IS NULL AND s.expires_at > now()),
                (SELECT EXISTS (SELECT 1 FROM memberships m JOIN orgs o ON o.id = m.org_id
                                WHERE m.org_id = r.org_id AND m.user_id = $3
                                  AND o.terminated_at IS NULL)
                 FROM runs r WHERE r.org_id = $1 AND r.id = $2),
                a.name, a.content_type, a.size, a.created_at
         FROM (SELECT 1) one
         LEFT JOIN run_artifacts a ON a.org_id = $1 AND a.run_id = $2 AND a.name = $4",
    )
    .bind(grant.org)
    .bind(grant.run)
    .bind(grant.user)
    .bind(name.as_str())
    .bind(grant.session)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    crate::media::events::access_verdict(grant, live, member)?;
    Ok(match (name, content_type, size, created_at) {
        (Some(name), Some(content_type), Some(size), Some(created_at)) => Some(Artifact {
            name,
            content_type,
            size,
            created_at,
        }),
        _ => None,
    })
}

/// A fresh service-account key JSON (RSA 2048, PKCS#8) for `client_email`: what the local
/// stack's signer uses when no key file is configured, and what tests sign with. Never for
/// production, where URLs are signed by the service account itself.
pub fn throwaway_service_account_key(client_email: &str) -> anyhow::Result<serde_json::Value> {
    use aws_lc_rs::encoding::AsDer;
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .map_err(|_| anyhow::anyhow!("generating an RSA key failed"))?;
    let der = pair
        .as_der()
        .map_err(|_| anyhow::anyhow!("encoding the RSA key failed"))?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok(serde_json::json!({
        "type": "service_account",
        "project_id": "runwarden-local",
        "private_key_id": Uuid::new_v4().simple().to_string(),
        "private_key": pem,
        "client_email": client_email,
        "client_id": "0",
        "token_uri": "https://oauth2.googleapis.com/token",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_names_are_one_safe_segment() {
        for ok in ["screenshot.png", "a", "video-1_final.mp4", &"x".repeat(100)] {
            assert!(ArtifactName::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "..",
            "../etc/passwd",
            "a/b",
            "a\\b",
            ".hidden",
            "-flag",
            "name with space",
            "é.png",
            "a%2Fb",
            "a\0b",
            &"x".repeat(101),
        ] {
            assert!(ArtifactName::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn content_types_are_plain_type_and_subtype() {
        for ok in ["image/png", "video/mp4", "application/vnd.api+json"] {
            assert!(valid_content_type(ok), "{ok}");
        }
        for bad in [
            "",
            "image",
            "image/",
            "/png",
            "Image/PNG",
            "text/html; charset=utf-8",
            "image/png\r\nx-evil: 1",
            "a/b/c",
        ] {
            assert!(!valid_content_type(bad), "{bad:?}");
        }
    }

    /// The URL is a V4 signature by the key's account over the object, for at most 5 minutes,
    /// checked the way Cloud Storage checks it: rebuild the canonical request and the string
    /// to sign, and verify the RSA signature with the key's public half.
    #[tokio::test]
    async fn signed_urls_verify_with_the_keys_public_half_and_live_at_most_five_minutes() {
        use aws_lc_rs::signature::{self, KeyPair};
        let key = throwaway_service_account_key("signer@runwarden-local.iam.gserviceaccount.com")
            .unwrap();
        let pem = key["private_key"].as_str().unwrap();
        let der = base64::engine::general_purpose::STANDARD
            .decode(
                pem.lines()
                    .filter(|l| !l.starts_with("-----"))
                    .collect::<String>(),
            )
            .unwrap();
        let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).unwrap();
        let public = pair.public_key().as_ref().to_vec();

        let store = ArtifactStore::new(
            "media-bucket",
            SigningKey::ServiceAccount(key),
            Some("http://127.0.0.1/".into()),
        )
        .await
        .unwrap();
        let org = OrgId::new();
        let run = RunId::new();
        let name = ArtifactName::parse("shot.png").unwrap();
        let object = ArtifactStore::object_name(org, run, &name);
        let url = store
            .download_url(object.clone(), Duration::from_secs(3600))
            .await
            .unwrap();
        let parsed = url::Url::parse(&url).unwrap();
        assert_eq!(parsed.host_str(), Some("127.0.0.1"));
        assert_eq!(parsed.path(), format!("/media-bucket/{object}"));
        let query: std::collections::BTreeMap<String, String> =
            parsed.query_pairs().into_owned().collect();
        assert_eq!(query["X-Goog-Expires"], "300", "clamped to 5 minutes");
        assert_eq!(query["X-Goog-Algorithm"], "GOOG4-RSA-SHA256");
        assert_eq!(query["X-Goog-SignedHeaders"], "host");

        // Canonical query: every parameter but the signature, sorted, RFC 3986-encoded.
        let encode = |s: &str| {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        };
        let canonical_query = query
            .iter()
            .filter(|(k, _)| *k != "X-Goog-Signature")
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let canonical_request = format!(
            "GET\n{}\n{canonical_query}\nhost:127.0.0.1\n\nhost\nUNSIGNED-PAYLOAD",
            parsed.path()
        );
        let hashed =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical_request.as_bytes());
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let credential = &query["X-Goog-Credential"];
        let scope = credential.split_once('/').unwrap().1;
        let string_to_sign = format!(
            "GOOG4-RSA-SHA256\n{}\n{scope}\n{}",
            query["X-Goog-Date"],
            hex(hashed.as_ref())
        );
        let signature: Vec<u8> = (0..query["X-Goog-Signature"].len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&query["X-Goog-Signature"][i..i + 2], 16).unwrap())
            .collect();
        signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &public)
            .verify(string_to_sign.as_bytes(), &signature)
            .expect("the signature verifies");
        // Any other object or method: the same signature does not verify.
        let tampered = string_to_sign.replacen(&hex(hashed.as_ref()), &"0".repeat(64), 1);
        assert!(
            signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &public)
                .verify(tampered.as_bytes(), &signature)
                .is_err()
        );

        let upload = store
            .upload_url(object, "image/png", Duration::from_secs(60))
            .await
            .unwrap();
        let upload = url::Url::parse(&upload).unwrap();
        let query: std::collections::BTreeMap<String, String> =
            upload.query_pairs().into_owned().collect();
        assert_eq!(query["X-Goog-Expires"], "60");
        assert_eq!(query["X-Goog-SignedHeaders"], "content-type;host");
    }
}
