//! The route table every HTTP function declares (`routes::ROUTES`): for each route its
//! method, path, who may call it ([`Access`]) and what it leaves in the audit log
//! ([`Audit`]). The router, the OpenAPI document and the route-enumerated tests (tenancy,
//! role matrix, audit trail) are all checked against it, so the table lists every route a
//! function serves, including pushes and scheduler tasks (see `CONTRIBUTING.md`, adding a
//! route).

use crate::Role;

/// Who may call a route, by how the call is authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: no credential (health, the OpenAPI document, the JWKS, sign-up and sign-in).
    Public,
    /// Any signed-in user: a valid access token (`Authorization: Bearer`), no org needed.
    User,
    /// A member of the org in the path with at least this role (access token, then the
    /// membership). Another org's resource answers exactly like a missing one.
    Org(Role),
    /// Another function or the operators' tooling: the shared `X-Internal-Auth` secret, and
    /// nothing else (quotas' admissions, settlements, plans and overrides).
    Internal,
    /// The runner job of one run: `X-Internal-Auth`, then the run's single-use dispatch
    /// ticket (in the exchange's body) or the runner token it was exchanged for
    /// (`Authorization: Bearer`), bound to the path's run.
    Runner,
    /// A Pub/Sub push delivery (`/push/{topic}`): Google's OIDC token of the push service
    /// account in production, the stack's push secret locally.
    Push,
    /// A Cloud Scheduler task (`/internal/tasks/{task}`), authenticated like a push.
    Task,
    /// A media token of the path's run in the query string (`?token=`), of the route's
    /// scope (events or artifacts), so a browser `<video>`/`EventSource` can use it.
    Media,
}

impl Access {
    /// The least role the route needs, if it is org-scoped.
    pub fn org_role(self) -> Option<Role> {
        match self {
            Self::Org(role) => Some(role),
            _ => None,
        }
    }
}

/// What a route leaves in the org's audit log (`runwarden_events::AuditEvent`), written in
/// the same transaction as the change it records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audit {
    /// A read: nothing.
    Read,
    /// A mutation: exactly one event with this action.
    Event(&'static str),
    /// A mutation: exactly one event, of the one of these actions the current state calls
    /// for (putting a secret: `secret.create` or `secret.update`).
    OneOf(&'static [&'static str]),
    /// One event per change the request makes, each of one of these actions; a request that
    /// changes nothing writes none (a project's rename, archive or unarchive).
    PerChange(&'static [&'static str]),
    /// One event with this action per item the call acts on, zero or more (each secret the
    /// runner reads, each run the reaper ends).
    PerItem(&'static str),
    /// Sign-in session changes of the caller's own account (login, refresh, logout): not
    /// org data, so a security log line rather than an org audit event.
    SessionOnly,
    /// Google sign-in: an event with this action when it creates the account, else a
    /// session only.
    EventWhenCreating(&'static str),
    /// Changes state but writes no event of its own, for the reason given: a system effect
    /// (a push or a scheduled task) whose acts are audited where they are decided, or a
    /// run's telemetry.
    Unaudited(&'static str),
}

/// One served route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: &'static str,
    /// As the router spells it: `/v1/orgs/{org}/runs/{run}`.
    pub path: &'static str,
    pub access: Access,
    pub audit: Audit,
}

/// A [`Route`], for `const` tables.
pub const fn route(
    method: &'static str,
    path: &'static str,
    access: Access,
    audit: Audit,
) -> Route {
    Route {
        method,
        path,
        access,
        audit,
    }
}

impl Route {
    /// Its path parameters, in order (`{org}`, `{run}` → `["org", "run"]`).
    pub fn params(&self) -> impl Iterator<Item = &'static str> {
        self.path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &[Route] = &[
        route("GET", "/healthz", Access::Public, Audit::Read),
        route(
            "PUT",
            "/v1/orgs/{org}/projects/{project}/secrets/{name}",
            Access::Org(Role::Member),
            Audit::OneOf(&["secret.create", "secret.update"]),
        ),
        route(
            "POST",
            "/internal/tasks/reap",
            Access::Task,
            Audit::PerItem("run.reap"),
        ),
    ];

    #[test]
    fn a_table_reads_back() {
        assert_eq!(ROUTES[0].params().count(), 0);
        assert_eq!(
            ROUTES[1].params().collect::<Vec<_>>(),
            ["org", "project", "name"]
        );
        assert_eq!(ROUTES[1].access.org_role(), Some(Role::Member));
        assert_eq!(ROUTES[2].access.org_role(), None);
        assert_eq!(ROUTES[2].audit, Audit::PerItem("run.reap"));
    }
}
