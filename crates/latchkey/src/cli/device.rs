//! The CLI as a new device: the device grant (`device login`), pairing codes (`device pair`),
//! and the saved tokens (`whoami`, `logout`).

use clap::Subcommand;
use latchkey_client::{Client, Credentials, Poll, Tokens};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Subcommand, Debug)]
pub enum DeviceCommand {
    /// Sign in with a code you approve on a device that is already signed in (RFC 8628).
    #[command(long_about = "Sign this machine in with the OAuth 2.0 device grant. It prints a URL, a code and a QR code; \
open the URL on a phone or computer that is signed in (or scan the QR), check the code matches, and approve. \
The tokens are saved with mode 0600.\n\nExample:\n    latchkey device login --server https://auth.example.com")]
    Login {
        /// The Latchkey server's URL.
        #[arg(long, value_name = "URL")]
        server: String,
        /// The OAuth client to sign in as.
        #[arg(long, default_value = "latchkey-cli")]
        client_id: String,
        /// The access to ask for (space-separated scopes).
        #[arg(long)]
        scope: Option<String>,
    },
    /// Sign in by typing a pairing code shown on a device that is already signed in.
    #[command(long_about = "Sign this machine in with a one-time pairing code: on a signed-in device open /pair (or call \
POST /api/v1/pairing-codes), then type the code here. That device then sees this one and allows it.\n\n\
Example:\n    latchkey device pair --server https://auth.example.com BCDFG-HJKLM --name \"Build server\"")]
    Pair {
        /// The Latchkey server's URL.
        #[arg(long, value_name = "URL")]
        server: String,
        /// The pairing code, with or without the dash, any case.
        code: String,
        /// What to call this device (shown to the approving device as this device's claim).
        #[arg(long)]
        name: Option<String>,
        /// The OAuth client to sign in as.
        #[arg(long, default_value = "latchkey-cli")]
        client_id: String,
    },
}

