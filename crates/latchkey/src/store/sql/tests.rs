//! Every statement is the same text in both dialects, and both SQLite drivers bind numbered
//! parameters by number.

use super::*;

/// Every statement of this file, for the checks below.
fn all() -> Vec<Sql> {
    let mut v = vec![
        PING,
        CREATE_APPROVAL,
        INSERT_APPROVAL,
        COUNT_PENDING_OF_IP,
        COUNT_LIVE_PENDING,
        APPROVAL,
        APPROVAL_BY_USER_CODE,
        DECIDE_BY_USER_CODE,
        DECIDE_PAIRING,
        DECIDE_QR,
        DENY_FOR_ABUSE,
        END_APPROVAL,
        COLLECT_BY_ID,
        COLLECT_BY_HANDOFF,
        HANDOFF_USED,
        END_APPROVALS_OF_DEVICE,
        END_PAIRING_CODES_OF_DEVICE,
        SCAN_QR,
        END_LIVE_PAIRING_CODES,
        INSERT_PAIRING_CODE,
        PAIRING_CODE,
        REDEEM_PAIRING_CODE,
        INSERT_SECRET,
        RESEAL_SECRET,
        RESEAL_SIGNING_KEY,
        SECRET,
        SIGNING_KEYS,
        RETIRE_SIGNING_KEYS,
        INSERT_SIGNING_KEY,
        INSERT_FIRST_SIGNING_KEY,
        INSERT_AUDIT,
        AUDIT_FOR_USER,
        AUDIT_ALL,
        LOGIN_FAILURES,
        RECORD_LOGIN_FAILURE,
        CLEAR_LOGIN_FAILURES,
        INSERT_USER,
        INSERT_IDENTITY,
        IDENTITY,
        IDENTITIES_FOR_USER,
        TOUCH_IDENTITY,
        UNLINK_IDENTITY,
        INSERT_UPSTREAM_STATE,
        TAKE_UPSTREAM_STATE,
        USER_BY_EMAIL,
        USER_BY_ID,
        INSERT_CLIENT,
        CLIENT,
        SET_PASSWORD_HASH,
        SET_EMAIL_IF_NONE,
        INSERT_DEVICE,
        INSERT_SESSION,
        INSERT_REFRESH,
        SESSION_BY_ID,
        SESSION_BY_WEB_TOKEN,
        TOUCH_SESSION,
        TOUCH_DEVICE,
        REVOKE_SESSION,
        REVOKE_USER_SESSIONS,
        COUNT_LIVE_SESSIONS,
        DEVICE,
        DEVICES_FOR_USER,
        REVOKE_DEVICE,
        REVOKE_DEVICE_SESSIONS,
        DELETE_DEVICE_TRUST,
        SUPERSEDE_REFRESH,
        INSERT_SUCCESSOR,
        USE_SESSION,
        REFRESH_BY_HASH,
        PUT_PENDING_TOTP,
        TOTP,
        CONFIRM_TOTP,
        DELETE_RECOVERY_CODES,
        INSERT_RECOVERY_CODE,
        USE_TOTP_STEP,
        DELETE_TOTP,
        USE_RECOVERY_CODE,
        EMAIL_FACTOR,
        ENABLE_EMAIL_FACTOR,
        DISABLE_EMAIL_FACTOR,
        PUT_EMAIL_CODE,
        USE_EMAIL_CODE,
        FAIL_EMAIL_CODE,
        INSERT_MFA_TOKEN,
        MFA_TOKEN,
        FAIL_MFA_TOKEN,
        CONSUME_MFA_TOKEN,
        INSERT_TRUST,
        TRUST_DEVICE,
        TAKE_TRUST,
        REVOKE_TRUST,
        UNTRUST_DEVICES,
        INSERT_DEVICE_ALERT,
        DEVICE_ALERT,
        USE_DEVICE_ALERT,
        NEW_DEVICE_MAIL,
        SET_NEW_DEVICE_MAIL,
        INSERT_EMAIL_LINK,
        EMAIL_LINK,
        USE_EMAIL_LINK,
        END_EMAIL_LINKS,
        VERIFY_EMAIL,
    ];
    v.extend(sweeps(0, 0).map(|(s, _)| s));
    v
}

/// The SQLite form, written the slow and obvious way: each `$` followed by digits becomes `?`.
fn expected_lite(pg: &str) -> String {
    let mut out = String::new();
    let mut chars = pg.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// The parameter numbers a text uses, in order, after `mark` (`$` or `?`).
fn numbers(text: &str, mark: char) -> Vec<u32> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(mark) {
        rest = &rest[at + 1..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(n) = digits.parse() {
            found.push(n);
        }
    }
    found
}

#[test]
fn every_dollar_number_becomes_a_question_mark_number_and_nothing_else_changes() {
    for s in all() {
        assert_eq!(s.lite, expected_lite(s.pg), "{}", s.pg);
        assert_eq!(s.pg.len(), s.lite.len());
        assert!(!s.pg.contains('?'), "{}", s.pg);
        assert!(!s.lite.contains('$'), "a $ left over (in a string literal?): {}", s.lite);
        assert_eq!(numbers(s.pg, '$'), numbers(s.lite, '?'), "{}", s.pg);
        // Numbered 1..n with none skipped: positional binding fills exactly these.
        let mut used = numbers(s.pg, '$');
        used.sort_unstable();
        used.dedup();
        assert_eq!(used, (1..=used.len() as u32).collect::<Vec<_>>(), "{}", s.pg);
        // Byte for byte the same outside the parameter marks.
        for (p, l) in s.pg.bytes().zip(s.lite.bytes()) {
            assert!(p == l || (p, l) == (b'$', b'?'));
        }
    }
    assert_eq!(sql!("a $1 b $12 $ c $x $2").lite, "a ?1 b ?12 $ c $x ?2");
}

/// SQLite takes `?NNN` as "parameter NNN", through rusqlite and through sqlx alike, so a
/// parameter used twice is bound once and the numbers may come in any order.
#[tokio::test]
async fn both_sqlite_drivers_bind_numbered_parameters_by_number() {
    const REUSED: Sql = sql!("SELECT $2 || '-' || $1 || '-' || $2");
    let c = rusqlite::Connection::open_in_memory().unwrap();
    let got: String = c.prepare_cached(REUSED.lite).unwrap().query_row(["a", "b"], |r| r.get(0)).unwrap();
    assert_eq!(got, "b-a-b");
    let values: [&dyn Param; 2] = [&"a", &"b"];
    let got: String = c.prepare_cached(REUSED.lite).unwrap().query_row(values, |r| r.get(0)).unwrap();
    assert_eq!(got, "b-a-b", "a [&dyn Param; N] binds as rusqlite params, as it is");
    assert!(c.prepare(REUSED.lite).unwrap().query_row(["a"], |r| r.get::<_, String>(0)).is_err(), "two parameters, not three");

    let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
    let got: String = sqlx::query_scalar(REUSED.lite).bind("a").bind("b").fetch_one(&pool).await.unwrap();
    assert_eq!(got, "b-a-b");
    pool.close().await;
}
