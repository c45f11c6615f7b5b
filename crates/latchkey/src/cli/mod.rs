//! The `latchkey` command line: the server, the operator's tools, and the device side.

mod device;
mod policy;

use crate::clock::{Clock, SystemClock, rfc3339};
use crate::config::{Overrides, Settings};
use crate::domain::{Email, Password};
use crate::events::LocalEvents;
use crate::service::App;
use crate::service::audit::{Audit, AuditKind};
use crate::service::{accounts, clients};
use clap::{Args, Parser, Subcommand};
use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "latchkey",
    version,
    about = "Latchkey: bring new devices into an account safely, and log in without typing passwords.",
    long_about = "Latchkey is a self-hosted authorization server centred on devices: the OAuth 2.0 device grant, pairing codes, \
QR login, remembered devices, and a revocable device list.\n\nStart it with no configuration at all:\n\n    latchkey serve\n\n\
It listens on 127.0.0.1:8080 and keeps its SQLite database and signing key in ./latchkey-data. Every setting can come from a \
TOML file (--config), from LATCHKEY_SECTION__KEY environment variables (e.g. LATCHKEY_SERVER__PUBLIC_URL), or from the flags below, \
in that order of precedence (flags win)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug)]
pub struct GlobalArgs {
    /// A TOML configuration file. Unknown keys are an error.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the database and generated files live (default ./latchkey-data).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL, e.g. sqlite:///var/lib/latchkey/latchkey.db (default: latchkey.db in the data directory).
    #[arg(long, global = true, value_name = "URL")]
    pub database: Option<String>,
    /// Log format: text or json.
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Where `device`, `whoami` and `logout` keep this device's tokens
    /// (default $XDG_CONFIG_HOME/latchkey/credentials.json, else ~/.config/latchkey/credentials.json).
    #[arg(long, global = true, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    #[command(long_about = "Run the server. With no configuration it listens on 127.0.0.1:8080, creates ./latchkey-data/latchkey.db \
(SQLite, WAL), applies migrations, generates its Ed25519 signing key on first start, and prints where it listens. \
Ctrl-C or SIGTERM stop it gracefully.\n\nBehind a reverse proxy, say where people reach it (the token issuer, and what makes cookies \
Secure):\n    LATCHKEY_SERVER__PUBLIC_URL=https://auth.example.com latchkey serve --listen 0.0.0.0:8080 --data-dir /var/lib/latchkey")]
    Serve {
        /// Address and port to listen on (port 0 picks a free one).
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<SocketAddr>,
    },
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage OAuth clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage the keys that sign access tokens.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Check the device-grant policy (`[device_policy]`) against a request.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Show the security events of every account, newest first.
    #[command(long_about = "Show the audit log: logins, failures, logouts, device changes, token reuse, key rotations and \
limits hit, with time, account, device, IP and User-Agent.\n\nExample:\n    latchkey audit --limit 20 --json")]
    Audit {
        /// How many events to show.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the OpenAPI document of the HTTP API.
    Openapi,
    /// Sign this machine in to a Latchkey server as a new device.
    #[command(subcommand)]
    Device(device::DeviceCommand),
    /// Show who the saved device tokens belong to (renewing them when needed).
    #[command(long_about = "Show the account, device and session the saved tokens belong to. If the access token has \
expired, it is renewed with the refresh token first (and the new tokens saved).\n\nExample:\n    latchkey whoami")]
    Whoami,
    /// Approve a browser's QR login from this device (the companion to a phone app).
    #[command(long_about = "Approve a browser's QR login with this device's saved tokens (from `latchkey device login` \
or `device pair`). Give the QR's URL, or a picture of the QR. It shows what the server observed of the browser, \
warns when it is on another network, and asks which number the browser shows; a wrong number denies the sign-in.\n\n\
Examples:\n    latchkey approve https://auth.example.com/q/3q2-AbC…\n    latchkey approve --image qr.png")]
    Approve {
        /// The URL in the QR code.
        url: Option<String>,
        /// A PNG picture of the QR code, instead of the URL.
        #[arg(long, value_name = "PNG")]
        image: Option<PathBuf>,
    },
    /// Sign this device out: revoke its session on the server and forget the saved tokens.
    #[command(long_about = "Revoke this device's session on the server (RFC 7009) and delete the saved tokens. \
The device disappears from the account's device list.\n\nExample:\n    latchkey logout")]
    Logout,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create an account with a password.
    #[command(long_about = "Create an account. The password is asked for twice at a prompt, or read from the first line of \
standard input with --password-stdin (for scripts).\n\nExamples:\n    latchkey user add ann@example.com\n    \
echo \"$PASSWORD\" | latchkey user add ann@example.com --password-stdin")]
    Add {
        /// The account's e-mail address.
        email: String,
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Register an OAuth client.
    #[command(long_about = "Register an OAuth client. Public clients (the default) cannot keep a secret: CLIs, TVs, mobile apps, \
single-page apps. A confidential client (--confidential) gets a secret, printed once and stored only as a hash; it \
authenticates with client_secret_basic or client_secret_post and may introspect the tokens issued to itself; a \
resource server that checks the tokens of other clients is added with --introspect-any-token.\n\n\
An app that signs its users in through Latchkey (authorization code + PKCE, OpenID Connect) registers its redirect \
URIs: they are matched exactly, except that a public client's http://127.0.0.1/… loopback URI matches on any port \
(RFC 8252).\n\n\
Examples:\n    latchkey client add tv-app --name \"Living-room TV app\"\n    \
latchkey client add grafana --name Grafana --confidential --redirect-uri https://grafana.example.com/login/generic_oauth\n    \
latchkey client add api-gateway --name \"API gateway\" --confidential --introspect-any-token")]
    Add {
        /// The client_id: 1 to 64 letters, digits, dashes, underscores or dots.
        id: String,
        /// A name people will see when they approve this client.
        #[arg(long)]
        name: String,
        /// Give the client a secret.
        #[arg(long)]
        confidential: bool,
        /// Where the authorization answer may go (repeat for several).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Where RP-initiated logout may send the browser back to (repeat for several).
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
        /// The scopes the app may ask for, space-separated (default: openid profile email offline_access).
        #[arg(long)]
        scope: Option<String>,
        /// When to show the consent page: auto (once, remembered) or always.
        #[arg(long, default_value = "auto")]
        consent: String,
        /// How its id_tokens are signed: RS256 or EdDSA.
        #[arg(long, default_value = "RS256")]
        id_token_signed_response_alg: String,
        /// A resource server: may introspect the tokens of every client, not only its own
        /// (confidential clients only).
        #[arg(long, requires = "confidential")]
        introspect_any_token: bool,
    },
    /// List the registered clients.
    #[command(long_about = "List the registered clients, one per line: client_id, public or confidential, name and redirect \
URIs, tab-separated. With --json, every setting of each client as a JSON array (never a secret: only its hash is kept).")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one client.
    Show { id: String },
    /// Remove a client: its sessions end at once, its consents go, its id is never reused.
    #[command(long_about = "Remove a client. Every session it holds ends at once (access tokens stop working on their next \
use, refresh tokens are refused), the consents users gave it are dropped, and its client_id is never used again. The \
built-in latchkey-cli and latchkey-web cannot be removed.")]
    Remove { id: String },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Add a new signing key; the old one stays published until its last token has expired.
    #[command(
        long_about = "Add a new Ed25519 key (access tokens, EdDSA id_tokens) and a new RSA key (RS256 id_tokens) and sign with them. The previous key stays in \
/.well-known/jwks.json until every token it signed has expired, so nothing breaks. Running servers pick the new key up \
within 30 seconds: it is published at once and signs 90 seconds after it was added, once verifiers that \
cached the old JWKS have had time to refresh."
    )]
    Rotate,
}

