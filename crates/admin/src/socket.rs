//! The local admin socket: how `xmppd` verbs reach the running daemon.
//!
//! A Unix stream socket (default `data_dir/xmppd.sock`) whose filesystem permissions are the
//! access control: mode 0600 (the server's user only), or 0660 with the group
//! `[admin] socket_group` names. It is bound under a temporary name, given its mode and
//! group, and only then renamed into place, so it is never reachable with looser
//! permissions. A path held by a live server (a connection succeeds) refuses the start; a
//! stale socket left by a crash is removed; anything else at the path refuses the start. The socket is removed at shutdown.
//!
//! The protocol is line-delimited JSON: one [`Request`] per line, one answer per line,
//! `{"ok": true, "result": …}` or `{"ok": false, "error": "invalid", "message": "…"}`.
//! A line over [`MAX_REQUEST_BYTES`] is refused and the connection closed; a connection
//! idle for [`IDLE_TIMEOUT`] is closed; at most [`MAX_REQUESTS_PER_CONNECTION`] requests are
//! answered on one connection and [`MAX_CONNECTIONS`] connections served at once.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader,
};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use xmppd_core::Router;

use crate::Admin;
use crate::request::{ErrorClass, Request, dispatch};

/// The longest request line.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// How long a connection may stay silent.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests answered on one connection.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 1000;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;

/// Why the socket could not be set up, or a request not made.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Another server answers on the path.
    #[error("{0} is in use by a running xmppd")]
    InUse(PathBuf),
    /// Something else than a socket is at the path.
    #[error("{0} exists and is not a socket: remove it or choose another [admin] socket")]
    NotASocket(PathBuf),
    /// Nobody listens on the path.
    #[error("xmppd is not running (nothing listens on {0})")]
    NotRunning(PathBuf),
    /// A system call failed.
    #[error("{path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The daemon's answer was not what the protocol says.
    #[error("unexpected answer from xmppd: {0}")]
    Protocol(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SocketError + '_ {
    move |source| SocketError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The socket, listening: removed when dropped.
#[derive(Debug)]
pub struct AdminSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl AdminSocket {
    /// Binds `path` with mode 0600, or 0660 and group `gid` when given.
    pub async fn bind(path: &Path, gid: Option<u32>) -> Result<Self, SocketError> {
        match UnixStream::connect(path).await {
            Ok(_) => return Err(SocketError::InUse(path.to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => {
                // Refused: a socket nobody serves any more (the server that made it died).
                // Anything else at the path (a mistyped path naming a file) is left alone.
                use std::os::unix::fs::FileTypeExt as _;
                let meta = std::fs::symlink_metadata(path).map_err(io(path))?;
                if !meta.file_type().is_socket() {
                    return Err(SocketError::NotASocket(path.to_owned()));
                }
                info!(path = %path.display(), "removing a stale admin socket");
                std::fs::remove_file(path).map_err(io(path))?;
            }
        }
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(format!(".{}", std::process::id()));
        let temporary = PathBuf::from(temporary);
        let _ = std::fs::remove_file(&temporary);
        let listener = UnixListener::bind(&temporary).map_err(io(path))?;
        let mode = if gid.is_some() { 0o660 } else { 0o600 };
        let placed = std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(mode))
            .and_then(|()| match gid {
                Some(gid) => std::os::unix::fs::chown(&temporary, None, Some(gid)),
                None => Ok(()),
            })
            .and_then(|()| std::fs::rename(&temporary, path));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&temporary);
            return Err(io(path)(e));
        }
        info!(path = %path.display(), mode = format!("{mode:o}"), "admin socket listening");
        Ok(AdminSocket {
            listener,
            path: path.to_owned(),
        })
    }

    /// Serves connections until `shutdown`, then removes the socket.
    pub async fn serve(
        self,
        admin: Admin,
        router: Arc<Router>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                a = self.listener.accept() => a,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!(error = %e, "admin socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                debug!("admin socket: too many connections");
                continue;
            };
            let (admin, router, shutdown) = (admin.clone(), router.clone(), shutdown.clone());
            tracker.spawn(async move {
                let _slot = slot;
                let (read, write) = stream.into_split();
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = connection(read, write, &admin, &router) => {}
                }
            });
        }
    }
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Answers the requests of one connection.
async fn connection(
    read: impl AsyncRead + Unpin,
    mut write: impl AsyncWrite + Unpin,
    admin: &Admin,
    router: &Router,
) {
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        line.clear();
        let limited = (&mut reader).take(MAX_REQUEST_BYTES as u64 + 1);
        let read = tokio::time::timeout(IDLE_TIMEOUT, read_line(limited, &mut line)).await;
        let (answer, last) = match read {
            Err(_) | Ok(Err(_)) | Ok(Ok(0)) => return,
            Ok(Ok(_)) if line.last() != Some(&b'\n') => (
                failure(
                    ErrorClass::Invalid,
                    &format!("a request is one line of at most {MAX_REQUEST_BYTES} bytes"),
                ),
                true,
            ),
            Ok(Ok(_)) => (answer(&line, admin, router).await, false),
        };
        let text = format!("{answer}\n");
        if write.write_all(text.as_bytes()).await.is_err() || last {
            return;
        }
    }
}

