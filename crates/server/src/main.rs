//! `xmppd`: run the server, manage accounts, check the configuration.

mod idle_memory;
mod invite_cli;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde_json::json;
use tracing_subscriber::EnvFilter;
use xmppd::config::{Config, LogFormat};
use xmppd::{admin, cert_dir, certs, migrate, systemd};

/// mimalloc instead of glibc malloc: glibc keeps memory freed by ended sessions in its
/// arenas, so the server's RSS never came back down after a login peak (13 → 195 MiB after
/// 10k logins and logouts); mimalloc returns freed pages to the system (after the short
/// delay [`idle_memory::set_purge_delay`] sets, and with the collections on idle workers in
/// [`idle_memory`]), and its per-thread free lists suit the many small,
/// short-lived allocations of stanza routing. Built without transparent huge pages, which
/// would round idle memory up to 2 MiB pages.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An XMPP server.
#[derive(Debug, Parser)]
#[command(name = "xmppd", version, about)]
struct Cli {
    /// Configuration file (TOML). Without it: `localhost` served from ./data on 127.0.0.1.
    #[arg(short, long, global = true, env = "XMPPD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server until SIGTERM or Ctrl-C.
    Serve,
    /// Create an account; the password is prompted for, or read from standard input.
    /// Through the running server when it listens on its admin socket, else on storage.
    #[command(visible_alias = "register")]
    Adduser {
        /// The account, user@domain.
        jid: String,
    },
    /// Change an account's password.
    #[command(visible_alias = "change_password")]
    Passwd {
        /// The account, user@domain.
        jid: String,
    },
    /// Delete an account and everything stored for it; through the running server when it
    /// listens on its admin socket (which ends the account's sessions), else on storage.
    #[command(visible_alias = "unregister")]
    Deluser {
        /// The account, user@domain.
        jid: String,
    },
    /// Accounts: `user list HOST`.
    User {
        #[command(subcommand)]
        what: UserCommand,
    },
    /// List a host's accounts (ejabberd's name for `user list HOST`).
    #[command(name = "registered_users")]
    RegisteredUsers {
        /// The host.
        host: String,
    },
    /// List the sessions bound on the running server (of HOST, or all).
    #[command(visible_alias = "connected_users")]
    Sessions {
        /// Only this host's sessions.
        host: Option<String>,
    },
    /// End a session (user@host/resource) or every session of an account (user@host) on
    /// the running server, with a policy-violation stream error.
    #[command(visible_alias = "kick_session")]
    Kick {
        /// The JID.
        jid: String,
        /// Told to the client in the stream error.
        reason: Option<String>,
    },
    /// Accounts and sessions per host, uptime and federation links of the running server.
    Stats,
    /// Send a headline message from HOST to every session bound on it.
    Announce {
        /// The host.
        host: String,
        /// The text.
        message: String,
    },
    /// Invitations (XEP-0401): `invite create` prints an xmpp: URI and a landing page URL
    /// that let someone register (even with open registration off), reset a password, or
    /// become a user's contact; `invite list`, `invite revoke`.
    Invite {
        #[command(subcommand)]
        what: invite_cli::InviteCommand,
    },
    /// Certificates: `cert import [DIR...]` copies each host's certificate and key from
    /// certbot's live directory (the default) or others into the certificates directory.
    Cert {
        #[command(subcommand)]
        what: CertCommand,
    },
    /// Import accounts (with their SCRAM credentials), rosters, vCards, private XML and
    /// offline messages from a XEP-0227 file, as Prosody's prosody-migrator and ejabberd's
    /// export_piefxis write them. Existing accounts are left unchanged.
    Import {
        /// The XEP-0227 files (Prosody writes one per account, ejabberd one that includes
        /// one per host).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Export every account of the configured hosts to a XEP-0227 file (mode 0600).
    Export {
        /// The file to write.
        file: PathBuf,
    },
    /// Validate the configuration, then have the running server read it again (SIGHUP to
    /// the PID in data_dir/xmppd.pid): certificates take effect for new connections at once.
    Reload,
    /// Validate the configuration and the certificates; `check dns DOMAIN` looks up a remote
    /// domain as federation would.
    Check {
        #[command(subcommand)]
        what: Option<CheckCommand>,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// List a host's accounts.
    List {
        /// The host.
        host: String,
    },
}

#[derive(Debug, Subcommand)]
enum CertCommand {
    /// Copy each host's certificate and key from DIRs laid out as certbot's live directory
    /// (`DOMAIN/fullchain.pem` + `privkey.pem`) or Prosody's (`DOMAIN.crt` + `DOMAIN.key`)
    /// into `[general] certificates`; run it from the renewal hook, then `xmppd reload`.
    Import {
        /// Where to look, in order.
        #[arg(default_value = "/etc/letsencrypt/live")]
        dirs: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum CheckCommand {
    /// Print the SRV and A/AAAA records found for DOMAIN and whether the certificate its
    /// server presents is valid for it.
    Dns {
        /// The remote XMPP domain.
        domain: String,
    },
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::default_localhost(),
    })
}

fn init_logging(default: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Human => {
            // Colours only on a terminal: journald and log files get plain text.
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
            builder.with_target(false).with_ansi(ansi).init();
        }
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    match &config.source {
        Some(path) => tracing::info!(config = %path.display(), "starting"),
        None => tracing::info!(
            data_dir = %config.data_dir.display(),
            "starting with the built-in configuration: serving localhost"
        ),
    }
    // The handlers exist before the first listener does: a SIGTERM that arrives as soon as
    // clients can connect is a graceful shutdown, not the default action (instant death).
    let mut signals = Signals::install()?;
    let server = xmppd::start(&config).await?;
    let hosts: Vec<&str> = config.hosts.iter().map(|h| h.name.as_str()).collect();
    let status = format!("serving {}", hosts.join(", "));
    let pid_file = admin::PidFile::create(&config.data_dir)?;
    systemd::ready(&status);
    let watchdog = systemd::spawn_watchdog();
    while signals.next().await == Signal::Reload {
        reload(&server, config.source.as_deref());
        systemd::ready(&status);
    }
    systemd::stopping();
    drop(pid_file);
    if let Some(w) = watchdog {
        w.abort();
    }
    server.shutdown().await;
    Ok(())
}

/// Reads the configuration file again and applies what can change in place; a file that
/// does not validate changes nothing (its error is logged with file, line and key).
fn reload(server: &xmppd::RunningServer, source: Option<&std::path::Path>) {
    let Some(path) = source else {
        tracing::warn!("SIGHUP: the built-in configuration has no file to read again");
        return;
    };
    systemd::reloading();
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(error = %e, "reload refused: the running configuration stays");
            return;
        }
    };
    match server.reload(&config) {
        Ok(report) => {
            tracing::info!(
                config = %path.display(),
                certificates = ?report.certificates,
                hosts_added = ?report.hosts_added,
                hosts_removed = ?report.hosts_removed,
                modules = ?report.modules.modules,
                "reloaded: new connections follow the new configuration"
            );
            for key in &report.modules.restart {
                tracing::warn!(config = %path.display(), %key, "this setting takes effect at the next restart");
            }
            if report.needs_restart {
                tracing::warn!(
                    config = %path.display(),
                    "the file also changes listeners, storage, components, HTTP, stream management or a host's own module list; those changes take effect at the next restart"
                );
            }
        }
        Err(e) => tracing::error!(error = %e, "reload refused: the running configuration stays"),
    }
}