fn credentials_path(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    given.or_else(Credentials::default_path).ok_or_else(|| anyhow::anyhow!("no home directory: pass --credentials FILE"))
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn server_error(e: latchkey_client::ClientError) -> anyhow::Error {
    match e {
        latchkey_client::ClientError::Server { body, .. } => {
            let text =
                body["detail"].as_str().or(body["error_description"].as_str()).or(body["error"].as_str()).unwrap_or("request refused");
            anyhow::anyhow!("{text}")
        }
        other => anyhow::anyhow!("{other}"),
    }
}

pub async fn run(cmd: DeviceCommand, credentials: Option<PathBuf>) -> anyhow::Result<()> {
    let path = credentials_path(credentials)?;
    let (server, client_id, tokens) = match cmd {
        DeviceCommand::Login { server, client_id, scope } => {
            let client = Client::new(&server).with_client_id(&client_id);
            let auth = client.device_authorization(scope.as_deref()).await.map_err(server_error)?;
            println!(
                "To sign this device in, open\n\n    {}\n\non a phone or computer that is signed in, and enter the code\n\n    {}\n",
                auth.verification_uri, auth.user_code
            );
            if let Some(complete) = &auth.verification_uri_complete
                && let Ok(qr) = qrcode::QrCode::new(complete.as_bytes())
            {
                println!("Or scan this QR code (it fills the code in; you still approve):\n");
                // Inverted (light modules drawn) so it reads on the usual dark terminal background.
                let art = qr
                    .render::<qrcode::render::unicode::Dense1x2>()
                    .dark_color(qrcode::render::unicode::Dense1x2::Light)
                    .light_color(qrcode::render::unicode::Dense1x2::Dark)
                    .quiet_zone(true)
                    .build();
                println!("{art}");
            }
            let tokens = wait_for_approval(&client, &auth.device_code, auth.interval, auth.expires_in).await?;
            (server, client_id, tokens)
        }
        DeviceCommand::Pair { server, code, name, client_id } => {
            let client = Client::new(&server).with_client_id(&client_id);
            let red = client.redeem_pairing_code(&code, name.as_deref()).await.map_err(server_error)?;
            println!("Code accepted. Now allow this device on the device that showed the code.");
            let tokens = wait_for_approval(&client, &red.device_code, red.interval, red.expires_in).await?;
            (server, client_id, tokens)
        }
    };
    let creds = Credentials::from_tokens(&server, &client_id, &tokens, now());
    creds.save(&path)?;
    println!("Signed in as device {}. Tokens saved to {}", tokens.device_id, path.display());
    Ok(())
}

/// Polls the token endpoint at the interval, growing it on `slow_down` and backing off on
/// network errors, with a spinner and the time left while a person decides.
async fn wait_for_approval(client: &Client, device_code: &str, interval: u64, expires_in: u64) -> anyhow::Result<Tokens> {
    const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let tty = std::io::stderr().is_terminal();
    let deadline = Instant::now() + Duration::from_secs(expires_in);
    let mut interval = Duration::from_secs(interval.max(1));
    let mut next_poll = Instant::now() + interval;
    let mut frame = 0usize;
    let clear = |tty: bool| {
        if tty {
            eprint!("\r\x1b[2K");
        }
    };
    loop {
        let now = Instant::now();
        if now >= deadline {
            clear(tty);
            anyhow::bail!("the code expired before anyone approved it; run the command again");
        }
        if now >= next_poll {
            match client.poll_device_code(device_code).await {
                Ok(Poll::Tokens(t)) => {
                    clear(tty);
                    return Ok(t);
                }
                Ok(Poll::Pending) => {}
                Ok(Poll::SlowDown) => interval += Duration::from_secs(5),
                Ok(Poll::Denied) => {
                    clear(tty);
                    anyhow::bail!("the request was denied");
                }
                Ok(Poll::Expired) => {
                    clear(tty);
                    anyhow::bail!("the code expired before anyone approved it; run the command again");
                }
                Err(latchkey_client::ClientError::Http(_)) => interval = (interval * 2).min(Duration::from_secs(60)),
                Err(e) => {
                    clear(tty);
                    return Err(server_error(e));
                }
            }
            next_poll = Instant::now() + interval;
        }
        if tty {
            let left = deadline.saturating_duration_since(Instant::now()).as_secs();
            eprint!("\r{} Waiting for approval… {}:{:02} left ", FRAMES[frame % FRAMES.len()], left / 60, left % 60);
        }
        frame += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The saved credentials, renewed first if the access token is (nearly) expired.
async fn fresh_credentials(path: &std::path::Path) -> anyhow::Result<(Client, Credentials)> {
    let mut creds =
        Credentials::load(path).map_err(|e| anyhow::anyhow!("not signed in ({}: {e}); run `latchkey device login`", path.display()))?;
    let client = Client::new(&creds.server).with_client_id(&creds.client_id);
    if creds.expires_at - now() < 30 {
        let tokens = client
            .refresh(&creds.refresh_token)
            .await
            .map_err(|e| anyhow::anyhow!("signed out ({}); run `latchkey device login`", server_error(e)))?;
        creds = Credentials::from_tokens(&creds.server, &creds.client_id, &tokens, now());
        creds.save(path)?;
    }
    Ok((client, creds))
}

pub async fn whoami(credentials: Option<PathBuf>) -> anyhow::Result<()> {
    let path = credentials_path(credentials)?;
    let (client, creds) = fresh_credentials(&path).await?;
    let me = client.me(&creds.access_token).await.map_err(server_error)?;
    println!(
        "{} on {}\n  account  {}\n  device   {}\n  session  {}\n  scope    {}",
        me.email, creds.server, me.user_id, me.device_id, me.session_id, me.scope
    );
    Ok(())
}

pub async fn logout(credentials: Option<PathBuf>) -> anyhow::Result<()> {
    let path = credentials_path(credentials)?;
    let creds = Credentials::load(&path).map_err(|e| anyhow::anyhow!("not signed in ({}: {e})", path.display()))?;
    let client = Client::new(&creds.server).with_client_id(&creds.client_id);
    let revoked = client.revoke(&creds.refresh_token).await;
    std::fs::remove_file(&path)?;
    match revoked {
        Ok(()) => println!("Signed out: the session is revoked and the tokens are forgotten."),
        Err(e) => {
            println!("Tokens forgotten, but the server could not be told ({}); revoke this device from another one.", server_error(e))
        }
    }
    Ok(())
}

/// Reads the text of the first QR code in a PNG picture.
pub fn decode_qr_png(path: &std::path::Path) -> anyhow::Result<String> {
    let file = std::io::BufReader::new(std::fs::File::open(path).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?);
    let mut decoder = png::Decoder::new(file);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| anyhow::anyhow!("{} is not a PNG picture: {e}", path.display()))?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or_else(|| anyhow::anyhow!("picture too large"))?];
    let info = reader.next_frame(&mut buf)?;
    let channels = info.color_type.samples();
    let (w, h, line) = (info.width as usize, info.height as usize, info.line_size);
    let grey = |x: usize, y: usize| -> u8 {
        let p = &buf[y * line + x * channels..];
        match channels {
            1 | 2 => p[0],
            _ => ((p[0] as u32 * 299 + p[1] as u32 * 587 + p[2] as u32 * 114) / 1000) as u8,
        }
    };
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, grey);
    let grids = img.detect_grids();
    let grid = grids.first().ok_or_else(|| anyhow::anyhow!("no QR code found in {}", path.display()))?;
    let (_, text) = grid.decode().map_err(|e| anyhow::anyhow!("the QR code in {} does not read: {e:?}", path.display()))?;
    Ok(text)
}

