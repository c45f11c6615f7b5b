//! The device-grant policy (`[device_policy]`): which clients may use the device grant, from which
//! requester networks, for which accounts, and how fresh the approver's own sign-in must be. A
//! phished device code is typed by someone far from the device, often for a client nobody there
//! uses: these rules let an operator keep the flow on for the devices that need it and refuse the
//! rest. Pure: the caller gathers what it knows at each stage and asks `evaluate`.

use serde::Deserialize;
use std::net::IpAddr;

/// A CIDR block (`192.0.2.0/24`, `2001:db8::/32`); a bare address is a block of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr(pub ipnet::IpNet);

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(net) = s.parse::<ipnet::IpNet>() {
            return Ok(Cidr(net.trunc()));
        }
        s.parse::<IpAddr>()
            .map(|ip| Cidr(ipnet::IpNet::from(ip)))
            .map_err(|_| format!("`{s}` is not a network (CIDR, e.g. 10.0.0.0/8) or an address"))
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Who may be signed in through one client's device grant: an e-mail address, or `@domain` for
/// every address at that domain (compared without regard to case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountMatch(String);

impl<'de> Deserialize<'de> for AccountMatch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?.trim().to_ascii_lowercase();
        let ok = match s.strip_prefix('@') {
            Some(domain) => !domain.is_empty() && !domain.contains('@'),
            None => s.split_once('@').is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@')),
        };
        if !ok {
            return Err(serde::de::Error::custom(format!("`{s}` is neither an e-mail address nor @domain")));
        }
        Ok(AccountMatch(s))
    }
}

impl AccountMatch {
    fn matches(&self, email: &str) -> bool {
        let email = email.to_ascii_lowercase();
        match self.0.strip_prefix('@') {
            Some(domain) => email.rsplit_once('@').is_some_and(|(_, d)| d == domain),
            None => email == self.0,
        }
    }
}

/// The rules for one client, `[[device_policy.client]]`. What it leaves out, the server-wide
/// rules decide.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRules {
    pub id: String,
    /// Whether this client may use the device grant at all.
    #[serde(default = "yes")]
    pub allow: bool,
    /// Requester networks allowed for this client (replacing the server-wide list). Empty: those.
    #[serde(default)]
    pub networks: Vec<Cidr>,
    /// The accounts this client's devices may be signed in to. With `groups` empty too: any.
    #[serde(default)]
    pub accounts: Vec<AccountMatch>,
    /// Groups of `[device_policy.groups]` whose members may be signed in too.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The approver's own sign-in at most this many seconds old (replacing the server-wide one).
    #[serde(default)]
    pub max_sign_in_age_secs: Option<u64>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultRule {
    /// A client without its own entry may use the device grant.
    #[default]
    Allow,
    /// Only clients with an entry that allows them may.
    Deny,
}

/// `[device_policy]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevicePolicy {
    /// What a client with no `[[device_policy.client]]` entry gets.
    pub default: DefaultRule,
    /// Audit what the rules would refuse, and refuse nothing: for trying a policy out.
    pub report_only: bool,
    /// Requester networks allowed for every client without its own list. Empty: any network.
    pub networks: Vec<Cidr>,
    /// The approver's own sign-in at most this many seconds old. Absent: any age.
    pub max_sign_in_age_secs: Option<u64>,
    /// Named groups of accounts (addresses or `@domain`), for clients' `groups` lists:
    /// `[device_policy.groups]` with `family = ["ann@example.com", "@kids.example"]`.
    pub groups: std::collections::BTreeMap<String, Vec<AccountMatch>>,
    #[serde(rename = "client")]
    pub clients: Vec<ClientRules>,
}

/// Where in a request's life the policy is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The device asks for a code: the client and its network are known.
    Request,
    /// A signed-in user approves: the account and their sign-in too.
    Approval,
    /// The device collects its tokens: the policy may have been tightened since it was approved.
    Collection,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Request => "request",
            Stage::Approval => "approval",
            Stage::Collection => "collection",
        }
    }
}

/// The rule that refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Client,
    Network,
    Account,
    SignInAge,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Client => "client",
            Rule::Network => "network",
            Rule::Account => "account",
            Rule::SignInAge => "sign_in_age",
        }
    }
}

/// What is known of a request when the policy is asked. Unknown parts are not judged: the
/// account at a request, the sign-in age at a collection (it was judged at the approval).
#[derive(Debug, Clone, Default)]
pub struct Subject<'a> {
    pub client_id: &'a str,
    /// Every address the requester was seen at (where it asked, where it collects). An address
    /// that does not parse is outside every network.
    pub requester_ips: Vec<&'a str>,
    /// The account approving, and so the account the device will be signed in to. `Some(None)`:
    /// an account without an e-mail address.
    pub account_email: Option<Option<&'a str>>,
    /// Seconds since the approver signed in.
    pub sign_in_age_secs: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: Rule,
    /// In words for the audit log, the operator and the approver.
    pub why: String,
}

