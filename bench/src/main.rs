//! `xmppd-bench`: the load generator's command line.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use xmppd_bench::client::{self, Protocol, Target};
use xmppd_bench::scenarios::{self, Ctx};

#[derive(Parser)]
#[command(about = "XMPP load generator")]
struct Cli {
    /// Worker threads of the generator's runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Proto {
    /// XMPP with STARTTLS.
    Xmpp,
    /// The raw TLS relay.
    Relay,
    /// XMPP over WebSocket over TLS (RFC 7395) at --ws-path.
    Websocket,
}

#[derive(clap::Args, Clone)]
struct TargetArgs {
    /// Server address.
    #[arg(long)]
    addr: SocketAddr,
    /// XMPP domain and TLS server name.
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// PEM file of the CA that signed the server's certificate.
    #[arg(long)]
    ca: PathBuf,
    #[arg(long, value_enum, default_value = "xmpp")]
    protocol: Proto,
    /// The WebSocket endpoint's path (--protocol websocket).
    #[arg(long, default_value = "/xmpp-websocket")]
    ws_path: String,
    /// Accounts are PREFIX0, PREFIX1, …
    #[arg(long, default_value = "u")]
    prefix: String,
    #[arg(long, default_value = "benchpass")]
    password: String,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
}

#[derive(Subcommand)]
enum Command {
    /// Creates accounts by in-band registration (XEP-0077).
    Register {
        #[command(flatten)]
        target: TargetArgs,
        /// Number of accounts.
        #[arg(long)]
        users: usize,
    },
    /// Creates accounts straight in an xmppd data store (the server must be stopped).
    XmppdUsers {
        /// The xmppd configuration file.
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value = "u")]
        prefix: String,
        #[arg(long, default_value = "benchpass")]
        password: String,
        #[arg(long)]
        users: usize,
    },
    /// Runs scenarios and prints one JSON object per line.
    Run {
        #[command(flatten)]
        target: TargetArgs,
        /// The server's PID, for its CPU time and RSS.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Label of the server in the output.
        #[arg(long)]
        label: String,
        /// Comma-separated: warm, idle, login, throughput, latency, fanout, pep, muc, soak (not
        /// in the default list: it runs for up to --soak-seconds).
        #[arg(
            long,
            default_value = "warm,idle,login,throughput,latency,fanout,pep,muc"
        )]
        scenarios: String,
        /// Accounts logged in by `warm` (at least the largest of the others).
        #[arg(long, default_value_t = 10_000)]
        warm: usize,
        /// Idle sessions.
        #[arg(long, default_value_t = 10_000)]
        idle: usize,
        /// Login sizes.
        #[arg(long, default_value = "1000,5000,10000", value_delimiter = ',')]
        login: Vec<usize>,
        #[arg(long, default_value_t = 250)]
        pairs: usize,
        /// Messages in flight per direction and pair.
        #[arg(long, default_value_t = 8)]
        window: u64,
        /// Measured seconds of throughput and latency.
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        /// Total messages per second of the latency scenario.
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        #[arg(long, default_value_t = 50)]
        latency_pairs: usize,
        #[command(flatten)]
        fanout: Box<FanoutArgs>,
        #[command(flatten)]
        pep: Box<PepArgs>,
        #[command(flatten)]
        muc: Box<MucArgs>,
        #[command(flatten)]
        soak: Box<SoakArgs>,
        /// Stream management (XEP-0198) on the sessions of idle, throughput and latency:
        /// enabled after bind (resumable), the server's `<r/>` answered with `<a h/>`.
        #[arg(long)]
        sm: bool,
        /// With --sm, each end also sends `<r/>` after this many messages (0: never).
        #[arg(long, default_value_t = 0)]
        sm_request_every: u64,
    },
}

/// The presence fan-out scenario's settings.
#[derive(clap::Args, Clone)]
struct FanoutArgs {
    /// Groups of users who all have each other as contacts.
    #[arg(long, default_value_t = 2)]
    fanout_groups: usize,
    /// Members per group (a roster holds the other SIZE − 1).
    #[arg(long, default_value_t = 101)]
    fanout_size: usize,
    /// First account of the first group [default: the last GROUPS × SIZE accounts of --warm,
    /// which the other scenarios touch only before fanout runs].
    #[arg(long)]
    fanout_first: Option<usize>,
    /// Seconds allowed for building the rosters (Prosody took 105–311 s for 2 × 101 users).
    #[arg(long, default_value_t = 900.0)]
    fanout_setup_timeout: f64,
    /// Seconds allowed for the measured logins and presences.
    #[arg(long, default_value_t = 60.0)]
    fanout_timeout: f64,
}

