//! A small, dependency-free User-Agent reader: enough to show a person "Firefox on Linux" or
//! "curl" in their device list. It is a label for humans, never a security decision.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAgentInfo {
    pub os: String,
    pub browser: String,
    pub kind: DeviceKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Desktop,
    Mobile,
    Tablet,
    Tv,
    Cli,
    Unknown,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Desktop => "desktop",
            Self::Mobile => "mobile",
            Self::Tablet => "tablet",
            Self::Tv => "tv",
            Self::Cli => "cli",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "desktop" => Self::Desktop,
            "mobile" => Self::Mobile,
            "tablet" => Self::Tablet,
            "tv" => Self::Tv,
            "cli" => Self::Cli,
            "unknown" => Self::Unknown,
            _ => return None,
        })
    }
}

pub fn parse(ua: &str) -> UserAgentInfo {
    let has = |s: &str| ua.contains(s);
    let os = if has("Windows NT") {
        "Windows"
    } else if has("iPhone") || has("iPad") || has("iPod") {
        "iOS"
    } else if has("Android") {
        "Android"
    } else if has("CrOS") {
        "ChromeOS"
    } else if has("Mac OS X") || has("Macintosh") {
        "macOS"
    } else if has("Tizen") || has("Web0S") || has("webOS") {
        "TV OS"
    } else if has("Linux") || has("X11") {
        "Linux"
    } else {
        "Unknown OS"
    };
    let lower = ua.to_ascii_lowercase();
    let browser = if has("Edg/") {
        "Edge"
    } else if has("OPR/") || has("Opera") {
        "Opera"
    } else if has("Firefox/") {
        "Firefox"
    } else if has("HeadlessChrome") {
        "Headless Chrome"
    } else if has("Chrome/") || has("CriOS") {
        "Chrome"
    } else if has("Safari/") && has("Version/") {
        "Safari"
    } else if lower.starts_with("latchkey") {
        "Latchkey CLI"
    } else if lower.starts_with("curl/") {
        "curl"
    } else if lower.starts_with("reqwest") || lower.starts_with("python") || lower.starts_with("go-http") {
        "HTTP library"
    } else {
        "Unknown browser"
    };
    let kind = if has("SmartTV") || has("SMART-TV") || has("Tizen") || has("Web0S") || has("AppleTV") {
        DeviceKind::Tv
    } else if has("iPad") || (has("Android") && !has("Mobile")) {
        DeviceKind::Tablet
    } else if has("Mobile") || has("iPhone") {
        DeviceKind::Mobile
    } else if has("Mozilla/") {
        DeviceKind::Desktop
    } else if matches!(browser, "Latchkey CLI" | "curl" | "HTTP library") {
        DeviceKind::Cli
    } else {
        DeviceKind::Unknown
    };
    UserAgentInfo { os: os.into(), browser: browser.into(), kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_common_agents() {
        let firefox = parse("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0");
        assert_eq!((firefox.os.as_str(), firefox.browser.as_str(), firefox.kind), ("Linux", "Firefox", DeviceKind::Desktop));
        let iphone = parse(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
        );
        assert_eq!((iphone.os.as_str(), iphone.browser.as_str(), iphone.kind), ("iOS", "Safari", DeviceKind::Mobile));
        let edge =
            parse("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 Edg/120.0");
        assert_eq!(edge.browser, "Edge");
        assert_eq!(parse("curl/8.5.0").kind, DeviceKind::Cli);
        assert_eq!(parse("").browser, "Unknown browser");
    }
}
