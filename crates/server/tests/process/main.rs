//! Tests that run the built `xmppd` binary as a process (its CLI, logs, reload, restart,
//! systemd integration, migration), one module per area in one test binary rather than one
//! binary per file, each of which linked the server library again.

#[path = "../common/mod.rs"]
mod common;

mod admin_cli;
mod certificates;
mod check_dns;
mod cli;
mod invite;
mod logs;
mod migrate;
mod reload;
mod restart;
mod systemd;
