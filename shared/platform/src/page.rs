//! Cursor pagination: one query parser ([`ListQuery`]) and one page body ([`Page`]) with
//! one limit policy for every list a function serves.
//!
//! The policy, the same on every list:
//! - `limit` defaults to [`DEFAULT_LIMIT`]; values outside `1..=MAX_LIMIT` are clamped; a
//!   value that is not an integer is a 400 `invalid_limit`.
//! - `cursor` is the `next_cursor` of the previous page; one that does not parse as the
//!   list's cursor type is a 400 `invalid_cursor`.
//! - An empty parameter is absent. An unknown parameter, a repeated one, or one longer than
//!   [`MAX_PARAM_BYTES`] is a 400 `invalid_query`. Nothing here answers a 500.
//! - The page is `{"items": [...], "next_cursor": "..." | null}`; `next_cursor` is `null`
//!   on the last page. Lists fetch [`ListQuery::fetch_limit`] rows (one more than asked) to
//!   learn whether another page exists without a count.

use std::str::FromStr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::ApiError;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 100;
/// Longest accepted query parameter value, in bytes.
pub const MAX_PARAM_BYTES: usize = 256;

/// `?cursor=…&limit=…`, parsed once at the edge. `C` is the list's cursor (a `Uuid`, a
/// name, a sequence number …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery<C> {
    pub cursor: Option<C>,
    limit: i64,
}

impl<C> Default for ListQuery<C> {
    fn default() -> Self {
        Self {
            cursor: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

impl<C: FromStr> ListQuery<C> {
    /// Parses a raw query string that may hold only `cursor` and `limit`.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        Self::parse_with(raw, |_, _| Ok(false))
    }

    /// Parses a raw query string whose other parameters (filters) `extra` takes: it is
    /// called with each non-empty `(name, value)` other than `cursor` and `limit` and answers
    /// `Ok(true)` if it took the parameter, `Ok(false)` if it does not know it.
    pub fn parse_with(
        raw: Option<&str>,
        mut extra: impl FnMut(&str, &str) -> Result<bool, ApiError>,
    ) -> Result<Self, ApiError> {
        let mut query = Self::default();
        let mut seen = std::collections::HashSet::new();
        for (name, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if !seen.insert(name.clone()) {
                return Err(ApiError::invalid(
                    "invalid_query",
                    format!("query parameter {name} is repeated"),
                ));
            }
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            if value.len() > MAX_PARAM_BYTES {
                return Err(ApiError::invalid(
                    "invalid_query",
                    format!("query parameter {name} is too long"),
                ));
            }
            match name.as_ref() {
                "cursor" => {
                    query.cursor =
                        Some(value.parse().map_err(|_| {
                            ApiError::invalid("invalid_cursor", "cursor is not valid")
                        })?);
                }
                "limit" => {
                    query.limit = value
                        .parse::<i64>()
                        .map_err(|_| ApiError::invalid("invalid_limit", "limit must be a number"))?
                        .clamp(1, MAX_LIMIT);
                }
                other => {
                    if !extra(other, value)? {
                        return Err(ApiError::invalid(
                            "invalid_query",
                            format!("unknown query parameter {other}"),
                        ));
                    }
                }
            }
        }
        Ok(query)
    }
}

impl<C> ListQuery<C> {
    /// Items per page, in `1..=MAX_LIMIT`.
    pub fn limit(&self) -> i64 {
        self.limit
    }

    /// Rows to fetch: one more than the page holds, to learn whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        self.limit + 1
    }

    /// Turns the rows fetched with [`Self::fetch_limit`] into a page; `cursor_of` names the
    /// last item's position for the next page.
    pub fn page<T, D: std::fmt::Display>(
        &self,
        items: Vec<T>,
        cursor_of: impl FnOnce(&T) -> D,
    ) -> Page<T> {
        Page::from_fetched(items, self.limit, cursor_of)
    }
}

/// As an extractor, for lists with no filter: a bad query answers the 400s above.
impl<C, S> FromRequestParts<S> for ListQuery<C>
where
    C: FromStr + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Self::parse(parts.uri.query())
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// `items` as fetched with one row more than `limit`: the extra row only says that
    /// another page follows, and is dropped.
    pub fn from_fetched<D: std::fmt::Display>(
        mut items: Vec<T>,
        limit: i64,
        cursor_of: impl FnOnce(&T) -> D,
    ) -> Self {
        let limit = usize::try_from(limit.max(0)).unwrap_or(usize::MAX);
        let more = items.len() > limit;
        items.truncate(limit);
        let next_cursor = if more {
            items.last().map(|item| cursor_of(item).to_string())
        } else {
            None
        };
        Self { items, next_cursor }
    }

