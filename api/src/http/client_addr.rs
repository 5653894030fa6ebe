//! The client's address, for per-address limits (`domain::rate_limit`).
//!
//! By default the socket's peer. Behind a proxy the operator runs, every peer
//! is that proxy, so `TRUSTED_PROXY_HEADER` names the header it sets to the
//! client's address, and that header wins. Only the entry the proxy itself
//! added is trusted: the *last* one. `X-Forwarded-For` is appended to hop by
//! hop, so its first entries are whatever the client sent — a bot that writes
//! a fresh address there on every request would otherwise get a fresh budget
//! each time. Likewise the last `Forwarded` (RFC 7239) element's `for=`, and
//! the last line when the header repeats. A header that is absent or does not
//! parse as an IP address (`unknown`, an obfuscated `_node`) falls back to the
//! peer. Setting the header is only safe when every request comes through that
//! proxy: a client reaching the api directly could write it itself.

use std::net::{IpAddr, SocketAddr};

use poem::{FromRequest, Request, RequestBody, http::HeaderMap};

use crate::http::state::AppState;

/// The client's IP address (`None`: the peer is not an IP socket and no
/// trusted header says otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<'a> FromRequest<'a> for ClientAddr {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let peer = req.remote_addr().as_socket_addr().map(SocketAddr::ip);
        let header = req
            .data::<AppState>()
            .and_then(|s| s.config.trusted_proxy_header.as_deref());
        Ok(Self(resolve(peer, header, req.headers())))
    }
}

/// The address the trusted `header` carries, else `peer`.
pub fn resolve(peer: Option<IpAddr>, header: Option<&str>, headers: &HeaderMap) -> Option<IpAddr> {
    header.and_then(|h| forwarded(h, headers)).or(peer)
}

/// The address the nearest proxy wrote into `header`: its last entry.
fn forwarded(header: &str, headers: &HeaderMap) -> Option<IpAddr> {
    let line = headers.get_all(header).iter().next_back()?.to_str().ok()?;
    let entry = line.rsplit(',').next()?.trim();
    if header.eq_ignore_ascii_case("forwarded") {
        entry.split(';').find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("for")
                .then(|| ip(value))
                .flatten()
        })
    } else {
        ip(entry)
    }
}

/// `203.0.113.7`, `2001:db8::1`, with a port (`203.0.113.7:4711`,
/// `[2001:db8::1]:4711`), in brackets or quoted.
fn ip(value: &str) -> Option<IpAddr> {
    let value = value.trim().trim_matches('"');
    value
        .parse()
        .ok()
        .or_else(|| value.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| value.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

#[cfg(test)]
mod tests {
    use poem::http::HeaderValue;

    use super::*;

    const PEER: &str = "10.0.0.2";

    fn resolved(header: Option<&str>, lines: &[(&'static str, &'static str)]) -> String {
        let mut headers = HeaderMap::new();
        for (name, value) in lines {
            headers.append(*name, HeaderValue::from_static(value));
        }
        resolve(PEER.parse().ok(), header, &headers)
            .map(|a| a.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn x_forwarded_for_counts_the_entry_the_proxy_appended_not_the_first() {
        let xff = Some("X-Forwarded-For");
        let forged = [("x-forwarded-for", "198.51.100.1, 203.0.113.7")];
        assert_eq!(resolved(xff, &forged), "203.0.113.7");
        assert_eq!(
            resolved(xff, &[("x-forwarded-for", " 203.0.113.9 ")]),
            "203.0.113.9"
        );
        let two_lines = [
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-for", "2001:db8::5"),
        ];
        assert_eq!(resolved(xff, &two_lines), "2001:db8::5");
        let with_ports = [("x-forwarded-for", "203.0.113.7:4711")];
        assert_eq!(resolved(xff, &with_ports), "203.0.113.7");
        let v6_port = [("x-forwarded-for", "[2001:db8::5]:4711")];
        assert_eq!(resolved(xff, &v6_port), "2001:db8::5");
    }

    #[test]
    fn an_absent_or_unparsable_header_falls_back_to_the_peer() {
        let xff = Some("X-Forwarded-For");
        assert_eq!(resolved(xff, &[]), PEER);
        assert_eq!(resolved(xff, &[("x-forwarded-for", "unknown")]), PEER);
        assert_eq!(resolved(xff, &[("x-forwarded-for", "203.0.113.7, ")]), PEER);
        assert_eq!(
            resolved(xff, &[("x-real-ip", "203.0.113.7")]),
            PEER,
            "only the named header counts"
        );
    }

    #[test]
    fn without_a_trusted_header_the_peer_is_the_client() {
        assert_eq!(resolved(None, &[("x-forwarded-for", "203.0.113.7")]), PEER);
    }

    #[test]
    fn forwarded_counts_the_for_of_its_last_element() {
        let fwd = Some("Forwarded");
        let forged = [(
            "forwarded",
            r#"for=198.51.100.1, for="[2001:db8:cafe::17]:4711";proto=https"#,
        )];
        assert_eq!(resolved(fwd, &forged), "2001:db8:cafe::17");
        assert_eq!(
            resolved(fwd, &[("forwarded", "proto=http;For=203.0.113.7")]),
            "203.0.113.7"
        );
        assert_eq!(resolved(fwd, &[("forwarded", "for=_hidden")]), PEER);
    }

    #[test]
    fn a_single_address_header_is_read_as_is() {
        assert_eq!(
            resolved(Some("X-Real-IP"), &[("x-real-ip", "203.0.113.7")]),
            "203.0.113.7"
        );
    }
}
