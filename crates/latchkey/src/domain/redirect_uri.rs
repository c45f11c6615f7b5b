//! Redirect URIs of OAuth clients (RFC 6749 §3.1.2, RFC 8252, OAuth 2.1 §2.3.1): where an
//! authorization answer may be sent. A presented URI must be one of the client's registered
//! ones **exactly**, character for character: no prefixes, no wildcards, no case folding, no
//! path normalisation. The one exception is RFC 8252 §7.3: a native (public) client's loopback
//! redirect `http://127.0.0.1/path` or `http://[::1]/path` matches on any port, since the app
//! listens on whatever port the OS gives it.

use super::ParseError;

/// A redirect URI as registered for a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectUri(String);

const FIELD: &str = "redirect_uri";

/// How a URI may be used, decided at registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `https://…` anywhere, or `http://localhost…` for development: matched exactly.
    Web,
    /// `http://127.0.0.1…` or `http://[::1]…`: matched exactly, but on any port for public clients.
    LoopbackIp,
    /// A native app's private-use scheme (RFC 8252 §7.1), `com.example.app:/cb`: public clients only.
    PrivateUse,
}

fn kind(raw: &str) -> Result<(Kind, url::Url), ParseError> {
    let bad = |m: &str| ParseError::new(FIELD, m);
    if raw.len() > 2000 {
        return Err(bad("must be at most 2000 characters"));
    }
    if raw.contains('#') {
        return Err(bad("must not have a fragment"));
    }
    if raw.contains('*') {
        return Err(bad("must not have wildcards"));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("must not contain spaces or control characters"));
    }
    let url = url::Url::parse(raw).map_err(|e| bad(&format!("must be an absolute URI ({e})")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry a user name or password"));
    }
    let kind = match url.scheme() {
        "https" => Kind::Web,
        "http" => match url.host() {
            Some(url::Host::Ipv4(ip)) if ip.is_loopback() => Kind::LoopbackIp,
            Some(url::Host::Ipv6(ip)) if ip.is_loopback() => Kind::LoopbackIp,
            Some(url::Host::Domain("localhost")) => Kind::Web,
            _ => return Err(bad("http is allowed only on the loopback interface; use https")),
        },
        "javascript" | "data" | "file" | "vbscript" | "blob" | "ftp" | "ws" | "wss" => {
            return Err(bad("this scheme cannot receive an authorization answer"));
        }
        // RFC 8252 §7.1: a reverse domain name, so that apps do not collide.
        s if s.contains('.') => Kind::PrivateUse,
        _ => return Err(bad("a native app's scheme must be a reverse domain name, like com.example.app")),
    };
    if kind != Kind::PrivateUse && url.host_str().is_none_or(str::is_empty) {
        return Err(bad("must name a host"));
    }
    Ok((kind, url))
}

