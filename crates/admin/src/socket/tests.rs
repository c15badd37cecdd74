use std::os::unix::fs::PermissionsExt as _;

use super::*;

#[tokio::test]
async fn the_socket_is_private_and_removed_when_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xmppd.sock");
    let socket = AdminSocket::bind(&path, None).await.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    drop(socket);
    assert!(!path.exists());
}

#[tokio::test]
async fn a_live_socket_refuses_a_second_server_and_a_stale_one_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xmppd.sock");
    let first = AdminSocket::bind(&path, None).await.unwrap();
    assert!(matches!(
        AdminSocket::bind(&path, None).await,
        Err(SocketError::InUse(_))
    ));
    drop(first);
    // A socket file nobody listens on, as a crashed server leaves it.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let second = AdminSocket::bind(&path, None).await.unwrap();
    assert!(path.exists());
    drop(second);
}

#[tokio::test]
async fn a_client_without_a_daemon_is_told_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xmppd.sock");
    let answer = request(&path, &serde_json::json!({"verb": "stats"})).await;
    assert!(matches!(answer, Err(SocketError::NotRunning(_))));
}

#[tokio::test]
async fn a_file_at_the_path_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xmppd.db");
    std::fs::write(&path, b"precious").unwrap();
    assert!(matches!(
        AdminSocket::bind(&path, None).await,
        Err(SocketError::NotASocket(_))
    ));
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}