impl DevicePolicy {
    /// Whether any rule is set; with none, nothing is evaluated or audited.
    pub fn is_open(&self) -> bool {
        self.default == DefaultRule::Allow && self.networks.is_empty() && self.max_sign_in_age_secs.is_none() && self.clients.is_empty()
    }

    pub fn client(&self, id: &str) -> Option<&ClientRules> {
        self.clients.iter().find(|c| c.id == id)
    }

    /// The first rule that refuses, in the order client, network, account, sign-in age.
    pub fn evaluate(&self, s: &Subject<'_>) -> Result<(), Refusal> {
        let own = self.client(s.client_id);
        let allowed = own.map_or(self.default == DefaultRule::Allow, |c| c.allow);
        if !allowed {
            let why = match own {
                Some(_) => format!("the device grant is turned off for client `{}`", s.client_id),
                None => format!("client `{}` is not among the clients allowed the device grant", s.client_id),
            };
            return Err(Refusal { rule: Rule::Client, why });
        }
        let networks = own.filter(|c| !c.networks.is_empty()).map_or(&self.networks, |c| &c.networks);
        if !networks.is_empty() {
            for ip in &s.requester_ips {
                let inside = ip.parse::<IpAddr>().is_ok_and(|ip| networks.iter().any(|n| n.0.contains(&ip)));
                if !inside {
                    let list = networks.iter().map(Cidr::to_string).collect::<Vec<_>>().join(", ");
                    return Err(Refusal {
                        rule: Rule::Network,
                        why: format!("the device is at {ip}, outside the allowed networks ({list})"),
                    });
                }
            }
        }
        if let (Some(c), Some(email)) = (own, s.account_email)
            && !(c.accounts.is_empty() && c.groups.is_empty())
            && !email.is_some_and(|e| self.account_allowed(c, e))
        {
            let who = email.unwrap_or("an account without an e-mail address");
            let groups = if c.groups.is_empty() { String::new() } else { format!(" (nor in group {})", c.groups.join(", ")) };
            return Err(Refusal {
                rule: Rule::Account,
                why: format!("{who} may not sign devices in through client `{}`{groups}", s.client_id),
            });
        }
        let max_age = own.and_then(|c| c.max_sign_in_age_secs).or(self.max_sign_in_age_secs);
        if let (Some(max), Some(age)) = (max_age, s.sign_in_age_secs)
            && age > max as i64
        {
            return Err(Refusal {
                rule: Rule::SignInAge,
                why: format!("the approver signed in {age} s ago; approving needs a sign-in at most {max} s old (sign in again)"),
            });
        }
        Ok(())
    }

    /// Listed by address or domain, or a member of one of the client's groups.
    fn account_allowed(&self, c: &ClientRules, email: &str) -> bool {
        c.accounts.iter().any(|a| a.matches(email))
            || c.groups.iter().filter_map(|g| self.groups.get(g)).flatten().any(|a| a.matches(email))
    }

