//! Project secrets: the rules (names, kinds, values) and their database work, encrypted with
//! the vault (`runwarden_vault`) before anything reaches the database.
//!
//! Each org has one data key, created on first use and stored only wrapped by the active
//! key-encryption key of runs' [`KeyRing`]. Each `PUT` adds a version: the value is sealed
//! under the org's data key with associated data naming org, project, name, kind and version,
//! so a ciphertext copied to any other row fails to open. Nothing here returns a plaintext to
//! a person: the API answers metadata ([`SecretMeta`]); only [`read_for_runner`] decrypts, for
//! the runner of a run of that project, and audits every secret it hands over.
//!
//! Every function runs in the caller's transaction, scoped to one org by row-level security,
//! and records its audit event in that same transaction (never with a value).

use chrono::{DateTime, Utc};
use runwarden_contracts::{ProjectId, RunId};
use runwarden_events::{Actor, AuditEvent, Target};
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::{OrgContext, OrgId, begin_org_tx};
use runwarden_vault::{Aad, DataKey, KeyRing};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::{RunsError, RunsResult};
use crate::projects;

/// The largest value, in bytes (UTF-8).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

pub use runwarden_contracts::SecretName;
pub use runwarden_contracts::runner_api::SecretKind;

/// The name a request gives a secret, or 400 `invalid_secret_name`.
pub fn parse_name(raw: &str) -> RunsResult<SecretName> {
    SecretName::parse(raw).map_err(|e| RunsError::invalid("invalid_secret_name", e.to_string()))
}

/// The kind a request gives a secret, or 400 `invalid_secret_kind`.
pub fn parse_kind(raw: &str) -> RunsResult<SecretKind> {
    SecretKind::parse(raw).ok_or_else(|| {
        RunsError::invalid(
            "invalid_secret_kind",
            "kind must be client_credential, secret_variable, auth_cookie or api_key",
        )
    })
}

/// A secret's value on its way in: 1 to 64 KiB of UTF-8 without NUL (it may become an
/// environment variable). Errors never echo it.
#[derive(Debug)]
pub struct SecretValue(SecretString);

impl SecretValue {
    pub fn parse(value: SecretString) -> RunsResult<Self> {
        let text = value.expose_secret();
        if text.is_empty() || text.len() > MAX_VALUE_BYTES {
            return Err(RunsError::invalid(
                "invalid_secret_value",
                format!("value must be 1 to {MAX_VALUE_BYTES} bytes"),
            ));
        }
        if text.contains('\0') {
            return Err(RunsError::invalid(
                "invalid_secret_value",
                "value must not contain NUL characters",
            ));
        }
        Ok(Self(value))
    }
}

/// What the API says about a secret: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct SecretMeta {
    pub name: String,
    pub kind: SecretKind,
    /// The latest version (1 for a new secret, one more on every `PUT`).
    pub version: i32,
    /// When the first version was written.
    pub created_at: DateTime<Utc>,
    /// When the latest version was written.
    pub updated_at: DateTime<Utc>,
}

const META_COLUMNS: &str = "name, kind, current_version AS version, created_at, updated_at";

/// One secret as its runner gets it. `Debug` shows the value as `[REDACTED]`.
#[derive(Debug)]
pub struct PlainSecret {
    pub name: String,
    pub kind: SecretKind,
    pub version: i32,
    pub value: SecretString,
}

fn target(project: ProjectId, name: &str) -> Target {
    Target::new("secret", format!("{project}/{name}"))
}

fn version_u32(version: i32) -> RunsResult<u32> {
    u32::try_from(version).map_err(|_| RunsError::from(anyhow::anyhow!("negative version")))
}

/// A data key that could not be unwrapped, or a value that did not open: the key ring does
/// not match the database, or a row was tampered with. Logged as a security event (never with
/// key material or plaintext); the caller gets a generic 500.
fn integrity_failure(org: OrgId, what: String, e: runwarden_vault::VaultError) -> RunsError {
    tracing::error!(
        security_event = "vault_integrity",
        org.id = %org,
        error = %e,
        "{what}"
    );
    RunsError::from(anyhow::anyhow!("{what}: {e}"))
}

/// The org's data key, unwrapped; `None` when the org has none yet.
async fn load_data_key(
    tx: &mut PgConnection,
    ring: &KeyRing,
    org: OrgId,
) -> RunsResult<Option<DataKey>> {
    let row: Option<(String, Vec<u8>)> =
        sqlx::query_as("SELECT kek_version, wrapped_key FROM org_data_keys WHERE org_id = $1")
            .bind(org)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((version, wrapped)) = row else {
        return Ok(None);
    };
    ring.unwrap(&version, &wrapped, &Aad::data_key(org.as_uuid()))
        .map(Some)
        .map_err(|e| {
            integrity_failure(
                org,
                format!("the org's data key ({version}) did not unwrap"),
                e,
            )
        })
}

