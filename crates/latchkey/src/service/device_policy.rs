//! Asks the device-grant policy (`domain::device_policy`) at a request, an approval and a
//! collection, and audits every refusal with the rule that made it, or, in `report_only`, what
//! it would have refused.

use super::audit::{Audit, AuditKind};
use crate::domain::device_policy::{Refusal, Stage, Subject};
use crate::service::{App, AppResult, ClientMeta};

/// The request a verdict is about, for its audit entry.
#[derive(Default)]
pub struct About<'a> {
    pub request: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub device_id: Option<&'a str>,
}

/// `Ok(Err(refusal))` when the policy refuses and enforces; `Ok(Ok(()))` when it allows, or
/// refuses in `report_only` (audited either way).
pub async fn check(app: &App, stage: Stage, subject: &Subject<'_>, about: About<'_>, meta: &ClientMeta) -> AppResult<Result<(), Refusal>> {
    let policy = &app.settings.device_policy;
    if policy.is_open() {
        return Ok(Ok(()));
    }
    let Err(refusal) = policy.evaluate(subject) else { return Ok(Ok(())) };
    let kind = if policy.report_only { AuditKind::DevicePolicyReport } else { AuditKind::DevicePolicyRefused };
    let mut audit = Audit::new(kind).meta(meta).detail(serde_json::json!({
        "stage": stage.as_str(), "rule": refusal.rule.as_str(), "why": refusal.why, "client_id": subject.client_id,
        "request": about.request, "requester_ips": subject.requester_ips, "report_only": policy.report_only,
    }));
    if let Some(u) = about.user_id {
        audit = audit.user(u);
    }
    if let Some(d) = about.device_id {
        audit = audit.device(d);
    }
    audit.record(app).await?;
    metrics::counter!("latchkey_device_policy_refusals_total", "stage" => stage.as_str(), "rule" => refusal.rule.as_str(), "report_only" => if policy.report_only { "true" } else { "false" }).increment(1);
    Ok(if policy.report_only { Ok(()) } else { Err(refusal) })
}
