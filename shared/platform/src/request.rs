//! Facts about the current request that handlers and audit events need: the request id,
//! the client IP (honouring only the proxies we trust) and the user agent.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// How many reverse proxies in front of us append to `X-Forwarded-For` (the Google load
/// balancer and Cloud Run add one hop; the local front door adds one). Entries left of the
/// trusted ones are client-controlled and ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrustedProxyHops(pub usize);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMeta {
    pub request_id: Option<String>,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let hops = parts
            .extensions
            .get::<TrustedProxyHops>()
            .copied()
            .unwrap_or_default();
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        Ok(Self {
            request_id: header_str(&parts.headers, REQUEST_ID_HEADER).map(str::to_owned),
            ip: client_ip(&parts.headers, peer, hops),
            user_agent: header_str(&parts.headers, header::USER_AGENT.as_str())
                .map(|ua| ua.chars().take(256).collect()),
        })
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The address the nearest untrusted party connected from.
pub fn client_ip(
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    hops: TrustedProxyHops,
) -> Option<IpAddr> {
    if hops.0 == 0 {
        return peer;
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    forwarded
        .len()
        .checked_sub(hops.0)
        .and_then(|i| forwarded.get(i))
        .and_then(|s| s.parse().ok())
        .or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", value.parse().unwrap());
        h
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        let ip = client_ip(&xff("1.2.3.4"), Some(peer), TrustedProxyHops(0));
        assert_eq!(ip, Some(peer));
    }

    #[test]
    fn spoofed_entries_left_of_the_trusted_hop_are_ignored() {
        // The client sent "6.6.6.6"; our one trusted proxy appended the real address.
        let ip = client_ip(&xff("6.6.6.6, 1.2.3.4"), None, TrustedProxyHops(1));
        assert_eq!(ip, Some("1.2.3.4".parse().unwrap()));
        let ip = client_ip(
            &xff("6.6.6.6, 1.2.3.4, 35.1.1.1"),
            None,
            TrustedProxyHops(2),
        );
        assert_eq!(ip, Some("1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn garbage_falls_back_to_the_peer() {
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(&xff("nonsense"), Some(peer), TrustedProxyHops(1)),
            Some(peer)
        );
        assert_eq!(
            client_ip(&HeaderMap::new(), Some(peer), TrustedProxyHops(1)),
            Some(peer)
        );
    }
}
