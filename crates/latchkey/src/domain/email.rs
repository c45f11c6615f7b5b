use super::ParseError;

/// A normalised e-mail address: trimmed, lower-cased, one `@` with something either side.
/// Lower-casing the local part is a deliberate choice: two accounts that differ only in the
/// case of the local part are almost always the same person, and a look-alike is a phishing aid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let s = raw.trim().to_lowercase();
        let err = |m: &str| Err(ParseError::new("email", m));
        if s.is_empty() {
            return err("is required");
        }
        if s.len() > 254 {
            return err("is longer than 254 characters");
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return err("must not contain spaces or control characters");
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return err("must contain @");
        };
        if local.is_empty() || local.len() > 64 || local.contains('@') {
            return err("has an invalid part before @");
        }
        if domain.is_empty() || domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
            return err("has an invalid domain");
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_space() {
        assert_eq!(Email::parse("  Ann@Example.COM ").unwrap().as_str(), "ann@example.com");
    }

    #[test]
    fn rejects_malformed() {
        for bad in ["", "ann", "@x.org", "ann@", "a b@x.org", "ann@x..org", "ann@.x", "a@b@c"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
