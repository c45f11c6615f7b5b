use super::ParseError;
use super::user_agent::{self, DeviceKind};

/// What a client tells us about itself when it signs in (`device` in the request body),
/// checked at the edge. Everything else about a device is what the server observed.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceInput {
    /// A name the user will recognise, like "Living-room TV". At most 64 characters.
    pub name: Option<String>,
    /// desktop, mobile, tablet, tv, cli or unknown; guessed from the User-Agent when absent.
    pub kind: Option<String>,
}

/// A device as it will be recorded: the name checked, the kind settled, OS and browser read
/// from the User-Agent the server saw.
#[derive(Debug, Clone)]
pub struct DeviceFacts {
    pub name: String,
    pub kind: DeviceKind,
    pub os: String,
    pub browser: String,
}

impl DeviceFacts {
    pub fn from_input(input: Option<&DeviceInput>, ua: &str) -> Result<Self, ParseError> {
        let seen = user_agent::parse(ua);
        let kind = match input.and_then(|d| d.kind.as_deref()) {
            Some(k) => DeviceKind::parse(k)
                .ok_or_else(|| ParseError::new("device.kind", "must be one of desktop, mobile, tablet, tv, cli, unknown"))?,
            None => seen.kind,
        };
        let name = match input.and_then(|d| d.name.as_deref()) {
            Some(n) => parse_name(n)?,
            None => format!("{} on {}", seen.browser, seen.os),
        };
        Ok(Self { name, kind, os: seen.os, browser: seen.browser })
    }
}

/// A device name as a person gives it: trimmed, 1 to 64 characters, nothing that could make
/// one name pass for another.
pub fn parse_name(raw: &str) -> Result<String, ParseError> {
    let n = raw.trim();
    if n.is_empty() {
        return Err(ParseError::new("device.name", "must not be empty"));
    }
    if n.chars().count() > 64 {
        return Err(ParseError::new("device.name", "must be at most 64 characters"));
    }
    // Control and bidi-override characters could make one device's name pass for another's.
    if n.chars().any(|c| c.is_control() || ('\u{202A}'..='\u{202E}').contains(&c) || ('\u{2066}'..='\u{2069}').contains(&c)) {
        return Err(ParseError::new("device.name", "must not contain control or direction-override characters"));
    }
    Ok(n.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_defaulted() {
        let f = DeviceFacts::from_input(None, "curl/8").unwrap();
        assert_eq!(f.name, "curl on Unknown OS");
        assert_eq!(f.kind, DeviceKind::Cli);
        let bad = DeviceInput { name: Some("evil\u{202E}gnp".into()), kind: None };
        assert!(DeviceFacts::from_input(Some(&bad), "").is_err());
        let bad_kind = DeviceInput { name: None, kind: Some("toaster".into()) };
        assert!(DeviceFacts::from_input(Some(&bad_kind), "").is_err());
    }
}