impl FanoutArgs {
    fn settings(&self, warm: usize) -> anyhow::Result<scenarios::FanoutSettings> {
        let users = self.fanout_groups * self.fanout_size;
        let first = match self.fanout_first {
            Some(first) => first,
            None => warm.checked_sub(users).with_context(|| {
                format!("fanout needs {users} accounts but --warm is {warm}; set --fanout-first")
            })?,
        };
        Ok(scenarios::FanoutSettings {
            groups: scenarios::Groups {
                first,
                count: self.fanout_groups,
                size: self.fanout_size,
                shape: scenarios::Shape::Clique,
            },
            setup_timeout: Duration::try_from_secs_f64(self.fanout_setup_timeout)?,
            timeout: Duration::try_from_secs_f64(self.fanout_timeout)?,
        })
    }
}

/// The PEP fan-out scenario's settings.
#[derive(clap::Args, Clone)]
struct PepArgs {
    /// Contacts of the publisher (each with `+notify` capabilities).
    #[arg(long, default_value_t = 200)]
    pep_contacts: usize,
    /// Items published in the measured phase.
    #[arg(long, default_value_t = 200)]
    pep_publishes: usize,
    /// Publish requests unanswered at a time.
    #[arg(long, default_value_t = 16)]
    pep_window: usize,
    /// The publisher's account; its contacts are the next CONTACTS [default: the
    /// CONTACTS + 1 accounts of --warm just before the fan-out groups].
    #[arg(long)]
    pep_first: Option<usize>,
    /// Seconds allowed for building the rosters.
    #[arg(long, default_value_t = 900.0)]
    pep_setup_timeout: f64,
    /// Seconds allowed for the warm-up, and again for the measured publishes.
    #[arg(long, default_value_t = 60.0)]
    pep_timeout: f64,
}

impl PepArgs {
    fn settings(&self, warm: usize, fanout: &FanoutArgs) -> anyhow::Result<scenarios::PepSettings> {
        let size = self.pep_contacts + 1;
        let first = match self.pep_first {
            Some(first) => first,
            None => warm
                .checked_sub(fanout.fanout_groups * fanout.fanout_size + size)
                .with_context(|| {
                    format!("pep needs {size} accounts below the fan-out groups; set --pep-first")
                })?,
        };
        Ok(scenarios::PepSettings {
            groups: scenarios::Groups {
                first,
                count: 1,
                size,
                shape: scenarios::Shape::Star,
            },
            publishes: self.pep_publishes,
            window: self.pep_window,
            setup_timeout: Duration::try_from_secs_f64(self.pep_setup_timeout)?,
            timeout: Duration::try_from_secs_f64(self.pep_timeout)?,
        })
    }
}

/// The group chat scenario's settings.
#[derive(clap::Args, Clone)]
struct MucArgs {
    /// Room sizes, one room each (occupants, all logged-in clients of the generator).
    #[arg(long, default_value = "10,100,1000", value_delimiter = ',')]
    muc_sizes: Vec<usize>,
    /// Occupants that post (the same in every room: the first accounts of the room).
    #[arg(long, default_value_t = 5)]
    muc_senders: usize,
    /// Copies on their way in a room that the senders' windows aim at (at least one message
    /// per sender).
    #[arg(long, default_value_t = 4000)]
    muc_in_flight: u64,
    /// Seconds of posting before the measured window (which lasts --secs).
    #[arg(long, default_value_t = 2.0)]
    muc_warmup: f64,
    /// The room owner's account; the other occupants are the accounts after it.
    #[arg(long, default_value_t = 0)]
    muc_first: usize,
    /// The MUC service [default: conference.DOMAIN].
    #[arg(long)]
    muc_service: Option<String>,
    /// Room archiving as the owner configures it.
    #[arg(long, value_enum, default_value = "off")]
    muc_archive: Switch,
    /// The room configuration field that turns archiving on or off
    /// (`muc#roomconfig_enablearchiving` for xmppd and Prosody, `muc#roomconfig_mam` for
    /// ejabberd); without it the owner submits an empty form and the server's default decides.
    #[arg(long)]
    muc_archive_field: Option<String>,
    /// Seconds allowed for creating a room and all its joins (Prosody took 400 s for 1,000
    /// joins on a busy machine: each join is broadcast to every occupant).
    #[arg(long, default_value_t = 900.0)]
    muc_setup_timeout: f64,
    /// Seconds allowed for every copy to arrive after the senders stop.
    #[arg(long, default_value_t = 60.0)]
    muc_timeout: f64,
}