/// What a signal asks of the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    /// SIGTERM, SIGINT: shut down.
    Stop,
    /// SIGHUP: read the configuration again.
    Reload,
}

/// SIGTERM, SIGINT (Ctrl-C) and SIGHUP, registered when created.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?,
            hup: signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}

/// Checks every host's certificate; returns whether all are usable. A certificate that
/// expires within [`RENEWAL_WARNING_DAYS`] is reported but does not fail the check.
fn check(config: &Config) -> bool {
    let mut ok = true;
    match &config.source {
        Some(p) => println!("{}: configuration is valid", p.display()),
        None => println!("no configuration file: using the built-in localhost configuration"),
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    for host in &config.hosts {
        let files = certs::host_files(host, config.certificates.as_deref(), &config.data_dir);
        let (cert, key) = (&files.cert, &files.key);
        let from = match files.source {
            certs::CertSource::Configured => "",
            certs::CertSource::Directory => " (certificates directory)",
            certs::CertSource::Generated => {
                println!(
                    "{}: self-signed certificate ({}), generated if missing",
                    host.name,
                    cert.display()
                );
                continue;
            }
        };
        let result = certs::read_chain(cert).and_then(|c| certs::read_key(key).map(|k| (c, k)));
        match result {
            Err(e) => {
                ok = false;
                println!("{}: {e}", host.name);
            }
            Ok((chain, private_key)) => {
                let mut problems = certs::certificate_problems(&host.name, &chain[0]);
                if let Err(e) = certs::key_matches(&chain, &private_key) {
                    problems.push(format!("key {}: {e}", key.display()));
                }
                if problems.is_empty() {
                    let expiry = cert_dir::not_after(&chain[0]).map_or_else(String::new, |t| {
                        let days = (t - now) / 86_400;
                        let warning = if days < RENEWAL_WARNING_DAYS {
                            "; renew it soon"
                        } else {
                            ""
                        };
                        format!(" until {} ({days} days left{warning})", utc_date(t))
                    });
                    println!("{}: {}{from} is valid{expiry}", host.name, cert.display());
                } else {
                    ok = false;
                    for p in problems {
                        println!("{}: {}{from}: {p}", host.name, cert.display());
                    }
                }
            }
        }
    }
    ok
}

/// `xmppd check` warns about certificates that expire in fewer days than this.
const RENEWAL_WARNING_DAYS: i64 = 14;

/// A Unix time's UTC date, YYYY-MM-DD.
fn utc_date(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => {
            let d = t.date();
            format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
        }
        Err(_) => format!("@{unix}"),
    }
}

