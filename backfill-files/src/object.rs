//! A landing area in an object store, through the `object_store` crate (feature `object-store`).

use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::{Error, ErrorKind, Result};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::ObjectStore;
use sha2::{Digest, Sha256};

use crate::landing::{LandedObject, Landing};

/// A [`Landing`] over any [`ObjectStore`]: S3, GCS, Azure (with the `object_store` crate's
/// features), a local directory (`LocalFileSystem`) or memory (`InMemory`).
///
/// Archiving is `copy_if_not_exists` then `delete`, so an archived object is never overwritten.
///
/// ```
/// use std::sync::Arc;
/// use backfill_files::ObjectStoreLanding;
/// use object_store::memory::InMemory;
///
/// let landing = ObjectStoreLanding::new(Arc::new(InMemory::new()));
/// ```
#[derive(Debug, Clone)]
pub struct ObjectStoreLanding {
    store: Arc<dyn ObjectStore>,
}

impl ObjectStoreLanding {
    /// A landing area in `store`, with paths relative to its root.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }
}

fn error(path: &str, e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::NotFound {
            run_id: "".into(),
            what: format!("file {path}"),
        },
        object_store::Error::Generic { .. } => Error::transient("files", format!("{path}: {e}")),
        other => Error::adapter("files", format!("{path}: {other}")),
    }
}

#[async_trait]
impl Landing for ObjectStoreLanding {
    async fn list(&self, prefix: &str) -> Result<Vec<LandedObject>> {
        let objects: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&Path::from(prefix)))
            .try_collect()
            .await
            .map_err(|e| error(prefix, e))?;
        Ok(objects
            .into_iter()
            .map(|o| LandedObject {
                path: o.location.to_string(),
                size: o.size,
                e_tag: o.e_tag,
            })
            .collect())
    }

    async fn get(&self, path: &str) -> Result<Vec<u8>> {
        let got = self
            .store
            .get(&Path::from(path))
            .await
            .map_err(|e| error(path, e))?;
        let bytes = got.bytes().await.map_err(|e| error(path, e))?;
        Ok(bytes.to_vec())
    }

    async fn exists(&self, path: &str) -> Result<bool> {
        match self.store.head(&Path::from(path)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(error(path, e)),
        }
    }

    async fn archive(&self, from: &str, to: &str) -> Result<()> {
        let (src, dst) = (Path::from(from), Path::from(to));
        match self.store.copy_if_not_exists(&src, &dst).await {
            Ok(()) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                let a = match self.get(from).await {
                    Ok(a) => a,
                    // Moved by an earlier archive.
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(e),
                };
                let b = self.get(to).await?;
                if Sha256::digest(&a) != Sha256::digest(&b) {
                    return Err(Error::adapter(
                        "files",
                        format!("cannot archive {from} to {to}: {to} exists with other content"),
                    ));
                }
            }
            Err(object_store::Error::NotFound { .. }) if self.exists(to).await? => return Ok(()),
            Err(e) => return Err(error(from, e)),
        }
        self.store.delete(&src).await.map_err(|e| error(from, e))
    }
}