/// The soak scenario's settings.
#[derive(clap::Args, Clone)]
struct SoakArgs {
    /// Login and logout cycles (0: none).
    #[arg(long, default_value_t = 1_000_000)]
    soak_cycles: u64,
    /// Wall-clock bound on the cycles; a run it stops reports how far it got and is not a pass.
    #[arg(long, default_value_t = 1800.0)]
    soak_seconds: f64,
    /// Accounts the cycles log in, in turn [default: --warm].
    #[arg(long)]
    soak_accounts: Option<usize>,
    /// Cycles before the first RSS reading, the level the end is compared with.
    #[arg(long, default_value_t = 10_000)]
    soak_first_batch: u64,
    /// An RSS reading at every multiple of this many cycles.
    #[arg(long, default_value_t = 100_000)]
    soak_report_every: u64,
    /// Idle sessions to hold (0: none); fewer when the open-file limits or the local ports
    /// allow fewer, which the row says.
    #[arg(long, default_value_t = 100_000)]
    soak_idle: usize,
    /// Local addresses the soak's connections come from, in turn (e.g. 127.0.0.1,127.0.0.2):
    /// each has its own ephemeral ports [default: the kernel's choice].
    #[arg(long, value_delimiter = ',')]
    soak_sources: Vec<IpAddr>,
}

