//! `FROM 's3://bucket/scored/'` in SQL text: DataFusion asks its object store registry for the
//! bucket's store, and this registry builds it on first use from the same settings (environment
//! variables) as every other remote path of actprm (`location/`), then keeps it.

use std::sync::Arc;

use datafusion::error::DataFusionError;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use object_store::ObjectStore;
use url::Url;

#[derive(Debug, Default)]
pub struct RemoteStores {
    known: DefaultObjectStoreRegistry,
}

impl ObjectStoreRegistry for RemoteStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.known.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        self.known.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.known.get_store(url) {
            return Ok(store);
        }
        let bucket = format!("{}://{}", url.scheme(), url.authority());
        let store = crate::location::object_store_for(&bucket)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let root = Url::parse(&bucket).map_err(|e| DataFusionError::External(Box::new(e)))?;
        self.known.register_store(&root, store.clone());
        Ok(store)
    }
}
