use super::ParseError;

pub const MIN_CHARS: usize = 8;
pub const MAX_CHARS: usize = 1024;

/// A password as typed: 8 to 1024 characters (counted as Unicode scalar values, not bytes).
/// `Debug` never prints it.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(raw: String) -> Result<Self, ParseError> {
        let n = raw.chars().count();
        if n < MIN_CHARS {
            return Err(ParseError::new("password", format!("must be at least {MIN_CHARS} characters")));
        }
        if n > MAX_CHARS {
            return Err(ParseError::new("password", format!("must be at most {MAX_CHARS} characters")));
        }
        Ok(Self(raw))
    }

    /// For a login attempt: anything up to the maximum is checked against the hash, so that a
    /// too-short guess gets the same answer as a wrong one.
    pub fn for_login(raw: String) -> Result<Self, ParseError> {
        if raw.chars().count() > MAX_CHARS {
            return Err(ParseError::new("password", format!("must be at most {MAX_CHARS} characters")));
        }
        Ok(Self(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_count_characters_not_bytes() {
        assert!(Password::parse("1234567".into()).is_err());
        assert!(Password::parse("ééééééé".into()).is_err(), "7 chars, 14 bytes");
        assert!(Password::parse("12345678".into()).is_ok());
        assert!(Password::parse("x".repeat(1024)).is_ok());
        assert!(Password::parse("x".repeat(1025)).is_err());
        assert_eq!(format!("{:?}", Password::parse("secret-pw".into()).unwrap()), "Password(***)");
    }
}
