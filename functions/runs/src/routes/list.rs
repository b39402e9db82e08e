//! The list routes' query (`cursor`, `limit`) and answer (`items`, `next_cursor`), one
//! policy for projects, runs and secrets: 50 by default, at most 100, unknown parameters
//! refused.

use serde::Serialize;

use crate::error::{RunsError, RunsResult};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 100;

/// A list request: where the previous page ended, and how many to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery<C> {
    pub cursor: Option<C>,
    pub limit: i64,
}

impl<C> ListQuery<C> {
    /// `cursor` (read by `parse_cursor`) and `limit` (clamped to 1..=100); anything else is
    /// refused.
    pub fn parse(raw: Option<&str>, parse_cursor: impl Fn(&str) -> Option<C>) -> RunsResult<Self> {
        let mut query = Self {
            cursor: None,
            limit: DEFAULT_LIMIT,
        };
        for (name, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            match name.as_ref() {
                "cursor" if !value.is_empty() => {
                    query.cursor = Some(parse_cursor(&value).ok_or_else(|| {
                        RunsError::invalid("invalid_cursor", "cursor is not valid")
                    })?);
                }
                "limit" if !value.is_empty() => {
                    query.limit = value
                        .parse::<i64>()
                        .map_err(|_| RunsError::invalid("invalid_limit", "limit must be a number"))?
                        .clamp(1, MAX_LIMIT);
                }
                "cursor" | "limit" => {}
                other => {
                    return Err(RunsError::invalid(
                        "invalid_query",
                        format!("unknown query parameter {other}"),
                    ));
                }
            }
        }
        Ok(query)
    }

    /// What to ask the database for: one more than asked, to learn whether another page
    /// exists without a count.
    pub fn fetch_limit(&self) -> i64 {
        self.limit + 1
    }
}

/// One page of a list.
#[derive(Debug, Serialize)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<C>,
}

impl<T, C> Page<T, C> {
    /// From what [`ListQuery::fetch_limit`] fetched: the first `limit` items, and the cursor
    /// of the last of them when more followed.
    pub fn new(mut items: Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> C) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let more = items.len() > limit;
        items.truncate(limit);
        let next_cursor = more.then(|| items.last().map(cursor_of)).flatten();
        Self { items, next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn uuid_query(raw: &str) -> RunsResult<ListQuery<Uuid>> {
        ListQuery::parse(Some(raw), |c| c.parse().ok())
    }

    #[test]
    fn list_query_clamps_limit_and_refuses_the_unknown() {
        let none = ListQuery::<Uuid>::parse(None, |c| c.parse().ok()).unwrap();
        assert_eq!((none.cursor, none.limit), (None, DEFAULT_LIMIT));
        assert_eq!(uuid_query("limit=100000").unwrap().limit, MAX_LIMIT);
        assert_eq!(uuid_query("limit=-1").unwrap().limit, 1);
        assert_eq!(uuid_query("limit=0").unwrap().limit, 1);
        assert!(uuid_query("limit=ten").is_err());
        assert!(uuid_query("cursor=nope").is_err());
        assert!(uuid_query("offset=100000").is_err());
        let id = Uuid::now_v7();
        let q = uuid_query(&format!("cursor={id}&limit=5")).unwrap();
        assert_eq!((q.cursor, q.limit), (Some(id), 5));
    }

    #[test]
    fn a_secret_list_takes_a_secret_name_as_cursor() {
        use crate::secrets::SecretName;
        let parse = |raw| ListQuery::parse(Some(raw), |c| SecretName::parse(c).ok());
        assert!(parse("cursor=lower").is_err());
        assert!(parse("offset=1").is_err());
        let q = parse("cursor=API_KEY&limit=5").unwrap();
        assert_eq!(
            (q.cursor, q.limit),
            (Some(SecretName::parse("API_KEY").unwrap()), 5)
        );
    }

    #[test]
    fn a_page_has_a_cursor_only_when_more_follow() {
        let page = Page::new(vec![1, 2, 3], 2, |n| *n);
        assert_eq!((page.items, page.next_cursor), (vec![1, 2], Some(2)));
        let page = Page::new(vec![1, 2], 2, |n| *n);
        assert_eq!((page.items, page.next_cursor), (vec![1, 2], None));
    }
}
