//! systemd's service notifications (sd_notify(3)) for `Type=notify` units: `READY=1` once every
//! listener accepts connections (so units ordered after xmppd start only when clients can log
//! in), `STOPPING=1` when a shutdown begins, `RELOADING=1`/`READY=1` around a reload, and the
//! watchdog's `WATCHDOG=1`.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every call does nothing. A notification that cannot
//! be sent is logged and otherwise ignored: the server runs the same whether or not its
//! supervisor hears it.

use std::time::Duration;

use sd_notify::NotifyState;

/// Tells the service manager that startup is finished, with a status line for
/// `systemctl status`.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells the service manager that the server is shutting down, so `systemctl` shows
/// "deactivating" and does not count the time against the start timeout.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Tells the service manager that a reload has begun. systemd 253 and newer want the
/// monotonic time beside it (`MONOTONIC_USEC`) to match the `READY=1` that ends it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the monotonic clock for systemd");
            send(&[NotifyState::Reloading]);
        }
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// The watchdog interval systemd asks for (`WatchdogSec=` sets `WATCHDOG_USEC`), when it is
/// meant for this process: `WATCHDOG_PID` absent or ours, as sd_watchdog_enabled(3) reads them.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if usec == 0 {
        return None;
    }
    match std::env::var("WATCHDOG_PID") {
        Ok(pid) if pid.parse::<u32>().ok() != Some(std::process::id()) => None,
        _ => Some(Duration::from_micros(usec)),
    }
}

/// Sends `WATCHDOG=1` at half the interval systemd asked for, from a task on the server's
/// runtime: when the runtime stops scheduling tasks (a deadlock, a blocked worker), the
/// pings stop and systemd restarts the service as `Restart=` says.
pub fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let interval = watchdog_interval()?;
    tracing::info!(
        interval_ms = interval.as_millis(),
        "systemd watchdog enabled"
    );
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval / 2);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    }))
}
