use super::ParseError;
use std::collections::BTreeSet;

/// An OAuth scope (RFC 6749 §3.3): a set of space-separated tokens of printable ASCII
/// without `"` and `\`. Kept sorted and de-duplicated so that comparisons are set comparisons.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope(BTreeSet<String>);

impl Scope {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let mut set = BTreeSet::new();
        if raw.len() > 1024 {
            return Err(ParseError::new("scope", "is too long"));
        }
        for tok in raw.split(' ').filter(|t| !t.is_empty()) {
            if !tok.bytes().all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b)) {
                return Err(ParseError::new("scope", format!("contains an invalid token {tok:?}")));
            }
            set.insert(tok.to_owned());
        }
        Ok(Self(set))
    }

    pub fn is_subset_of(&self, other: &Scope) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, token: &str) -> bool {
        self.0.contains(token)
    }

    pub fn union(&self, other: &Scope) -> Scope {
        Scope(self.0.union(&other.0).cloned().collect())
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v: Vec<&str> = self.0.iter().map(String::as_str).collect();
        f.write_str(&v.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_compares_as_sets() {
        let a = Scope::parse("b a  a").unwrap();
        assert_eq!(a.to_string(), "a b");
        assert!(Scope::parse("a").unwrap().is_subset_of(&a));
        assert!(!Scope::parse("c").unwrap().is_subset_of(&a));
        assert!(Scope::parse("a\"b").is_err());
        assert!(Scope::parse("é").is_err());
    }
}