impl GlobalArgs {
    fn overrides(&self, listen: Option<SocketAddr>) -> Overrides {
        Overrides { listen, database: self.database.clone(), data_dir: self.data_dir.clone(), log_format: self.log_format.clone() }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    crate::install_crypto_provider();
    let listen = match &cli.command {
        Command::Serve { listen } => *listen,
        _ => None,
    };
    // The device side talks to a server over HTTP and needs no server configuration.
    match cli.command {
        Command::Openapi => {
            println!("{}", crate::http::openapi::spec().to_pretty_json()?);
            return Ok(());
        }
        Command::Device(cmd) => return device::run(cmd, cli.global.credentials).await,
        Command::Whoami => return device::whoami(cli.global.credentials).await,
        Command::Logout => return device::logout(cli.global.credentials).await,
        Command::Approve { url, image } => return device::approve(cli.global.credentials, url, image).await,
        _ => {}
    }
    let settings = Settings::load(cli.global.config.as_deref(), std::env::vars(), &cli.global.overrides(listen))?;
    crate::telemetry::init(&settings.log.format, &settings.log.level);
    match cli.command {
        Command::Serve { .. } => serve(settings).await,
        Command::User(UserCommand::Add { email, password_stdin }) => user_add(settings, &email, password_stdin).await,
        Command::Client(cmd) => client(settings, cmd).await,
        Command::Keys(KeysCommand::Rotate) => keys_rotate(settings).await,
        Command::Audit { limit, json } => audit(settings, limit, json).await,
        Command::Policy(cmd) => policy::run(&settings, cmd),
        Command::Openapi | Command::Device(_) | Command::Whoami | Command::Logout | Command::Approve { .. } => Ok(()),
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    // Every waiting browser holds a socket, and the usual soft limit (often 1,024) would stall
    // accepting at once; the hard limit is the operator's to set (LimitNOFILE=, ulimit -Hn).
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if n < 4_096 => tracing::warn!(open_files = n, "the open-file limit is low for many waiting browsers; raise the hard limit"),
        Ok(n) => tracing::info!(open_files = n, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    let server = crate::server::Server::build(settings).await?;
    let addr = server.local_addr();
    let app = server.app();
    tracing::info!(%addr, issuer = %app.issuer, database = %redact(&app.settings.database_url()), "latchkey is ready");
    println!("latchkey listening on http://{addr}  (issuer {})", app.issuer);
    server.run(crate::server::shutdown_signal()).await
}

/// The app without a listener, for the operator's commands.
async fn offline_app(settings: Settings) -> anyhow::Result<App> {
    let store = crate::server::open_store(&settings, 2).await?;
    let issuer = settings.public_url(settings.server.listen);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    App::new(settings, store, Arc::new(LocalEvents::default()), clock, issuer).await
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_owned());
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("no terminal to ask for the password: use --password-stdin");
    }
    let first = rpassword::prompt_password("Password: ")?;
    let second = rpassword::prompt_password("Password again: ")?;
    anyhow::ensure!(first == second, "the passwords do not match");
    Ok(first)
}

async fn user_add(settings: Settings, email: &str, password_stdin: bool) -> anyhow::Result<()> {
    let email = Email::parse(email)?;
    let password = Password::parse(read_password(password_stdin)?)?;
    let app = offline_app(settings).await?;
    let user = accounts::create_user(&app, &email, &password).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Audit::new(AuditKind::AccountCreated)
        .user(&user.id)
        .detail(serde_json::json!({ "by": "cli" }))
        .record(&app)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("created account {} ({})", user.email.as_deref().unwrap_or("-"), user.id);
    Ok(())
}

async fn client(settings: Settings, cmd: ClientCommand) -> anyhow::Result<()> {
    let app = offline_app(settings).await?;
    let err = |e: crate::service::AppError| anyhow::anyhow!("{e}");
    match cmd {
        ClientCommand::Add {
            id,
            name,
            confidential,
            redirect_uris,
            post_logout_redirect_uris,
            scope,
            consent,
            id_token_signed_response_alg: alg,
            introspect_any_token,
        } => {
            let new = clients::NewClient {
                id: id.clone(),
                name,
                confidential,
                redirect_uris,
                post_logout_redirect_uris,
                scopes: scope,
                consent: clients::Consent::parse(&consent).map_err(err)?,
                id_token_alg: crate::keys::SigningAlg::parse(&alg)
                    .ok_or_else(|| anyhow::anyhow!("--id-token-signed-response-alg must be RS256 or EdDSA"))?,
                introspects_any: introspect_any_token,
            };
            match clients::create(&app, new).await.map_err(err)? {
                Some(secret) => {
                    println!("created confidential client {id}");
                    println!("client_secret: {secret}");
                    println!("This secret is shown only now; store it safely.");
                }
                None => println!("created public client {id}"),
            }
        }
        ClientCommand::List { json } => {
            let rows = clients::list(&app).await.map_err(err)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows.iter().map(client_json).collect::<Vec<_>>())?);
            } else {
                for c in rows {
                    let kind = if c.is_public() { "public" } else { "confidential" };
                    println!("{}\t{kind}\t{}\t{}", c.id, c.name, c.redirect_uri_list().collect::<Vec<_>>().join(" "));
                }
            }
        }
        ClientCommand::Show { id } => {
            let c = clients::show(&app, &id).await.map_err(|e| anyhow::anyhow!("client {id}: {e}"))?;
            println!("{}", serde_json::to_string_pretty(&client_json(&c))?);
        }
        ClientCommand::Remove { id } => {
            clients::remove(&app, &id).await.map_err(|e| anyhow::anyhow!("client {id}: {e}"))?;
            println!("removed client {id}; its sessions have ended");
        }
    }
    Ok(())
}