/// The org's data key, created (under the active key-encryption key) on first use. Two
/// transactions creating it at once agree: the loser's insert does nothing and it reads the
/// winner's key.
async fn data_key(tx: &mut PgConnection, ring: &KeyRing, org: OrgId) -> RunsResult<DataKey> {
    if let Some(key) = load_data_key(tx, ring, org).await? {
        return Ok(key);
    }
    let key = DataKey::generate();
    let wrapped = ring
        .wrap(&key, &Aad::data_key(org.as_uuid()))
        .map_err(|e| RunsError::from(anyhow::anyhow!("wrapping a new data key: {e}")))?;
    let inserted = sqlx::query(
        "INSERT INTO org_data_keys (org_id, kek_version, wrapped_key) VALUES ($1, $2, $3)
         ON CONFLICT (org_id) DO NOTHING",
    )
    .bind(org)
    .bind(&wrapped.kek_version)
    .bind(&wrapped.bytes)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(key);
    }
    load_data_key(tx, ring, org)
        .await?
        .ok_or_else(|| RunsError::from(anyhow::anyhow!("the org's data key vanished")))
}

/// Creates the secret (version 1) or adds a version to it. Answers the metadata and whether
/// it was created. Another org's project (or none) is 404; a name already used with another
/// kind is 409 `kind_mismatch`.
#[allow(clippy::too_many_arguments)]
pub async fn put(
    tx: &mut PgConnection,
    ring: &KeyRing,
    meta: &RequestMeta,
    ctx: &OrgContext,
    project: ProjectId,
    name: &SecretName,
    kind: SecretKind,
    value: &SecretValue,
) -> RunsResult<(SecretMeta, bool)> {
    let org = ctx.org_id;
    projects::get(tx, org, project, false).await?;
    let key = data_key(tx, ring, org).await?;
    // The head row, locked until commit: concurrent PUTs of one name get consecutive versions.
    let secret: Option<SecretMeta> = sqlx::query_as(&format!(
        "INSERT INTO project_secrets (org_id, project_id, name, kind, created_by)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (org_id, project_id, name) DO UPDATE
            SET current_version = project_secrets.current_version + 1, updated_at = now()
            WHERE project_secrets.kind = EXCLUDED.kind
         RETURNING {META_COLUMNS}"
    ))
    .bind(org)
    .bind(project)
    .bind(name.as_str())
    .bind(kind)
    .bind(ctx.principal.user_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(project_gone)?;
    let secret = secret.ok_or_else(|| {
        RunsError::conflict(
            "kind_mismatch",
            "a secret with this name exists with another kind; delete it first",
        )
    })?;
    let aad = Aad::secret_value(
        org.as_uuid(),
        project.as_uuid(),
        name.as_str(),
        kind.as_str(),
        version_u32(secret.version)?,
    );
    let ciphertext = runwarden_vault::seal(&key, &aad, value.0.expose_secret().as_bytes())
        .map_err(|e| RunsError::from(anyhow::anyhow!("sealing a secret: {e}")))?;
    sqlx::query(
        "INSERT INTO project_secret_versions (org_id, project_id, name, version, ciphertext, created_by)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(org)
    .bind(project)
    .bind(name.as_str())
    .bind(secret.version)
    .bind(&ciphertext)
    .bind(ctx.principal.user_id)
    .execute(&mut *tx)
    .await?;
    let created = secret.version == 1;
    AuditEvent::by_user(
        meta,
        org,
        ctx.principal.user_id,
        if created {
            "secret.create"
        } else {
            "secret.update"
        },
        target(project, name.as_str()),
    )
    .with_details(json!({
        "project_id": project,
        "name": secret.name,
        "kind": kind,
        "version": secret.version,
    }))
    .record(tx)
    .await?;
    Ok((secret, created))
}

/// The project was deleted between the check and the insert: it no longer exists.
fn project_gone(e: sqlx::Error) -> RunsError {
    match &e {
        sqlx::Error::Database(db)
            if db.is_foreign_key_violation()
                && db.constraint() == Some("project_secrets_project_fkey") =>
        {
            RunsError::not_found()
        }
        _ => e.into(),
    }
}

/// One page of a project's secrets by name; `after` is the last name of the previous page.
pub async fn list(
    tx: &mut PgConnection,
    org: OrgId,
    project: ProjectId,
    after: Option<&SecretName>,
    limit: i64,
) -> RunsResult<Vec<SecretMeta>> {
    projects::get(tx, org, project, false).await?;
    Ok(sqlx::query_as(&format!(
        "SELECT {META_COLUMNS} FROM project_secrets
         WHERE org_id = $1 AND project_id = $2 AND ($3::text IS NULL OR name > $3)
         ORDER BY name LIMIT $4"
    ))
    .bind(org)
    .bind(project)
    .bind(after.map(SecretName::as_str))
    .bind(limit)
    .fetch_all(tx)
    .await?)
}

/// A secret's metadata; another org's, or none, is 404.
pub async fn get(
    tx: &mut PgConnection,
    org: OrgId,
    project: ProjectId,
    name: &SecretName,
) -> RunsResult<SecretMeta> {
    sqlx::query_as(&format!(
        "SELECT {META_COLUMNS} FROM project_secrets
         WHERE org_id = $1 AND project_id = $2 AND name = $3"
    ))
    .bind(org)
    .bind(project)
    .bind(name.as_str())
    .fetch_optional(tx)
    .await?
    .ok_or(RunsError::not_found())
}

/// Deletes the secret with every version.
pub async fn delete(
    tx: &mut PgConnection,
    meta: &RequestMeta,
    ctx: &OrgContext,
    project: ProjectId,
    name: &SecretName,
) -> RunsResult<()> {
    let deleted: Option<(i32, SecretKind)> = sqlx::query_as(
        "DELETE FROM project_secrets WHERE org_id = $1 AND project_id = $2 AND name = $3
         RETURNING current_version, kind",
    )
    .bind(ctx.org_id)
    .bind(project)
    .bind(name.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let (versions, kind) = deleted.ok_or(RunsError::not_found())?;
    AuditEvent::by_user(
        meta,
        ctx.org_id,
        ctx.principal.user_id,
        "secret.delete",
        target(project, name.as_str()),
    )
    .with_details(json!({
        "project_id": project,
        "name": name.as_str(),
        "kind": kind,
        "versions": versions,
    }))
    .record(tx)
    .await?;
    Ok(())
}

/// The latest version of every secret of `project`, decrypted, for the runner of `run`. One
/// `secret.read_by_runner` audit event per secret (actor: the runner of `run`) is recorded in
/// the same transaction, so the reads are on record exactly when the caller commits.
///
/// `tx` must be scoped to `org` (e.g. [`crate::tickets::enter_run`] or
/// [`runwarden_tenancy::begin_org_tx`]), and the caller has authenticated the runner of `run`
/// (its token, its run's state). This checks again that `run` is a run of `project` in `org`
/// (404 otherwise): secrets go to a run of their own project only. Any secret that fails to
/// decrypt fails the whole read (a generic internal error, logged as a security event): no
/// partial result.
pub async fn read_for_runner(
    tx: &mut PgConnection,
    ring: &KeyRing,
    org: OrgId,
    project: ProjectId,
    run: RunId,
) -> RunsResult<Vec<PlainSecret>> {
    let of_project: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM runs WHERE id = $1 AND org_id = $2 AND project_id = $3)",
    )
    .bind(run)
    .bind(org)
    .bind(project)
    .fetch_one(&mut *tx)
    .await?;
    if !of_project {
        return Err(RunsError::not_found());
    }
    let rows: Vec<(String, SecretKind, i32, Vec<u8>)> = sqlx::query_as(
        "SELECT s.name, s.kind, v.version, v.ciphertext
         FROM project_secrets s
         JOIN project_secret_versions v
           ON v.org_id = s.org_id AND v.project_id = s.project_id AND v.name = s.name
          AND v.version = s.current_version
         WHERE s.org_id = $1 AND s.project_id = $2
         ORDER BY s.name",
    )
    .bind(org)
    .bind(project)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let key = load_data_key(tx, ring, org)
        .await?
        .ok_or_else(|| RunsError::from(anyhow::anyhow!("secrets exist but no data key")))?;
    let mut secrets = Vec::with_capacity(rows.len());
    for (name, kind, version, ciphertext) in rows {
        let aad = Aad::secret_value(
            org.as_uuid(),
            project.as_uuid(),
            &name,
            kind.as_str(),
            version_u32(version)?,
        );
        let value = runwarden_vault::open_string(&key, &aad, &ciphertext).map_err(|e| {
            integrity_failure(
                org,
                format!("secret {name} version {version} of project {project} did not decrypt"),
                e,
            )
        })?;
        AuditEvent::new(
            org,
            Actor::runner(run),
            "secret.read_by_runner",
            target(project, &name),
        )
        .with_details(json!({
            "project_id": project,
            "run_id": run,
            "name": name,
            "kind": kind,
            "version": version,
        }))
        .record(tx)
        .await?;
        secrets.push(PlainSecret {
            name,
            kind,
            version,
            value,
        });
    }
    Ok(secrets)
}

/// Re-wraps every org's data key under the ring's active key-encryption key, leaving every
/// secret's ciphertext as it is. Answers how many keys were re-wrapped; safe to run again
/// (keys already under the active version are skipped) and alongside the app.
///
/// Across orgs, without a role that bypasses row-level security: the SECURITY DEFINER function
/// `vault_data_keys_to_rewrap` names only the orgs whose key is under another version (no key
/// material leaves it), and each key is then re-wrapped in its own transaction scoped to its
/// org, under row-level security and runs' column grants like any other write, with a
/// `data_key.rewrap` audit event (actor: system). One org's failure (a version missing from
/// the ring, a tampered row) does not stop the others; it is logged and the call then fails.
pub async fn rewrap_data_keys(pool: &PgPool, ring: &KeyRing) -> RunsResult<u64> {
    let orgs: Vec<Uuid> = sqlx::query_scalar("SELECT org_id FROM vault_data_keys_to_rewrap($1)")
        .bind(ring.active_version())
        .fetch_all(pool)
        .await?;
    let (mut rewrapped, mut failed) = (0u64, 0u64);
    for org in orgs.into_iter().map(OrgId::from) {
        match rewrap_one(pool, ring, org).await {
            Ok(true) => rewrapped += 1,
            Ok(false) => {}
            Err(e) => {
                failed += 1;
                tracing::error!(org.id = %org, error = %e, "data key not re-wrapped");
            }
        }
    }
    if failed > 0 {
        return Err(RunsError::from(anyhow::anyhow!(
            "{failed} data keys could not be re-wrapped ({rewrapped} were)"
        )));
    }
    Ok(rewrapped)
}

async fn rewrap_one(pool: &PgPool, ring: &KeyRing, org: OrgId) -> RunsResult<bool> {
    let mut tx = begin_org_tx(pool, org, None).await?;
    let row: Option<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT kek_version, wrapped_key FROM org_data_keys WHERE org_id = $1 FOR UPDATE",
    )
    .bind(org)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((from, wrapped)) = row else {
        return Ok(false);
    };
    if from == ring.active_version() {
        return Ok(false);
    }
    let aad = Aad::data_key(org.as_uuid());
    let key = ring.unwrap(&from, &wrapped, &aad).map_err(|e| {
        integrity_failure(
            org,
            format!("the org's data key ({from}) did not unwrap"),
            e,
        )
    })?;
    let rewrapped = ring
        .wrap(&key, &aad)
        .map_err(|e| RunsError::from(anyhow::anyhow!("re-wrapping a data key: {e}")))?;
    sqlx::query(
        "UPDATE org_data_keys SET kek_version = $2, wrapped_key = $3, rotated_at = now()
         WHERE org_id = $1",
    )
    .bind(org)
    .bind(&rewrapped.kek_version)
    .bind(&rewrapped.bytes)
    .execute(&mut *tx)
    .await?;
    AuditEvent::new(
        org,
        Actor::system(),
        "data_key.rewrap",
        Target::new("data_key", org),
    )
    .with_details(json!({"from": from, "to": rewrapped.kek_version}))
    .record(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_environment_variable_names() {
        for good in ["A", "_", "DB_PASSWORD", "_X1", "API_KEY_2", &"A".repeat(64)] {
            assert_eq!(SecretName::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "1ABC",
            "db_password",
            "Db",
            "A-B",
            "A B",
            " A",
            "A\n",
            "É",
            "A.B",
            &"A".repeat(65),
        ] {
            let err = parse_name(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    RunsError::Api(crate::error::ApiError::Invalid {
                        code: "invalid_secret_name",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn kinds_parse_exactly() {
        for kind in SecretKind::ALL {
            assert_eq!(parse_kind(kind.as_str()).unwrap(), kind);
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::from(kind.as_str())
            );
        }
        for bad in ["", "API_KEY", "apikey", "cookie", "password"] {
            assert!(parse_kind(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn values_are_bounded_and_never_echoed() {
        let ok = |v: &str| SecretValue::parse(SecretString::from(v)).is_ok();
        assert!(ok("x"));
        assert!(ok(&"é".repeat(MAX_VALUE_BYTES / 2)));
        assert!(ok(&"a".repeat(MAX_VALUE_BYTES)));
        for bad in [
            String::new(),
            "a".repeat(MAX_VALUE_BYTES + 1),
            format!("canary-{}", "\0"),
        ] {
            let err = SecretValue::parse(SecretString::from(bad.clone())).unwrap_err();
            assert!(!format!("{err} {err:?}").contains("canary"), "{err}");
        }
        let value = SecretValue::parse(SecretString::from("hunter2-canary")).unwrap();
        assert!(!format!("{value:?}").contains("hunter2"));
        let plain = PlainSecret {
            name: "X".into(),
            kind: SecretKind::ApiKey,
            version: 1,
            value: SecretString::from("hunter2-canary"),
        };
        assert!(!format!("{plain:?} {plain:#?}").contains("hunter2"));
    }
}