impl RedirectUri {
    /// Checks a URI an operator registers for a client. Private-use schemes are for public
    /// (native) clients only: a confidential client is a server, reached over https.
    pub fn register(raw: &str, public: bool) -> Result<Self, ParseError> {
        let (kind, _) = kind(raw)?;
        if kind == Kind::PrivateUse && !public {
            return Err(ParseError::new(FIELD, "a private-use scheme is only for public (native) clients"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A URI as stored (it was checked when registered).
    pub fn stored(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` (from an authorization or token request) is this URI.
    pub fn matches(&self, presented: &str, public: bool) -> bool {
        if presented == self.0 {
            return kind(presented).is_ok();
        }
        if !public {
            return false;
        }
        // RFC 8252 §7.3: any port on a loopback IP literal, everything else identical.
        let (Ok((Kind::LoopbackIp, reg)), Ok((Kind::LoopbackIp, got))) = (kind(&self.0), kind(presented)) else { return false };
        let without_port = |u: &url::Url| {
            let mut u = u.clone();
            // Setting no port on an http URL cannot fail.
            let _ = u.set_port(None);
            u.to_string()
        };
        // The raw strings must differ only in the port: compare the rest as written too, so
        // that no normalisation (case, dot segments, escapes) can make two different URIs equal.
        without_port(&reg) == without_port(&got) && strip_port(&self.0) == strip_port(presented)
    }

    /// The registered URI this request names, if any.
    pub fn find<'a>(registered: &'a [RedirectUri], presented: &str, public: bool) -> Option<&'a RedirectUri> {
        registered.iter().find(|r| r.matches(presented, public))
    }
}

/// `http://127.0.0.1:1234/cb` → `http://127.0.0.1/cb`, on the raw text.
fn strip_port(raw: &str) -> String {
    let Some(rest) = raw.strip_prefix("http://") else { return raw.to_owned() };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => &authority[..i],
        _ => authority,
    };
    format!("http://{host}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(s: &str) -> RedirectUri {
        RedirectUri::register(s, false).unwrap()
    }

    #[test]
    fn registration_refuses_what_cannot_be_matched_safely() {
        for bad in [
            "https://app.example/cb#frag",
            "https://*.example/cb",
            "https://user:pw@app.example/cb",
            "https://user@app.example/cb",
            "http://app.example/cb",
            "http://10.0.0.1/cb",
            "javascript:alert(1)",
            "data:text/html,hi",
            "/relative/cb",
            "app:/cb",
            "https://app.example/c b",
            "",
        ] {
            assert!(RedirectUri::register(bad, true).is_err(), "{bad}");
        }
        assert!(RedirectUri::register("com.example.app:/cb", true).is_ok());
        assert!(RedirectUri::register("com.example.app:/cb", false).is_err(), "private-use schemes are for native clients");
        for ok in ["https://app.example/cb", "http://127.0.0.1/cb", "http://[::1]:8080/cb", "http://localhost:3000/login/generic_oauth"] {
            assert!(RedirectUri::register(ok, false).is_ok(), "{ok}");
        }
    }

    #[test]
    fn only_the_exact_uri_matches() {
        let r = reg("https://app.example/cb?x=1");
        assert!(r.matches("https://app.example/cb?x=1", false));
        for variant in [
            "https://app.example/cb?x=1/",
            "https://app.example/cb/?x=1",
            "https://app.example:8443/cb?x=1",
            "https://app.example:443/cb?x=1",
            "https://app.example/cb/../cb?x=1",
            "https://app.example/x/../cb?x=1",
            "https://app.example/cb?x=1&y=2",
            "https://app.example/cb?x=1#f",
            "https://evil@app.example/cb?x=1",
            "https://app.example.evil/cb?x=1",
            "https://APP.example/cb?x=1",
            "HTTPS://app.example/cb?x=1",
            "https://app.example/CB?x=1",
            "https://app.example/%63b?x=1",
            "https://app.example/cb",
        ] {
            assert!(!r.matches(variant, false) && !r.matches(variant, true), "{variant}");
        }
    }

    #[test]
    fn loopback_ips_match_on_any_port_for_native_clients_only() {
        let r = reg("http://127.0.0.1/callback");
        assert!(r.matches("http://127.0.0.1:53412/callback", true));
        assert!(r.matches("http://127.0.0.1/callback", true));
        assert!(!r.matches("http://127.0.0.1:53412/callback", false), "a confidential client's URI is exact");
        assert!(!r.matches("http://127.0.0.1:53412/callback/", true));
        assert!(!r.matches("http://127.0.0.1:53412/other", true));
        assert!(!r.matches("http://127.0.0.2:53412/callback", true));
        assert!(!r.matches("http://localhost:53412/callback", true));
        assert!(!r.matches("https://127.0.0.1:53412/callback", true));
        assert!(!r.matches("http://127.0.0.1:53412/x/../callback", true));
        let v6 = reg("http://[::1]:9/cb");
        assert!(v6.matches("http://[::1]:60000/cb", true));
        assert!(!v6.matches("http://[::2]:60000/cb", true));
        // localhost is a name anything may resolve: exact only.
        let l = reg("http://localhost:3000/cb");
        assert!(!l.matches("http://localhost:3001/cb", true));
    }
}
