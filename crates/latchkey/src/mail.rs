//! Outgoing mail: SMTP when configured; otherwise each mail goes to the log and to an `.eml`
//! file under the data directory, so a zero-config server stays usable out of the box.

use crate::config::MailSettings;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::path::PathBuf;

pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Clone)]
enum Sink {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(PathBuf),
}

#[derive(Clone)]
pub struct Mailer {
    sink: Sink,
    from: Mailbox,
}

impl Mailer {
    pub fn new(s: &MailSettings, data_dir: &std::path::Path) -> anyhow::Result<Self> {
        let from: Mailbox = s.from.parse().map_err(|e| anyhow::anyhow!("mail.from {:?}: {e}", s.from))?;
        let sink = if s.smtp_url.is_empty() {
            Sink::Files(data_dir.join("mail"))
        } else {
            let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&s.smtp_url)
                .map_err(|e| anyhow::anyhow!("mail.smtp_url: {e}"))?
                .timeout(Some(std::time::Duration::from_secs(15)))
                .build();
            Sink::Smtp(transport)
        };
        Ok(Self { sink, from })
    }

    pub async fn send(&self, mail: Mail) -> anyhow::Result<()> {
        let to: Mailbox = mail.to.parse().map_err(|e| anyhow::anyhow!("recipient {:?}: {e}", mail.to))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .multipart(MultiPart::alternative_plain_html(mail.text.clone(), mail.html))?;
        match &self.sink {
            Sink::Smtp(t) => {
                t.send(message).await?;
            }
            Sink::Files(dir) => {
                std::fs::create_dir_all(dir)?;
                let path = dir.join(format!("{}.eml", uuid::Uuid::now_v7()));
                std::fs::write(&path, message.formatted())?;
                // No SMTP configured: the operator reads mail here (documented; configure SMTP in production).
                tracing::info!(to = %mail.to, subject = %mail.subject, file = %path.display(), "mail (no SMTP configured):\n{}", mail.text);
            }
        }
        Ok(())
    }
}