/// The companion (standing in for the phone app): approve a browser's QR login with this
/// device's saved tokens, after showing what the server observed and asking for the number.
pub async fn approve(credentials: Option<PathBuf>, url: Option<String>, image: Option<PathBuf>) -> anyhow::Result<()> {
    use std::io::BufRead;
    let url = match (url, image) {
        (Some(u), None) => u,
        (None, Some(p)) => decode_qr_png(&p)?,
        _ => anyhow::bail!("give the QR's URL, or --image PICTURE.png"),
    };
    let path = credentials_path(credentials)?;
    let (client, creds) = fresh_credentials(&path).await?;
    // Only our own server's links: a QR pointing anywhere else is refused, not followed.
    let prefix = format!("{}/q/", creds.server);
    let id = url
        .trim()
        .strip_prefix(&prefix)
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let Some(id) = id else {
        anyhow::bail!("this QR code is not a sign-in link of {} (it says {url:?}); refusing it", creds.server);
    };
    let view = client.qr_scan(&creds.access_token, id).await.map_err(server_error)?;
    println!("A browser asks to sign in to your account:");
    println!("  browser   {} on {}", view.browser, view.os);
    println!("  address   {}", view.ip);
    println!("  asked     {} seconds ago (answer within {} s)", view.seconds_ago, view.expires_in);
    if !view.same_network {
        println!("\n  WARNING: that browser is on a different network from this device. If you did not start");
        println!("  this sign-in yourself on a computer in front of you, deny it.");
    }
    println!("\nWhich number does the browser show? {} (or type \"deny\")", view.match_choices.join(" / "));
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let answer = line.trim();
    if answer.is_empty() || answer.eq_ignore_ascii_case("deny") || answer.eq_ignore_ascii_case("n") {
        client.qr_deny(&creds.access_token, id).await.map_err(server_error)?;
        println!("Denied. The browser was not signed in.");
        return Ok(());
    }
    client.qr_approve(&creds.access_token, id, answer).await.map_err(server_error)?;
    println!("Approved. The browser is signing in.");
    Ok(())
}