impl SoakArgs {
    fn settings(&self, warm: usize) -> anyhow::Result<scenarios::SoakSettings> {
        Ok(scenarios::SoakSettings {
            cycles: self.soak_cycles,
            time_limit: Duration::try_from_secs_f64(self.soak_seconds)?,
            accounts: self.soak_accounts.unwrap_or(warm),
            first_batch: self.soak_first_batch,
            report_every: self.soak_report_every,
            idle: self.soak_idle,
            quiet_timeout: Duration::from_secs(30),
        })
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Switch {
    On,
    Off,
}

impl MucArgs {
    fn settings(&self, domain: &str, secs: Duration) -> anyhow::Result<scenarios::MucSettings> {
        Ok(scenarios::MucSettings {
            first: self.muc_first,
            senders: self.muc_senders,
            in_flight: self.muc_in_flight,
            warmup: Duration::try_from_secs_f64(self.muc_warmup)?,
            secs,
            service: self
                .muc_service
                .clone()
                .unwrap_or_else(|| format!("conference.{domain}")),
            archiving: xmppd_bench::room::Archiving {
                on: matches!(self.muc_archive, Switch::On),
                field: self.muc_archive_field.clone(),
            },
            setup_timeout: Duration::try_from_secs_f64(self.muc_setup_timeout)?,
            timeout: Duration::try_from_secs_f64(self.muc_timeout)?,
        })
    }
}

fn target(args: &TargetArgs) -> anyhow::Result<Target> {
    Ok(Target {
        addr: args.addr,
        domain: args.domain.clone(),
        protocol: match args.protocol {
            Proto::Xmpp => Protocol::Xmpp,
            Proto::Relay => Protocol::Relay,
            Proto::Websocket => Protocol::WebSocket,
        },
        ws_path: args.ws_path.clone(),
        tls: client::tls_config(&args.ca)?,
        password: args.password.clone(),
        keys: Arc::new(Mutex::new(HashMap::new())),
    })
}

fn emit(label: &str, mut v: serde_json::Value) {
    v["server"] = serde_json::json!(label);
    println!("{v}");
    eprintln!("{label}: {v}");
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Register { target: t, users } => {
            let target = target(&t)?;
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..t.concurrency.clamp(1, 32) {
                let (target, next, prefix) = (target.clone(), next.clone(), t.prefix.clone());
                tasks.spawn(async move {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= users {
                            return Ok::<(), anyhow::Error>(());
                        }
                        let user = format!("{prefix}{i}");
                        tokio::time::timeout(
                            Duration::from_secs(60),
                            client::register(&target, &user),
                        )
                        .await
                        .with_context(|| format!("registering {user} timed out"))??;
                    }
                });
            }
            while let Some(r) = tasks.join_next().await {
                r??;
            }
            eprintln!("registered {users} accounts");
        }
        Command::XmppdUsers {
            config,
            prefix,
            password,
            users,
        } => {
            let config = xmppd::config::Config::load(&config)?;
            let storage = xmppd::open_storage(&config).await?;
            let accounts = xmppd::accounts(&storage);
            let domain = config.hosts[0].name.clone();
            for i in 0..users {
                let jid = jid::BareJid::new(&format!("{prefix}{i}@{domain}"))?;
                if accounts
                    .credentials(&domain, &format!("{prefix}{i}"))
                    .await?
                    .is_none()
                {
                    accounts.create(&jid, &password).await?;
                }
            }
            eprintln!("{users} accounts present");
        }
        Command::Run {
            target: t,
            server_pid,
            label,
            scenarios: which,
            warm,
            idle,
            login,
            pairs,
            window,
            secs,
            rate,
            latency_pairs,
            fanout,
            pep,
            muc,
            soak,
            sm,
            sm_request_every,
        } => {
            let asked = |name: &str| which.split(',').any(|s| s.trim() == name);
            if sm && (asked("fanout") || asked("pep") || asked("muc") || asked("soak")) {
                anyhow::bail!(
                    "--sm applies to idle, throughput and latency; run fanout, pep, muc and \
                     soak without it"
                );
            }
            // Checked before any scenario runs, but only when fan-out is asked for: its groups
            // are carved out of the --warm accounts.
            let pep = if asked("pep") {
                Some(pep.settings(warm, &fanout)?)
            } else {
                None
            };
            let fanout = if asked("fanout") {
                Some(fanout.settings(warm)?)
            } else {
                None
            };
            let ctx = Ctx {
                target: target(&t)?,
                server_pid,
                prefix: t.prefix.clone(),
                concurrency: t.concurrency,
                epoch: Instant::now(),
                sm: scenarios::Sm {
                    enabled: sm,
                    request_every: sm_request_every,
                },
                sources: Vec::new(),
            };
            let secs = Duration::from_secs_f64(secs);
            let muc_settings = muc.settings(&t.domain, secs)?;
            let soak_settings = soak.settings(warm)?;
            let mut rss_empty = ctx.rss();
            for s in which.split(',') {
                match s.trim() {
                    "warm" => {
                        let v = scenarios::warm(&ctx, warm).await;
                        rss_empty = v["rss_empty_kib"].as_u64().or(rss_empty);
                        emit(&label, v);
                    }
                    "idle" => emit(&label, scenarios::idle(&ctx, idle, rss_empty).await),
                    "login" => {
                        for &n in &login {
                            let mut v = scenarios::login(&ctx, n).await;
                            v["rss_empty_kib"] = serde_json::json!(rss_empty);
                            emit(&label, v);
                        }
                    }
                    "throughput" => {
                        emit(
                            &label,
                            scenarios::throughput(&ctx, pairs, window, secs).await,
                        );
                    }
                    "latency" => {
                        emit(
                            &label,
                            scenarios::latency(&ctx, pairs * 2, rate, latency_pairs, secs).await,
                        );
                    }
                    "fanout" => {
                        if let Some(fanout) = &fanout {
                            emit(&label, scenarios::fanout(&ctx, fanout).await);
                        }
                    }
                    "pep" => {
                        if let Some(pep) = &pep {
                            emit(&label, scenarios::pep(&ctx, pep).await);
                        }
                    }
                    "muc" => {
                        for &n in &muc.muc_sizes {
                            emit(&label, scenarios::muc(&ctx, &muc_settings, n).await);
                        }
                    }
                    "soak" => {
                        let soak_ctx = Ctx {
                            sources: soak.soak_sources.clone(),
                            ..ctx.clone()
                        };
                        if soak_settings.cycles > 0 {
                            emit(
                                &label,
                                scenarios::soak_cycles(&soak_ctx, &soak_settings).await,
                            );
                        }
                        if soak_settings.idle > 0 {
                            emit(
                                &label,
                                scenarios::soak_idle(&soak_ctx, &soak_settings).await,
                            );
                        }
                    }
                    other => anyhow::bail!("unknown scenario {other}"),
                }
            }
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xmppd-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