fn client_json(c: &crate::store::ClientRow) -> serde_json::Value {
    serde_json::json!({
        "client_id": c.id, "name": c.name, "confidential": !c.is_public(),
        "redirect_uris": c.redirect_uri_list().collect::<Vec<_>>(),
        "post_logout_redirect_uris": c.post_logout_uri_list().collect::<Vec<_>>(),
        "scope": c.scopes, "consent": c.consent, "id_token_signed_response_alg": c.id_token_alg,
        "introspects_any": c.introspects_any,
        "created_at": crate::clock::rfc3339(c.created_at),
    })
}

async fn keys_rotate(settings: Settings) -> anyhow::Result<()> {
    let app = offline_app(settings).await?;
    for (alg, kid) in app.keys.rotate(app.now()).await? {
        Audit::new(AuditKind::KeyRotated)
            .detail(serde_json::json!({ "kid": kid, "alg": alg.as_str() }))
            .record(&app)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("new {} signing key {kid}: published now, signing in 90 seconds", alg.as_str());
    }
    println!("previous keys stay published until their tokens expire");
    Ok(())
}

async fn audit(settings: Settings, limit: i64, json: bool) -> anyhow::Result<()> {
    let app = offline_app(settings).await?;
    let rows = app.store.audit_all(limit.clamp(1, 10_000)).await?;
    for r in rows {
        if json {
            let v = serde_json::json!({ "at": rfc3339(r.at), "kind": r.kind, "user_id": r.user_id, "device_id": r.device_id, "ip": r.ip,
                "user_agent": r.user_agent, "detail": serde_json::from_str::<serde_json::Value>(&r.detail).unwrap_or_default() });
            println!("{v}");
        } else {
            println!(
                "{}  {:<28} user={} device={} ip={}  {}",
                rfc3339(r.at),
                r.kind,
                r.user_id.as_deref().unwrap_or("-"),
                r.device_id.as_deref().unwrap_or("-"),
                r.ip.as_deref().unwrap_or("-"),
                r.detail
            );
        }
    }
    Ok(())
}

/// A database URL for logs: any password replaced by `***`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(super::redact("postgres://u:secret@db:5432/x"), "postgres://u:***@db:5432/x");
        assert_eq!(super::redact("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(super::redact("sqlite:///var/x.db"), "sqlite:///var/x.db");
    }
}