/// Prints what an import did; the exit status is a failure when the file broke off or an
/// account was refused.
fn print_import_report(
    report: &migrate::ImportReport,
    failures: &[migrate::ImportError],
) -> ExitCode {
    for who in &report.imported {
        println!("imported {who}");
    }
    for who in &report.existing {
        println!("{who} exists already: left unchanged");
    }
    for (who, why) in &report.refused {
        println!("{who} not imported: {why}");
    }
    for (who, what) in &report.notes {
        println!("{who}: {what}");
    }
    if !report.skipped_parts.is_empty() {
        println!(
            "not imported (not kept by this server's import): <{}/>",
            report.skipped_parts.join("/>, <")
        );
    }
    println!(
        "{} imported, {} already there, {} refused",
        report.imported.len(),
        report.existing.len(),
        report.refused.len()
    );
    for e in failures {
        eprintln!("xmppd: {e}; the accounts before it were imported");
    }
    if failures.is_empty() && report.refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn import_certificates(config: &Config, dirs: &[PathBuf]) -> anyhow::Result<bool> {
    let Some(target) = &config.certificates else {
        anyhow::bail!(
            "no configuration file: give --config, whose certificates directory receives them"
        );
    };
    let hosts: Vec<String> = config.hosts.iter().map(|h| h.name.clone()).collect();
    let mut imported = 0;
    let mut ok = true;
    for (host, outcome) in cert_dir::import(&hosts, dirs, target)? {
        match outcome {
            cert_dir::ImportOutcome::Imported { from, not_after } => {
                imported += 1;
                println!(
                    "{host}: imported {} into {} (valid until {})",
                    from.display(),
                    target.display(),
                    utc_date(not_after)
                );
            }
            cert_dir::ImportOutcome::NotFound => println!("{host}: no certificate found"),
            cert_dir::ImportOutcome::Refused { from, problems } => {
                ok = false;
                for p in problems {
                    println!("{host}: {} not imported: {p}", from.display());
                }
            }
        }
    }
    if imported > 0 {
        println!(
            "run `xmppd reload` (or `systemctl reload xmppd`) to serve the imported certificates"
        );
    }
    Ok(ok && imported > 0)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = load_config(cli.config.as_ref())?;
    match cli.command {
        Command::Serve => {
            init_logging(&config.log, config.log_format);
            serve(config).await?;
        }
        Command::Check {
            what: Some(CheckCommand::Dns { domain }),
        } => {
            let local = config
                .hosts
                .first()
                .map_or("localhost", |h| h.name.as_str());
            let ok = xmppd::check_dns::check_dns(&domain, local).await?;
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Cert {
            what: CertCommand::Import { dirs },
        } => {
            return Ok(if import_certificates(&config, &dirs)? {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Import { files } => {
            let storage = xmppd::open_storage(&config).await?;
            let hosts: Vec<String> = config.hosts.iter().map(|h| h.name.clone()).collect();
            let settings = migrate::ImportSettings::from_config(&config)?;
            let mut report = migrate::ImportReport::default();
            let mut failures = Vec::new();
            for file in &files {
                let (one, read) = migrate::import(file, &storage, &hosts, &settings).await;
                report.merge(one);
                if let Err(e) = read {
                    failures.push(e);
                }
            }
            return Ok(print_import_report(&report, &failures));
        }
        Command::Export { file } => {
            let storage = xmppd::open_storage(&config).await?;
            let hosts: Vec<String> = config.hosts.iter().map(|h| h.name.clone()).collect();
            let accounts = migrate::export(&file, &storage, &hosts).await?;
            println!("exported {accounts} accounts to {}", file.display());
        }
        Command::Reload => {
            let Some(path) = &config.source else {
                anyhow::bail!("give --config: the built-in configuration has nothing to reload");
            };
            let pid = admin::signal_reload(&config.data_dir)?;
            println!(
                "{}: configuration is valid; asked xmppd (pid {pid}) to reload it",
                path.display()
            );
        }
        Command::Check { what: None } => {
            return Ok(if check(&config) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Adduser { jid } => admin::add_user(&config, &jid).await?,
        Command::Passwd { jid } => admin::change_password(&config, &jid).await?,
        Command::Deluser { jid } => admin::delete_user(&config, &jid).await?,
        Command::User {
            what: UserCommand::List { host },
        }
        | Command::RegisteredUsers { host } => admin::list_users(&config, &host).await?,
        Command::Sessions { host } => {
            let result = admin::daemon(&config, json!({"verb": "sessions", "host": host})).await?;
            admin::print_result(&result);
        }
        Command::Kick { jid, reason } => {
            let request = json!({"verb": "kick", "jid": jid, "reason": reason});
            let result = admin::daemon(&config, request).await?;
            let ended = result.get("sessions_ended").cloned().unwrap_or_default();
            println!("kicked {jid} ({ended} sessions ended)");
        }
        Command::Stats => {
            let result = admin::daemon(&config, json!({"verb": "stats"})).await?;
            admin::print_result(&result);
        }
        Command::Announce { host, message } => {
            let request = json!({"verb": "announce", "host": host, "message": message});
            let result = admin::daemon(&config, request).await?;
            let sent = result.get("sessions").cloned().unwrap_or_default();
            println!("sent to {sent} sessions");
        }
        Command::Invite { what } => {
            let storage = xmppd::open_storage(&config).await?;
            invite_cli::run(&config, &storage, what).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    idle_memory::set_purge_delay();
    let collector = Arc::new(idle_memory::Collector::default());
    let park = Arc::clone(&collector);
    let unpark = Arc::clone(&collector);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(move || park.before_park())
        .on_thread_unpark(move || unpark.after_unpark())
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("xmppd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _waker = match collector.start_waker(runtime.handle().clone()) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("xmppd: cannot start the memory collector's thread: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xmppd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
