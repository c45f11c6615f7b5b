//! `latchkey policy check`: what the device-grant policy in the configuration would make of a
//! request, stage by stage, without a server or a database.

use crate::config::Settings;
use crate::domain::device_policy::{DefaultRule, Stage, Subject};
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Explain what a device-grant request would get under the configured `[device_policy]`.
    #[command(long_about = "Evaluate the configured [device_policy] for one device-grant request and say, for each stage \
(the device asking for a code, the approval, the collection of tokens), whether it is allowed and which rule refuses it. \
Exits 1 when a stage is refused (and the policy is not report_only).\n\nExample:\n    \
latchkey --config latchkey.toml policy check --client tv --ip 10.0.0.7 --account ann@example.com --sign-in-age 900")]
    Check {
        /// The client_id the device asks as.
        #[arg(long)]
        client: String,
        /// The address the device asks from (its X-Forwarded-For behind a trusted proxy).
        #[arg(long, default_value = "127.0.0.1")]
        ip: String,
        /// The account that would approve (an e-mail address). Without it, account rules are not judged.
        #[arg(long)]
        account: Option<String>,
        /// Seconds since the approver signed in. Without it, the sign-in age is not judged.
        #[arg(long, value_name = "SECS")]
        sign_in_age: Option<i64>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(settings: &Settings, cmd: PolicyCommand) -> anyhow::Result<()> {
    let PolicyCommand::Check { client, ip, account, sign_in_age, json } = cmd;
    let policy = &settings.device_policy;
    let account = account.map(|a| a.trim().to_ascii_lowercase());
    let stages = [
        (Stage::Request, Subject { client_id: &client, requester_ips: vec![&ip], ..Default::default() }),
        (
            Stage::Approval,
            Subject {
                client_id: &client,
                requester_ips: vec![&ip],
                account_email: account.as_deref().map(Some),
                sign_in_age_secs: sign_in_age,
            },
        ),
        (
            Stage::Collection,
            Subject { client_id: &client, requester_ips: vec![&ip], account_email: account.as_deref().map(Some), ..Default::default() },
        ),
    ];
    let verdicts: Vec<_> = stages.iter().map(|(stage, s)| (*stage, policy.evaluate(s))).collect();
    let refused = verdicts.iter().any(|(_, v)| v.is_err());
    let rules = match policy.client(&client) {
        Some(_) => "its own [[device_policy.client]] entry, then the server-wide rules".to_owned(),
        None if policy.default == DefaultRule::Deny => "no entry of its own, and default = \"deny\"".to_owned(),
        None => "no entry of its own: the server-wide rules".to_owned(),
    };
    if json {
        let v = serde_json::json!({
            "client_id": client, "ip": ip, "account": account, "sign_in_age_secs": sign_in_age,
            "report_only": policy.report_only, "rules": rules,
            "stages": verdicts.iter().map(|(stage, v)| serde_json::json!({
                "stage": stage.as_str(),
                "allowed": v.is_ok(),
                "rule": v.as_ref().err().map(|r| r.rule.as_str()),
                "why": v.as_ref().err().map(|r| r.why.clone()),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("client `{client}` ({rules}), device at {ip}");
        for (stage, v) in &verdicts {
            match v {
                Ok(()) => println!("  {:<11} allowed", stage.as_str()),
                Err(r) => println!("  {:<11} refused by the `{}` rule: {}", stage.as_str(), r.rule.as_str(), r.why),
            }
        }
        if account.is_none() {
            println!("  (no --account: account rules not judged)");
        }
        if sign_in_age.is_none() {
            println!("  (no --sign-in-age: the approver's sign-in age not judged)");
        }
        if policy.is_open() {
            println!("no [device_policy] rules are set: every request is allowed");
        } else if policy.report_only && refused {
            println!("report_only = true: these refusals are audited as device_policy_would_refuse, and nothing is refused");
        }
    }
    if refused && !policy.report_only {
        std::process::exit(1);
    }
    Ok(())
}
