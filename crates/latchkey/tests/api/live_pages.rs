//! Signed-in pages learn at once that their device was signed out: the `/session/live` socket
//! each of them opens, over a real WebSocket with the browser's own cookies.

use crate::apps::csrf_of;
use crate::common::*;
use futures_util::StreamExt;
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The `name=value` pairs a response sets.
fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned()).collect()
}

/// Signs a browser in through `/login`; answers its Cookie header.
async fn browser_cookies(t: &TestApp, email: &str) -> String {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http.get(t.url("/login")).send().await.unwrap();
    let mut cookies = set_cookies(&r);
    let page = r.text().await.unwrap();
    let form = [("email", email), ("password", PASSWORD), ("csrf", &csrf_of(&page))];
    let r = http.post(t.url("/login")).header("cookie", cookies.join("; ")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 303, "signed in");
    cookies.extend(set_cookies(&r));
    cookies.join("; ")
}

async fn live(t: &TestApp, cookies: Option<&str>, origin: &str) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{}/session/live", t.base.trim_start_matches("http://")).into_client_request().unwrap();
    req.headers_mut().insert("origin", origin.parse().unwrap());
    if let Some(c) = cookies {
        req.headers_mut().insert("cookie", c.parse().unwrap());
    }
    tokio_tungstenite::connect_async(req).await.map(|(ws, _)| ws)
}

/// What the socket says within `wait`: a text message, then its close code.
async fn told(ws: &mut Ws, wait: Duration) -> Option<(Value, Option<CloseCode>)> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut said = None;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next()).await.ok()?;
        match msg {
            Some(Ok(Message::Text(text))) => said = Some(serde_json::from_str(text.as_str()).unwrap()),
            Some(Ok(Message::Close(frame))) => return said.map(|s| (s, frame.map(|f| f.code))),
            Some(Ok(_)) => continue,
            None | Some(Err(_)) => return said.map(|s| (s, None)),
        }
    }
}

#[tokio::test]
async fn a_signed_in_page_learns_at_once_that_its_device_was_revoked() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    let cookies = browser_cookies(&t, "ann@example.com").await;
    let mut ws = live(&t, Some(&cookies), &t.base).await.expect("the page's socket opens");
    assert!(told(&mut ws, Duration::from_millis(300)).await.is_none(), "a signed-in page hears nothing");

    // From the phone: the browser is the device that is not the phone itself.
    let phone = s(&t.login("ann@example.com", "Phone").await, "access_token");
    let devices: Value = t.get_auth("/api/v1/devices", &phone).await.json().await.unwrap();
    let browser = devices.as_array().unwrap().iter().find(|d| d["current"] == false).expect("the browser's device");
    let r = t.http.delete(t.url(&format!("/api/v1/devices/{}", s(browser, "id")))).bearer_auth(&phone).send().await.unwrap();
    assert_eq!(r.status(), 204);
    // Well inside the 20 s between the socket's own looks at the store: the revocation's event.
    let (said, code) = told(&mut ws, Duration::from_secs(5)).await.expect("the page is told");
    assert_eq!(said["state"], "signed_out");
    assert_eq!(code, Some(CloseCode::from(4001)));
    // The page's next open finds the same, at once.
    let mut again = live(&t, Some(&cookies), &t.base).await.unwrap();
    assert_eq!(told(&mut again, Duration::from_secs(5)).await.unwrap().1, Some(CloseCode::from(4001)));
}

#[tokio::test]
async fn a_stranger_is_told_signed_out_and_a_foreign_origin_is_refused() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    let mut ws = live(&t, None, &t.base).await.expect("upgraded, so that the page can read why");
    let (said, code) = told(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!((said["state"].as_str(), code), (Some("signed_out"), Some(CloseCode::from(4001))));
    let mut forged = live(&t, Some("lk_session=lk_ws_forged"), &t.base).await.unwrap();
    assert_eq!(told(&mut forged, Duration::from_secs(5)).await.unwrap().1, Some(CloseCode::from(4001)));
    let cookies = browser_cookies(&t, "ann@example.com").await;
    match live(&t, Some(&cookies), "https://evil.example").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("a foreign origin must not get the socket: {:?}", other.map(|_| ())),
    }
}
