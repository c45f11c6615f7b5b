//! What a sign-in through an upstream identity provider may do to accounts (issue 12's linking
//! rules), as a pure decision. Identities are keyed by `(upstream, issuer, sub)`, never by e-mail:
//! the e-mail an upstream sends is a claim about a person, and only a verified one is a claim
//! worth anything. An existing account is never joined because an address matches (Rauthy's
//! hole); a changed e-mail at the upstream never moves a linked identity to another account, and
//! never rewrites the account's own address (Entra's "nOAuth").

/// What the store knows when an upstream identity signs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts<'a> {
    /// The account this `(upstream, issuer, sub)` is linked to, if any.
    pub linked_to: Option<&'a str>,
    /// The e-mail the upstream sent, and whether it says it verified it.
    pub email: Option<&'a str>,
    pub email_verified: bool,
    /// A local account with that e-mail address, if any.
    pub account_with_email: Option<&'a str>,
    /// The operator lets unknown identities create accounts (`auto_create`).
    pub auto_create: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Sign in to the linked account. Its e-mail stays as it is, whatever the upstream says now.
    SignIn { user_id: &'a str },
    /// Make an account for this identity; with the upstream's e-mail only when it is verified
    /// and no account has it.
    Create { email: Option<&'a str> },
    /// An account has this verified address: the person must prove that account (its password
    /// and second factor, or a signed-in device) before the identity is linked to it.
    ProveAccount { user_id: &'a str },
    /// Nothing happens: say why on the page.
    Refuse(Refusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown identity and the operator does not let upstreams create accounts.
    NoAccount,
    /// The address is an account's, but the upstream did not verify it: no link, no login.
    UnverifiedEmailOfAnAccount,
}

pub fn decide<'a>(f: &Facts<'a>) -> Decision<'a> {
    if let Some(user_id) = f.linked_to {
        return Decision::SignIn { user_id };
    }
    match (f.account_with_email, f.email_verified) {
        (Some(user_id), true) => Decision::ProveAccount { user_id },
        (Some(_), false) => Decision::Refuse(Refusal::UnverifiedEmailOfAnAccount),
        (None, verified) if f.auto_create => Decision::Create { email: f.email.filter(|_| verified) },
        (None, _) => Decision::Refuse(Refusal::NoAccount),
    }
}

/// Whether removing one way in leaves the account another: never the last one.
pub fn may_unlink(has_password: bool, passkeys: usize, other_identities: usize) -> bool {
    has_password || passkeys > 0 || other_identities > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn facts<'a>() -> Facts<'a> {
        Facts { linked_to: None, email: Some("ann@example.com"), email_verified: true, account_with_email: None, auto_create: true }
    }

    #[test]
    fn the_rules_of_issue_12() {
        // A linked identity signs in to its account, even when the upstream now says another
        // address, one that belongs to someone else (nOAuth).
        let f = Facts { linked_to: Some("u1"), email: Some("bob@example.com"), account_with_email: Some("u2"), ..facts() };
        assert_eq!(decide(&f), Decision::SignIn { user_id: "u1" });
        // An account with the verified address is never joined silently.
        let f = Facts { account_with_email: Some("u2"), ..facts() };
        assert_eq!(decide(&f), Decision::ProveAccount { user_id: "u2" });
        // An unverified address of an account: no link, no login (Rauthy).
        let f = Facts { account_with_email: Some("u2"), email_verified: false, ..facts() };
        assert_eq!(decide(&f), Decision::Refuse(Refusal::UnverifiedEmailOfAnAccount));
        // Unknown: created only if allowed, and the address taken only when verified.
        assert_eq!(decide(&facts()), Decision::Create { email: Some("ann@example.com") });
        assert_eq!(decide(&Facts { email_verified: false, ..facts() }), Decision::Create { email: None });
        assert_eq!(decide(&Facts { auto_create: false, ..facts() }), Decision::Refuse(Refusal::NoAccount));
    }

    #[test]
    fn the_last_way_in_stays() {
        assert!(!may_unlink(false, 0, 0));
        assert!(may_unlink(true, 0, 0) && may_unlink(false, 1, 0) && may_unlink(false, 0, 1));
    }

    proptest! {
        /// Whatever the upstream claims, an unverified e-mail never reaches an existing account,
        /// and no decision but a linked identity's signs anyone in.
        #[test]
        fn unverified_claims_never_reach_an_account(
            linked in proptest::option::of("[a-z]{1,4}"),
            email in proptest::option::of("[a-z]{1,4}@x"),
            verified: bool,
            account in proptest::option::of("[a-z]{1,4}"),
            auto_create: bool,
        ) {
            let f = Facts {
                linked_to: linked.as_deref(),
                email: email.as_deref(),
                email_verified: verified,
                account_with_email: account.as_deref(),
                auto_create,
            };
            match decide(&f) {
                Decision::SignIn { user_id } => prop_assert_eq!(Some(user_id), linked.as_deref()),
                Decision::ProveAccount { user_id } => {
                    prop_assert!(linked.is_none() && verified);
                    prop_assert_eq!(Some(user_id), account.as_deref());
                }
                Decision::Create { email: e } => {
                    prop_assert!(linked.is_none() && account.is_none() && auto_create);
                    prop_assert!(e.is_none() || verified);
                }
                Decision::Refuse(_) => prop_assert!(linked.is_none()),
            }
        }
    }
}
