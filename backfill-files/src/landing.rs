//! Where files land: a small storage abstraction and its local-directory implementation.

use std::fmt;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use backfill_core::{Error, Result};
use sha2::{Digest, Sha256};

/// One object found by a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandedObject {
    /// Path relative to the landing root, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// The store's entity tag, where it has one.
    pub e_tag: Option<String>,
}

/// A landing area: a directory tree or an object store bucket addressed by `/`-separated paths.
///
/// # Contract
/// 1. `list(prefix)` returns every object under `prefix` (recursively), in any order; a prefix that
///    does not exist lists nothing.
/// 2. `get` returns the object's whole content, or [`Error::NotFound`] naming the path when it
///    is absent.
/// 3. `archive(from, to)` moves an object without overwriting: when `to` exists with the same
///    content, `from` is only deleted; when `to` exists with other content it is an error. An
///    archive whose `from` is gone and whose `to` exists has already happened and succeeds, so
///    archiving is idempotent.
/// 4. Errors that may pass (I/O interrupted, a store timing out) are
///    [`ErrorKind::Transient`](backfill_core::ErrorKind).
#[async_trait]
pub trait Landing: fmt::Debug + Send + Sync + 'static {
    /// Every object under `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<LandedObject>>;

    /// The content of `path`.
    async fn get(&self, path: &str) -> Result<Vec<u8>>;

    /// Size and lower-case hex sha256 of `path`'s content. The default reads it with
    /// [`get`](Self::get); implementations can stream it.
    async fn hash(&self, path: &str) -> Result<(u64, String)> {
        let bytes = self.get(path).await?;
        Ok((bytes.len() as u64, hex::encode(Sha256::digest(&bytes))))
    }

    /// Whether `path` exists.
    async fn exists(&self, path: &str) -> Result<bool>;

    /// Moves `from` to `to` without overwriting (see the contract).
    async fn archive(&self, from: &str, to: &str) -> Result<()>;
}

/// A landing area in a local directory.
///
/// ```
/// use backfill_files::{Landing, LocalLanding};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::create_dir_all(dir.path().join("landing/2025/01")).unwrap();
/// std::fs::write(dir.path().join("landing/2025/01/a.csv"), "id\n1\n").unwrap();
/// let landing = LocalLanding::new(dir.path());
/// let found = landing.list("landing/2025/01").await.unwrap();
/// assert_eq!(found[0].path, "landing/2025/01/a.csv");
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct LocalLanding {
    root: PathBuf,
}

impl LocalLanding {
    /// A landing area rooted at `root`.
    pub fn new(root: impl AsRef<Path>) -> Self {
        Self {
            root: root.as_ref().to_path_buf(),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The local path of `path`; refuses absolute paths and `..`.
    fn local(&self, path: &str) -> Result<PathBuf> {
        let rel = Path::new(path);
        if rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(Error::adapter(
                "files",
                format!("path {path} leaves the landing root"),
            ));
        }
        Ok(self.root.join(rel))
    }

    async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Error::transient("files", e))?
    }
}

/// Maps an I/O error on `path`: missing is [`Error::NotFound`], interruptions are transient.
pub(crate) fn io_error(path: &str, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::NotFound => Error::NotFound {
            run_id: "".into(),
            what: format!("file {path}"),
        },
        io::ErrorKind::Interrupted | io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            Error::transient("files", format!("{path}: {e}"))
        }
        _ => Error::adapter("files", format!("{path}: {e}")),
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<LandedObject>) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if kind.is_file() {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push(LandedObject {
                path: parts.join("/"),
                size: entry.metadata()?.len(),
                e_tag: None,
            });
        }
    }
    Ok(())
}

fn hash_file(local: &Path) -> io::Result<(u64, String)> {
    let mut file = std::fs::File::open(local)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((size, hex::encode(h.finalize())))
}

#[async_trait]
impl Landing for LocalLanding {
    async fn list(&self, prefix: &str) -> Result<Vec<LandedObject>> {
        let root = self.root.clone();
        let dir = self.local(prefix)?;
        let prefix = prefix.to_owned();
        Self::blocking(move || {
            let mut out = Vec::new();
            walk(&root, &dir, &mut out).map_err(|e| io_error(&prefix, e))?;
            Ok(out)
        })
        .await
    }

    async fn get(&self, path: &str) -> Result<Vec<u8>> {
        let local = self.local(path)?;
        let path = path.to_owned();
        Self::blocking(move || std::fs::read(&local).map_err(|e| io_error(&path, e))).await
    }

    async fn hash(&self, path: &str) -> Result<(u64, String)> {
        let local = self.local(path)?;
        let path = path.to_owned();
        Self::blocking(move || hash_file(&local).map_err(|e| io_error(&path, e))).await
    }

    async fn exists(&self, path: &str) -> Result<bool> {
        let local = self.local(path)?;
        Self::blocking(move || Ok(local.is_file())).await
    }

    async fn archive(&self, from: &str, to: &str) -> Result<()> {
        let (src, dst) = (self.local(from)?, self.local(to)?);
        let (from, to) = (from.to_owned(), to.to_owned());
        Self::blocking(move || {
            let src_exists = src.is_file();
            if dst.is_file() {
                if !src_exists {
                    return Ok(());
                }
                let a = hash_file(&src).map_err(|e| io_error(&from, e))?;
                let b = hash_file(&dst).map_err(|e| io_error(&to, e))?;
                if a != b {
                    return Err(Error::adapter(
                        "files",
                        format!("cannot archive {from} to {to}: {to} exists with other content"),
                    ));
                }
                return std::fs::remove_file(&src).map_err(|e| io_error(&from, e));
            }
            if !src_exists {
                return Err(io_error(&from, io::ErrorKind::NotFound.into()));
            }
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io_error(&to, e))?;
            }
            std::fs::rename(&src, &dst).map_err(|e| io_error(&from, e))
        })
        .await
    }
}