    /// Settings errors the types cannot catch.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for c in &self.clients {
            if !seen.insert(c.id.as_str()) {
                return Err(format!("client `{}` has two entries", c.id));
            }
            // A misspelt group would otherwise refuse everyone it was meant to let in.
            if let Some(g) = c.groups.iter().find(|g| !self.groups.contains_key(*g)) {
                return Err(format!("client `{}` names group `{g}`, which [device_policy.groups] does not define", c.id));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> DevicePolicy {
        toml::from_str(text).unwrap()
    }

    fn subject<'a>(client: &'a str, ips: &[&'a str]) -> Subject<'a> {
        Subject { client_id: client, requester_ips: ips.to_vec(), ..Default::default() }
    }

    #[test]
    fn an_empty_policy_allows_everything() {
        let p = DevicePolicy::default();
        assert!(p.is_open());
        assert!(p.evaluate(&Subject { sign_in_age_secs: Some(1 << 40), ..subject("any", &["203.0.113.9"]) }).is_ok());
    }

    #[test]
    fn clients_are_allowed_or_denied() {
        let p = policy("default = \"deny\"\n[[client]]\nid = \"tv\"\n[[client]]\nid = \"old\"\nallow = false\n");
        assert!(p.evaluate(&subject("tv", &[])).is_ok());
        assert_eq!(p.evaluate(&subject("old", &[])).unwrap_err().rule, Rule::Client);
        assert_eq!(p.evaluate(&subject("other", &[])).unwrap_err().rule, Rule::Client);
        let open = policy("[[client]]\nid = \"old\"\nallow = false\n");
        assert!(open.evaluate(&subject("other", &[])).is_ok());
    }

    #[test]
    fn networks_are_the_clients_own_or_the_servers() {
        let p = policy("networks = [\"10.0.0.0/8\", \"2001:db8::/32\"]\n[[client]]\nid = \"lab\"\nnetworks = [\"192.0.2.7\"]\n");
        assert!(p.evaluate(&subject("tv", &["10.1.2.3", "2001:db8::1"])).is_ok());
        let r = p.evaluate(&subject("tv", &["10.1.2.3", "198.51.100.1"])).unwrap_err();
        assert_eq!(r.rule, Rule::Network);
        assert!(r.why.contains("198.51.100.1"), "{}", r.why);
        assert_eq!(p.evaluate(&subject("tv", &["not an ip"])).unwrap_err().rule, Rule::Network);
        assert!(p.evaluate(&subject("lab", &["192.0.2.7"])).is_ok());
        assert_eq!(p.evaluate(&subject("lab", &["10.1.2.3"])).unwrap_err().rule, Rule::Network);
        // A block written with host bits set means its network.
        assert_eq!("10.1.2.3/8".parse::<Cidr>().unwrap().to_string(), "10.0.0.0/8");
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    }

    #[test]
    fn accounts_by_address_or_domain() {
        let p = policy("[[client]]\nid = \"tv\"\naccounts = [\"Ann@Example.com\", \"@corp.example\"]\n");
        let with = |email: Option<&'static str>| Subject { account_email: Some(email), ..subject("tv", &[]) };
        assert!(p.evaluate(&with(Some("ann@example.COM"))).is_ok());
        assert!(p.evaluate(&with(Some("bob@corp.example"))).is_ok());
        assert_eq!(p.evaluate(&with(Some("bob@example.com"))).unwrap_err().rule, Rule::Account);
        assert_eq!(p.evaluate(&with(Some("bob@evilcorp.example"))).unwrap_err().rule, Rule::Account);
        assert_eq!(p.evaluate(&with(None)).unwrap_err().rule, Rule::Account);
        // Not known yet (a device asking for its code): not judged.
        assert!(p.evaluate(&subject("tv", &[])).is_ok());
        assert!(toml::from_str::<DevicePolicy>("[[client]]\nid = \"x\"\naccounts = [\"nobody\"]\n").is_err());
    }

    #[test]
    fn accounts_by_group() {
        let p = policy(concat!(
            "[groups]\nfamily = [\"ann@example.com\", \"@kids.example\"]\nstaff = [\"@corp.example\"]\n",
            "[[client]]\nid = \"tv\"\ngroups = [\"family\"]\n",
            "[[client]]\nid = \"kiosk\"\naccounts = [\"guest@example.com\"]\ngroups = [\"staff\"]\n",
        ));
        p.validate().unwrap();
        let with = |client, email: &'static str| Subject { account_email: Some(Some(email)), ..subject(client, &[]) };
        assert!(p.evaluate(&with("tv", "ANN@example.com")).is_ok());
        assert!(p.evaluate(&with("tv", "tim@kids.example")).is_ok());
        let r = p.evaluate(&with("tv", "bob@corp.example")).unwrap_err();
        assert_eq!(r.rule, Rule::Account);
        assert!(r.why.contains("family"), "{}", r.why);
        // A client's own addresses and its groups together.
        assert!(p.evaluate(&with("kiosk", "guest@example.com")).is_ok());
        assert!(p.evaluate(&with("kiosk", "bob@corp.example")).is_ok());
        assert_eq!(p.evaluate(&with("kiosk", "ann@example.com")).unwrap_err().rule, Rule::Account);
        // A group defined but named by no client restricts nobody.
        assert!(p.evaluate(&with("other", "anyone@example.net")).is_ok());
        // A group nobody defined is a settings error, not a silent refusal.
        let typo = policy("[groups]\nfamily = [\"@example.com\"]\n[[client]]\nid = \"tv\"\ngroups = [\"famliy\"]\n");
        assert!(typo.validate().unwrap_err().contains("famliy"));
        assert!(toml::from_str::<DevicePolicy>("[groups]\nx = [\"not an address\"]\n").is_err());
    }

    #[test]
    fn sign_in_age_the_clients_or_the_servers() {
        let p = policy("max_sign_in_age_secs = 600\n[[client]]\nid = \"strict\"\nmax_sign_in_age_secs = 60\n");
        let aged = |client, age| Subject { sign_in_age_secs: Some(age), ..subject(client, &[]) };
        assert!(p.evaluate(&aged("tv", 600)).is_ok());
        assert_eq!(p.evaluate(&aged("tv", 601)).unwrap_err().rule, Rule::SignInAge);
        assert_eq!(p.evaluate(&aged("strict", 61)).unwrap_err().rule, Rule::SignInAge);
        assert!(p.evaluate(&subject("strict", &[])).is_ok());
    }

    #[test]
    fn two_entries_for_one_client_are_refused() {
        assert!(policy("[[client]]\nid = \"a\"\n[[client]]\nid = \"a\"\n").validate().is_err());
        assert!(toml::from_str::<DevicePolicy>("[[client]]\nid = \"a\"\nallw = true\n").is_err());
    }
}