    /// The same page with each item converted (e.g. rows into response records).
    pub fn try_map<U, E>(self, f: impl FnMut(T) -> Result<U, E>) -> Result<Page<U>, E> {
        Ok(Page {
            items: self.items.into_iter().map(f).collect::<Result<_, _>>()?,
            next_cursor: self.next_cursor,
        })
    }
}

impl<T: Serialize> IntoResponse for Page<T> {
    fn into_response(self) -> Response {
        axum::Json(self).into_response()
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn code(e: ApiError) -> &'static str {
        match e {
            ApiError::Invalid { code, .. } => code,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn defaults_when_absent_or_empty() {
        for raw in [None, Some(""), Some("cursor=&limit="), Some("limit=%20")] {
            let q = ListQuery::<Uuid>::parse(raw).unwrap();
            assert_eq!((q.cursor, q.limit()), (None, DEFAULT_LIMIT), "{raw:?}");
        }
        assert_eq!(
            ListQuery::<Uuid>::default().fetch_limit(),
            DEFAULT_LIMIT + 1
        );
    }

    #[test]
    fn limit_is_clamped_to_the_one_policy() {
        let limit = |raw: &str| ListQuery::<Uuid>::parse(Some(raw)).unwrap().limit();
        assert_eq!(limit("limit=100000"), MAX_LIMIT);
        assert_eq!(limit("limit=0"), 1);
        assert_eq!(limit("limit=-1"), 1);
        assert_eq!(limit("limit=7"), 7);
        assert_eq!(limit(&format!("limit={MAX_LIMIT}")), MAX_LIMIT);
    }

    #[test]
    fn bad_parameters_answer_400_never_500() {
        let parse = |raw: &str| ListQuery::<Uuid>::parse(Some(raw)).unwrap_err();
        assert_eq!(code(parse("limit=ten")), "invalid_limit");
        assert_eq!(code(parse("limit=99999999999999999999")), "invalid_limit");
        assert_eq!(code(parse("cursor=nope")), "invalid_cursor");
        assert_eq!(code(parse("sort=name")), "invalid_query");
        assert_eq!(code(parse("limit=1&limit=2")), "invalid_query");
        assert_eq!(
            code(parse(&format!(
                "cursor={}",
                "a".repeat(MAX_PARAM_BYTES + 1)
            ))),
            "invalid_query"
        );
        let response = parse("limit=ten").into_response();
        assert_eq!(response.status(), axum::http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn parses_the_cursor_as_the_lists_type() {
        let id = Uuid::now_v7();
        let q = ListQuery::<Uuid>::parse(Some(&format!("cursor={id}&limit=5"))).unwrap();
        assert_eq!((q.cursor, q.limit()), (Some(id), 5));
        let q = ListQuery::<String>::parse(Some("cursor=API_KEY")).unwrap();
        assert_eq!(q.cursor.as_deref(), Some("API_KEY"));
    }

    #[test]
    fn extra_parameters_go_to_the_caller() {
        let mut action = None;
        let q = ListQuery::<i64>::parse_with(Some("action=run.created&cursor=9"), |n, v| {
            Ok(match n {
                "action" => {
                    action = Some(v.to_owned());
                    true
                }
                _ => false,
            })
        })
        .unwrap();
        assert_eq!(
            (q.cursor, action.as_deref()),
            (Some(9), Some("run.created"))
        );
        let e = ListQuery::<i64>::parse_with(Some("from=x"), |_, _| {
            Err(ApiError::invalid("invalid_time", "from must be a time"))
        })
        .unwrap_err();
        assert_eq!(code(e), "invalid_time");
    }

    #[test]
    fn a_page_drops_the_extra_row_and_names_the_next_cursor() {
        let q = ListQuery::<u32>::parse(Some("limit=2")).unwrap();
        let page = q.page(vec![1, 2, 3], |n| *n);
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.next_cursor.as_deref(), Some("2"));
        let last = q.page(vec![1, 2], |n| *n);
        assert_eq!(last.next_cursor, None);
        let json = serde_json::to_value(&last).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"items": [1, 2], "next_cursor": null})
        );
        let mapped = page.try_map(|n| Ok::<_, ()>(n * 10)).unwrap();
        assert_eq!(mapped.items, vec![10, 20]);
        assert_eq!(mapped.next_cursor.as_deref(), Some("2"));
    }

    #[tokio::test]
    async fn extracts_from_the_request_uri() {
        let (mut parts, ()) = axum::http::Request::builder()
            .uri("/v1/orgs/x/runs?limit=3")
            .body(())
            .unwrap()
            .into_parts();
        let q = ListQuery::<Uuid>::from_request_parts(&mut parts, &())
            .await
            .unwrap();
        assert_eq!(q.limit(), 3);
    }
}
