//! The files on disk, under the module's directory (`<data_dir>/upload` by default):
//!
//! ```text
//! files/ID/data        the bytes
//! files/ID/meta.json   owner, name, size, content type, upload time
//! tmp/ID.RANDOM/       an upload in progress, the same two files
//! ```
//!
//! An upload writes into its own `tmp/` directory and renames it to `files/ID` only once the
//! body is complete and synced: a reader never sees a partial file, a failed or cut upload
//! removes its directory, and a second upload to the same slot finds `files/ID` taken (the
//! rename of a directory onto a non-empty one fails) rather than replacing the first. What a
//! crash leaves in `tmp/` is removed by the sweep.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;

use crate::slot;

/// What is kept beside a file's bytes: enough to serve it and to find its record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The owner's host.
    pub host: String,
    /// The owner's localpart.
    pub user: String,
    /// The file name, as requested.
    pub name: String,
    /// The size in bytes.
    pub size: u64,
    /// The declared content type, if any.
    pub content_type: Option<String>,
    /// Unix seconds of the slot request.
    pub created: u64,
}

/// Largest `meta.json` read back (a name is at most 255 bytes; the rest is small).
const MAX_META_BYTES: u64 = 4096;

/// Why an upload's body was not stored.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The body went on past the slot's size (413).
    #[error("the body is larger than the slot")]
    TooLarge,
    /// The body ended before the slot's size (400).
    #[error("the body is shorter than the slot ({got} of {want} bytes)")]
    TooShort {
        /// Bytes received.
        got: u64,
        /// The slot's size.
        want: u64,
    },
    /// The slot's file is already there (409).
    #[error("the file of this slot was already uploaded")]
    Exists,
    /// The client's body stream failed (it went away).
    #[error("the body could not be read: {0}")]
    Body(String),
    /// The file system failed.
    #[error("the file could not be written: {0}")]
    Io(#[from] io::Error),
}

/// The directory tree of the uploaded files.
#[derive(Clone, Debug)]
pub struct Files {
    root: PathBuf,
}

/// Removes an unfinished upload's directory when dropped (an error, a cut connection, a
/// cancelled request future all end here).
struct TmpGuard(Option<PathBuf>);

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            // Synchronous on purpose: it also runs when the request future is dropped.
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %dir.display(), error = %e, "a partial upload was left");
            }
        }
    }
}