async fn read_line(
    mut limited: tokio::io::Take<&mut BufReader<impl AsyncRead + Unpin>>,
    line: &mut Vec<u8>,
) -> std::io::Result<usize> {
    limited.read_until(b'\n', line).await
}

fn failure(class: ErrorClass, message: &str) -> Value {
    json!({ "ok": false, "error": class.as_str(), "message": message })
}

async fn answer(line: &[u8], admin: &Admin, router: &Router) -> Value {
    let request: Request = match serde_json::from_slice(line) {
        Ok(r) => r,
        Err(e) => return failure(ErrorClass::Invalid, &format!("malformed request: {e}")),
    };
    match dispatch(admin, router, request).await {
        Ok(result) => json!({ "ok": true, "result": result }),
        Err(e) => failure(ErrorClass::of(&e), &e.to_string()),
    }
}

/// Sends one request (as JSON) to the daemon at `path` and returns its answer: `Ok(result)`,
/// or `Err((error class name, message))` for a refused request.
pub async fn request(
    path: &Path,
    request: &Value,
) -> Result<Result<Value, (String, String)>, SocketError> {
    let stream = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(SocketError::NotRunning(path.to_owned()));
        }
        Err(e) => return Err(io(path)(e)),
    };
    let (read, mut write) = stream.into_split();
    let text = format!("{request}\n");
    write.write_all(text.as_bytes()).await.map_err(io(path))?;
    let mut line = Vec::new();
    let limited = BufReader::new(read).take(64 * 1024 * 1024);
    let read = tokio::time::timeout(Duration::from_secs(120), {
        let mut limited = limited;
        async move {
            limited.read_until(b'\n', &mut line).await?;
            Ok::<_, std::io::Error>(line)
        }
    })
    .await;
    let line = match read {
        Ok(Ok(line)) => line,
        Ok(Err(e)) => return Err(io(path)(e)),
        Err(_) => return Err(SocketError::Protocol("no answer within 120 s".into())),
    };
    let answer: Value =
        serde_json::from_slice(&line).map_err(|e| SocketError::Protocol(e.to_string()))?;
    match answer.get("ok").and_then(Value::as_bool) {
        Some(true) => Ok(Ok(answer.get("result").cloned().unwrap_or(Value::Null))),
        Some(false) => {
            let text = |k: &str| {
                answer
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            Ok(Err((text("error"), text("message"))))
        }
        None => Err(SocketError::Protocol(answer.to_string())),
    }
}

#[cfg(test)]
mod tests;
