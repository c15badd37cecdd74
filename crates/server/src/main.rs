//! `xmppd`: run the server, manage accounts, check the configuration.

mod idle_memory;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use xmppd::config::{Config, LogFormat};
use xmppd::{admin, certs};

/// mimalloc instead of glibc malloc: glibc keeps memory freed by ended sessions in its
/// arenas, so the server's RSS never came back down after a login peak (13 → 195 MiB after
/// 10k logins and logouts); mimalloc returns freed pages to the system (at once, as
/// [`idle_memory::purge_freed_pages_at_once`] sets it, and with the collections on idle
/// workers in [`idle_memory`]), and its per-thread free lists suit the many small,
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
    /// Delete an account and everything stored for it.
    #[command(visible_alias = "unregister")]
    Deluser {
        /// The account, user@domain.
        jid: String,
    },
    /// Validate the configuration and the certificates; `check dns DOMAIN` looks up a remote
    /// domain as federation would.
    Check {
        #[command(subcommand)]
        what: Option<CheckCommand>,
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
    let signals = Signals::install()?;
    let server = xmppd::start(&config).await?;
    signals.wait().await;
    server.shutdown().await;
    Ok(())
}

/// SIGTERM and SIGINT (Ctrl-C), registered when created.
#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> anyhow::Result<Self> {
        Ok(Signals)
    }

    async fn wait(self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Checks every host's certificate; returns whether all are usable.
fn check(config: &Config) -> bool {
    let mut ok = true;
    match &config.source {
        Some(p) => println!("{}: configuration is valid", p.display()),
        None => println!("no configuration file: using the built-in localhost configuration"),
    }
    for host in &config.hosts {
        let Some((cert, key)) = &host.tls else {
            let (c, _) = certs::generated_paths(&config.data_dir, &host.name);
            println!(
                "{}: self-signed certificate ({}), generated if missing",
                host.name,
                c.display()
            );
            continue;
        };
        let result = certs::read_chain(cert).and_then(|c| certs::read_key(key).map(|k| (c, k)));
        match result {
            Err(e) => {
                ok = false;
                println!("{}: {e}", host.name);
            }
            Ok((chain, private_key)) => {
                let mut problems = certs::certificate_problems(&host.name, &chain[0]);
                let tls = xmppd_c2s::TlsSetup::new(vec![xmppd_c2s::HostCertificate {
                    host: host.name.clone(),
                    chain,
                    key: private_key,
                }]);
                if let Err(e) = tls {
                    problems.push(format!("key {}: {e}", key.display()));
                }
                if problems.is_empty() {
                    println!("{}: {} is valid", host.name, cert.display());
                } else {
                    ok = false;
                    for p in problems {
                        println!("{}: {}: {p}", host.name, cert.display());
                    }
                }
            }
        }
    }
    ok
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
        Command::Check { what: None } => {
            return Ok(if check(&config) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Adduser { jid } => {
            let jid = admin::account_jid(&config, &jid)?;
            let password = admin::read_password()?;
            let storage = xmppd::open_storage(&config).await?;
            xmppd::accounts(&storage).create(&jid, &password).await?;
            println!("created {jid}");
        }
        Command::Passwd { jid } => {
            let jid = admin::account_jid(&config, &jid)?;
            let password = admin::read_password()?;
            let storage = xmppd::open_storage(&config).await?;
            xmppd::accounts(&storage)
                .set_password(&jid, &password)
                .await?;
            println!("changed the password of {jid}");
        }
        Command::Deluser { jid } => {
            let jid = admin::account_jid(&config, &jid)?;
            let storage = xmppd::open_storage(&config).await?;
            xmppd::accounts(&storage).delete(&jid).await?;
            println!("deleted {jid}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    idle_memory::purge_freed_pages_at_once();
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