impl Files {
    /// The tree under `root`, created if missing.
    pub fn open(root: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(root.join("files"))?;
        std::fs::create_dir_all(root.join("tmp"))?;
        Ok(Files { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, id: &str) -> Option<PathBuf> {
        slot::is_id(id).then(|| self.root.join("files").join(id))
    }

    /// Streams `body` into a new file for slot `id`: exactly `meta.size` bytes, never more
    /// than one chunk in memory. The file is visible only once complete.
    pub async fn write<S, E>(&self, id: &str, meta: &Meta, body: S) -> Result<(), WriteError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let target = self
            .dir(id)
            .ok_or_else(|| WriteError::Io(io::Error::other("not a slot id")))?;
        if tokio::fs::try_exists(&target).await? {
            return Err(WriteError::Exists);
        }
        let tmp = self.root.join("tmp").join(format!(
            "{id}.{}",
            slot::new_id().map_err(|e| io::Error::other(e.to_string()))?
        ));
        tokio::fs::create_dir(&tmp).await?;
        let mut guard = TmpGuard(Some(tmp.clone()));
        let mut file = tokio::fs::File::create(tmp.join("data")).await?;
        let mut got: u64 = 0;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| WriteError::Body(e.to_string()))?;
            got = got.saturating_add(chunk.len() as u64);
            if got > meta.size {
                return Err(WriteError::TooLarge);
            }
            file.write_all(&chunk).await?;
        }
        if got != meta.size {
            return Err(WriteError::TooShort {
                got,
                want: meta.size,
            });
        }
        file.sync_all().await?;
        drop(file);
        let json = serde_json::to_vec(meta).map_err(io::Error::other)?;
        tokio::fs::write(tmp.join("meta.json"), json).await?;
        match tokio::fs::rename(&tmp, &target).await {
            Ok(()) => {
                guard.0 = None;
                Ok(())
            }
            Err(_) if tokio::fs::try_exists(&target).await.unwrap_or(false) => {
                Err(WriteError::Exists)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The stored file `id`: its meta and the path of its bytes; `None` when there is none
    /// (or `id` is not an id).
    pub async fn find(&self, id: &str) -> io::Result<Option<(Meta, PathBuf)>> {
        let Some(dir) = self.dir(id) else {
            return Ok(None);
        };
        let meta = match read_meta(&dir.join("meta.json")).await {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some((meta, dir.join("data"))))
    }

    /// Removes the file `id`; `false` if there was none.
    pub async fn remove(&self, id: &str) -> io::Result<bool> {
        let Some(dir) = self.dir(id) else {
            return Ok(false);
        };
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Up to `limit` stored ids after `after` (in byte order), sorted: one round of the
    /// sweep, with memory bounded by `limit` however many files there are.
    pub async fn ids_after(&self, after: &str, limit: usize) -> io::Result<Vec<String>> {
        let mut best = std::collections::BinaryHeap::new();
        let mut entries = tokio::fs::read_dir(self.root.join("files")).await?;
        while let Some(entry) = entries.next_entry().await? {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.as_str() <= after || !slot::is_id(&name) {
                continue;
            }
            best.push(name);
            if best.len() > limit {
                best.pop();
            }
        }
        Ok(best.into_sorted_vec())
    }

    /// Removes up to `limit` unfinished uploads older than `age` (left by a crash); returns
    /// how many.
    pub async fn clean_tmp(&self, age: Duration, limit: usize) -> io::Result<usize> {
        let mut removed = 0;
        let mut entries = tokio::fs::read_dir(self.root.join("tmp")).await?;
        let now = SystemTime::now();
        while let Some(entry) = entries.next_entry().await? {
            if removed >= limit {
                break;
            }
            let modified = entry.metadata().await?.modified()?;
            if now.duration_since(modified).unwrap_or_default() >= age {
                tokio::fs::remove_dir_all(entry.path()).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

async fn read_meta(path: &Path) -> io::Result<Meta> {
    use tokio::io::AsyncReadExt as _;
    let file = tokio::fs::File::open(path).await?;
    let mut buf = Vec::new();
    file.take(MAX_META_BYTES).read_to_end(&mut buf).await?;
    serde_json::from_slice(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(size: u64) -> Meta {
        Meta {
            host: "example.org".into(),
            user: "alice".into(),
            name: "a.txt".into(),
            size,
            content_type: Some("text/plain".into()),
            created: 1,
        }
    }

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, String>> {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    fn tmp_is_empty(files: &Files) -> bool {
        std::fs::read_dir(files.root().join("tmp"))
            .expect("tmp")
            .next()
            .is_none()
    }

    #[tokio::test]
    async fn a_complete_body_is_stored_and_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Files::open(dir.path().to_owned()).expect("open");
        let id = slot::new_id().expect("id");
        files
            .write(&id, &meta(6), chunks(&[b"hel", b"lo\n"]))
            .await
            .expect("stored");
        let (found, path) = files.find(&id).await.expect("read").expect("there");
        assert_eq!(found, meta(6));
        assert_eq!(std::fs::read(path).expect("data"), b"hello\n");
        assert!(tmp_is_empty(&files));
        let again = files.write(&id, &meta(6), chunks(&[b"hello\n"])).await;
        assert!(matches!(again, Err(WriteError::Exists)), "{again:?}");
        assert_eq!(
            files.ids_after("", 10).await.expect("ids"),
            vec![id.clone()]
        );
        assert!(files.ids_after(&id, 10).await.expect("ids").is_empty());
        assert!(files.remove(&id).await.expect("remove"));
        assert!(files.find(&id).await.expect("read").is_none());
    }

    #[tokio::test]
    async fn bad_bodies_leave_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Files::open(dir.path().to_owned()).expect("open");
        let id = slot::new_id().expect("id");
        let long = files.write(&id, &meta(3), chunks(&[b"ab", b"cd"])).await;
        assert!(matches!(long, Err(WriteError::TooLarge)), "{long:?}");
        let short = files.write(&id, &meta(3), chunks(&[b"ab"])).await;
        assert!(
            matches!(short, Err(WriteError::TooShort { got: 2, want: 3 })),
            "{short:?}"
        );
        let cut = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"a")),
            Err("connection reset".to_owned()),
        ]);
        let cut = files.write(&id, &meta(3), cut).await;
        assert!(matches!(cut, Err(WriteError::Body(_))), "{cut:?}");
        assert!(files.find(&id).await.expect("read").is_none());
        assert!(tmp_is_empty(&files));
        assert!(files.find("../../etc").await.expect("read").is_none());
        assert!(!files.remove("..").await.expect("remove"));
    }

    #[tokio::test]
    async fn the_sweep_pages_ids_in_bounded_rounds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Files::open(dir.path().to_owned()).expect("open");
        let mut ids = Vec::new();
        for _ in 0..5 {
            let id = slot::new_id().expect("id");
            files
                .write(&id, &meta(1), chunks(&[b"x"]))
                .await
                .expect("stored");
            ids.push(id);
        }
        ids.sort();
        let first = files.ids_after("", 2).await.expect("ids");
        assert_eq!(first, ids[..2]);
        let next = files.ids_after(&first[1], 2).await.expect("ids");
        assert_eq!(next, ids[2..4]);
        std::fs::create_dir(files.root().join("tmp").join("old")).expect("mkdir");
        assert_eq!(
            files
                .clean_tmp(Duration::from_secs(3600), 10)
                .await
                .expect("clean"),
            0
        );
        assert_eq!(files.clean_tmp(Duration::ZERO, 10).await.expect("clean"), 1);
    }
}
