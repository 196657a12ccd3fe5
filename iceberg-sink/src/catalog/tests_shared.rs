//! Several catalogs over one store, standing for the brokers of a cluster over their shared
//! object store (their in-process locks are separate): racing commits lose nothing, drops and
//! re-creates, pruning of old pointer versions, the startup probe, and the migration of
//! pointers of the earlier per-broker layout.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::BoxStream;
use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
use iceberg::{NamespaceIdent, TableCreation, TableIdent, TableUpdate};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use serde_json::json;

use super::*;

fn creation(name: &str) -> TableCreation {
    let schema = Schema::builder()
        .with_fields(vec![NestedField::optional(
            1,
            "id",
            Type::Primitive(PrimitiveType::Long),
        )
        .into()])
        .build()
        .unwrap();
    TableCreation::builder()
        .name(name.to_string())
        .schema(schema)
        .build()
}

fn ns() -> NamespaceIdent {
    NamespaceIdent::new("db".to_string())
}

fn t(name: &str) -> TableIdent {
    TableIdent::new(ns(), name.to_string())
}

fn prop(k: &str) -> Vec<TableUpdate> {
    vec![TableUpdate::SetProperties {
        updates: HashMap::from([(k.to_string(), "v".to_string())]),
    }]
}

fn local(dir: &std::path::Path) -> (Arc<dyn ObjectStore>, String) {
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir).unwrap();
    (
        Arc::new(store),
        format!("file://{}/warehouse", dir.display()),
    )
}

fn catalog(objects: Arc<dyn ObjectStore>, warehouse: &str) -> Catalog {
    Catalog::new(
        objects,
        CatalogConfig {
            warehouse_location: warehouse.to_string(),
            warehouse_path: Path::from("warehouse"),
            catalog_path: Path::from("catalog"),
        },
    )
}

/// Names of the objects under `prefix`.
async fn names_under(objects: &dyn ObjectStore, prefix: &str) -> Vec<String> {
    use futures_util::TryStreamExt;
    let mut out: Vec<String> = objects
        .list(Some(&Path::from(prefix)))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    out.sort();
    out
}

/// Two brokers' catalogs over one local directory commit to one table at once, each retrying
/// on CommitFailed as a client does: every commit lands exactly once, and the losers of each
/// round were told 409.
#[tokio::test]
async fn two_catalogs_racing_on_one_local_store_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let (objects, warehouse) = local(dir.path());
    let a = Arc::new(catalog(objects.clone(), &warehouse));
    let b = Arc::new(catalog(objects.clone(), &warehouse));
    assert!(a.probe().await.is_ok());
    a.create_namespace(&ns(), HashMap::new()).await.unwrap();
    a.create_table(&ns(), creation("t")).await.unwrap();

    let per_writer = 12;
    let mut tasks = Vec::new();
    for (w, cat) in [
        (0, a.clone()),
        (1, b.clone()),
        (2, a.clone()),
        (3, b.clone()),
    ] {
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for i in 0..per_writer {
                loop {
                    match cat
                        .commit_table(&t("t"), vec![], prop(&format!("w{w}-{i}")))
                        .await
                    {
                        Ok(_) => break,
                        Err(CatalogError::CommitFailed(_)) => conflicts += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.unwrap();
    }
    let loaded = b.load_table(&t("t")).await.unwrap();
    let props = loaded.metadata.properties();
    for w in 0..4 {
        for i in 0..per_writer {
            assert!(props.contains_key(&format!("w{w}-{i}")), "lost w{w}-{i}");
        }
    }
    // One metadata file per landed commit, chained: nothing was overwritten.
    assert_eq!(loaded.metadata.metadata_log().len(), 4 * per_writer);
    // Two processes (and two tasks in each) really did collide, and the losers got 409.
    assert!(conflicts > 0, "no commit ever conflicted");
    assert_eq!(
        CatalogError::CommitFailed(String::new()).status().as_u16(),
        409
    );
    // Losing commits removed their metadata files: one per landed version remains.
    let files = names_under(objects.as_ref(), "warehouse/db/t/metadata").await;
    assert_eq!(files.len(), 4 * per_writer + 1, "{files:?}");
}

/// The loser of a race on one version is refused even when its own requirements held.
#[tokio::test]
async fn the_second_writer_of_a_version_gets_commit_failed() {
    let objects: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let a = catalog(objects.clone(), "memory:///warehouse");
    let b = catalog(objects.clone(), "memory:///warehouse");
    a.create_namespace(&ns(), HashMap::new()).await.unwrap();
    a.create_table(&ns(), creation("t")).await.unwrap();
    // What b read before a committed: the version a is about to replace.
    let stale = b.table_current(&t("t")).await.unwrap();
    a.commit_table(&t("t"), vec![], prop("a")).await.unwrap();
    let record = stale.live().unwrap().clone();
    let won = b
        .store
        .put_next(&b.store.table_dir(&t("t")), &stale, Some(&record))
        .await
        .unwrap();
    assert!(!won);
    assert!(a
        .load_table(&t("t"))
        .await
        .unwrap()
        .metadata
        .properties()
        .contains_key("a"));
}

#[tokio::test]
async fn drop_and_recreate_across_catalogs() {
    let objects: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let a = catalog(objects.clone(), "memory:///warehouse");
    let b = catalog(objects.clone(), "memory:///warehouse");
    a.create_namespace(&ns(), HashMap::new()).await.unwrap();
    let first = a.create_table(&ns(), creation("t")).await.unwrap();
    assert_eq!(b.list_tables(&ns()).await.unwrap(), vec![t("t")]);

    b.drop_table(&t("t"), false).await.unwrap();
    assert!(!a.table_exists(&t("t")).await.unwrap());
    assert!(a.list_tables(&ns()).await.unwrap().is_empty());
    assert!(matches!(
        a.commit_table(&t("t"), vec![], prop("x")).await,
        Err(CatalogError::NoSuchTable(_))
    ));
    // The drop is a tombstone version, not a deleted pointer.
    let versions = names_under(objects.as_ref(), "catalog/tables/db/t").await;
    assert_eq!(versions.len(), 2, "{versions:?}");

    let second = a.create_table(&ns(), creation("t")).await.unwrap();
    assert_ne!(second.metadata.uuid(), first.metadata.uuid());
    assert_eq!(
        b.load_table(&t("t")).await.unwrap().metadata.uuid(),
        second.metadata.uuid()
    );
    assert!(matches!(
        b.create_table(&ns(), creation("t")).await,
        Err(CatalogError::TableAlreadyExists(_))
    ));
    // A namespace with only dropped tables is empty; dropping it is seen by the other.
    b.drop_table(&t("t"), true).await.unwrap();
    a.drop_namespace(&ns()).await.unwrap();
    assert!(!b.namespace_exists(&ns()).await.unwrap());
    assert!(b.list_namespaces(None).await.unwrap().is_empty());
    b.create_namespace(&ns(), HashMap::from([("k".into(), "v".into())]))
        .await
        .unwrap();
    assert_eq!(a.load_namespace(&ns()).await.unwrap()["k"], "v");
}

#[tokio::test]
async fn old_pointer_versions_are_pruned_but_never_the_newest() {
    let objects: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let young = catalog(objects.clone(), "memory:///warehouse");
    young.create_namespace(&ns(), HashMap::new()).await.unwrap();
    young.create_table(&ns(), creation("t")).await.unwrap();
    for i in 0..20 {
        young
            .commit_table(&t("t"), vec![], prop(&format!("k{i}")))
            .await
            .unwrap();
    }
    // With the default prune age, versions only minutes old are all kept.
    let dir = "catalog/tables/db/t";
    assert_eq!(names_under(objects.as_ref(), dir).await.len(), 21);

    let old = catalog(objects.clone(), "memory:///warehouse").with_prune_age(Duration::ZERO);
    old.commit_table(&t("t"), vec![], prop("last"))
        .await
        .unwrap();
    let left = names_under(objects.as_ref(), dir).await;
    assert_eq!(left.len(), 1 + pointers::KEEP_VERSIONS as usize, "{left:?}");
    assert!(left.last().unwrap().ends_with("00000000000000000022.json"));
    assert!(old
        .load_table(&t("t"))
        .await
        .unwrap()
        .metadata
        .properties()
        .contains_key("last"));
    // A tombstone is the newest version then, and stays.
    old.drop_table(&t("t"), false).await.unwrap();
    let left = names_under(objects.as_ref(), dir).await;
    assert!(left.last().unwrap().ends_with("00000000000000000023.json"));
    assert!(!old.table_exists(&t("t")).await.unwrap());
}

/// A store that ignores `PutMode::Create` and overwrites: two brokers on it could both win.
#[derive(Debug)]
struct Overwriting(InMemory);

impl std::fmt::Display for Overwriting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Overwriting")
    }
}

#[async_trait::async_trait]
impl ObjectStore for Overwriting {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        mut opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        opts.mode = PutMode::Overwrite;
        self.0.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.0.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.0.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.0.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.0.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.0.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.0.copy_opts(from, to, options).await
    }
}

#[tokio::test]
async fn a_store_without_create_if_absent_is_refused_at_startup() {
    let bad = catalog(Arc::new(Overwriting(InMemory::new())), "memory:///w");
    let err = bad.probe().await.unwrap_err();
    assert!(matches!(err, CatalogError::NoCreateIfAbsent(_)), "{err:?}");
    assert!(err.to_string().contains("create-if-absent"), "{err}");
    // And every change after that verdict is refused, not risked.
    assert!(matches!(
        bad.create_namespace(&ns(), HashMap::new()).await,
        Err(CatalogError::NoCreateIfAbsent(_))
    ));
    // Local files and memory honour it, and the probe leaves nothing behind.
    let objects: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    catalog(objects.clone(), "memory:///w")
        .probe()
        .await
        .unwrap();
    assert!(names_under(objects.as_ref(), "catalog").await.is_empty());
}

/// Writes a legacy (per-broker, replace-in-place) catalog by hand: what the previous release
/// left in `<objects>/catalog`.
async fn write_legacy(objects: &dyn ObjectStore, metadata_location: &str) {
    let put = |path: &str, v: serde_json::Value| {
        let path = Path::from(path);
        async move {
            objects
                .put(&path, PutPayload::from(serde_json::to_vec(&v).unwrap()))
                .await
                .unwrap();
        }
    };
    put(
        "catalog/namespaces/db.json",
        json!({"properties": {"owner": "kafka"}}),
    )
    .await;
    put(
        "catalog/tables/db/t.json",
        json!({"metadata-location": metadata_location, "version": 3}),
    )
    .await;
}

#[tokio::test]
async fn legacy_pointers_are_migrated_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let (objects, warehouse) = local(dir.path());
    // A table made the old way: its metadata file in the warehouse, its pointer in place.
    let maker = catalog(objects.clone(), &warehouse);
    let metadata = maker.new_table_metadata(&ns(), creation("t")).unwrap();
    let location = format!("{warehouse}/db/t/metadata/00003-x.metadata.json");
    maker
        .store
        .write_metadata(&location, &metadata)
        .await
        .unwrap();
    write_legacy(objects.as_ref(), &location).await;

    let cat = catalog(objects.clone(), &warehouse);
    let done = cat.migrate_legacy().await.unwrap();
    assert_eq!((done.namespaces, done.tables), (1, 1));
    assert_eq!(cat.load_namespace(&ns()).await.unwrap()["owner"], "kafka");
    let loaded = cat.load_table(&t("t")).await.unwrap();
    assert_eq!(loaded.metadata_location, location);
    assert_eq!(loaded.metadata.uuid(), metadata.uuid());
    // The legacy pointers are gone; a second run finds nothing to do.
    assert!(names_under(objects.as_ref(), "catalog")
        .await
        .iter()
        .all(|p| !p.ends_with("db.json") && !p.ends_with("t.json")));
    assert_eq!(cat.migrate_legacy().await.unwrap(), Migrated::default());
    // The migrated table takes commits, numbering its metadata files on from the old ones.
    let next = cat.commit_table(&t("t"), vec![], prop("a")).await.unwrap();
    assert!(
        next.metadata_location.contains("/metadata/00004-"),
        "{}",
        next.metadata_location
    );

    // A crash after the new pointer but before the legacy one was deleted: the next start
    // recognises its own work and only cleans up.
    write_legacy(objects.as_ref(), &location).await;
    let again = cat.migrate_legacy().await.unwrap();
    assert_eq!((again.namespaces, again.tables), (0, 0));
    assert_eq!(again.skipped_tables, vec!["db.t".to_string()]);
    assert_eq!(
        cat.load_table(&t("t")).await.unwrap().metadata_location,
        next.metadata_location
    );
}

/// A broker moving to a shared store: its earlier per-broker tables are registered in the
/// shared catalog, files left where they are, unless the shared catalog already has a table
/// of that name (another broker's).
#[tokio::test]
async fn legacy_tables_of_another_store_are_registered_where_free() {
    let own = tempfile::tempdir().unwrap();
    let shared = tempfile::tempdir().unwrap();
    let (own_objects, own_warehouse) = local(own.path());
    let (shared_objects, shared_warehouse) = local(shared.path());

    let old = catalog(own_objects.clone(), &own_warehouse);
    let make = |name: &str| {
        let metadata = old.new_table_metadata(&ns(), creation(name)).unwrap();
        let location = format!("{own_warehouse}/db/{name}/metadata/00000-x.metadata.json");
        (metadata, location)
    };
    let (meta_t, loc_t) = make("t");
    let (meta_u, loc_u) = make("u");
    old.store.write_metadata(&loc_t, &meta_t).await.unwrap();
    old.store.write_metadata(&loc_u, &meta_u).await.unwrap();
    write_legacy(own_objects.as_ref(), &loc_t).await;
    own_objects
        .put(
            &Path::from("catalog/tables/db/u.json"),
            PutPayload::from(
                serde_json::to_vec(&json!({"metadata-location": loc_u, "version": 0})).unwrap(),
            ),
        )
        .await
        .unwrap();

    // The shared catalog already has a `u`, another broker's.
    let other = catalog(shared_objects.clone(), &shared_warehouse);
    other.create_namespace(&ns(), HashMap::new()).await.unwrap();
    let theirs = other.create_table(&ns(), creation("u")).await.unwrap();

    let cat = catalog(shared_objects.clone(), &shared_warehouse).with_foreign_warehouse(
        &own_warehouse,
        Path::from("warehouse"),
        own_objects.clone(),
    );
    let done = cat
        .import_legacy(own_objects.as_ref(), &Path::from("catalog"))
        .await
        .unwrap();
    assert_eq!(done.tables, 1);
    assert_eq!(done.skipped_tables, vec!["db.u".to_string()]);
    let t_loaded = other_view(
        &shared_objects,
        &shared_warehouse,
        &own_warehouse,
        &own_objects,
    )
    .load_table(&t("t"))
    .await
    .unwrap();
    assert_eq!(t_loaded.metadata_location, loc_t);
    assert_eq!(
        cat.load_table(&t("u")).await.unwrap().metadata.uuid(),
        theirs.metadata.uuid()
    );
    // Commits to the registered table write its next metadata file beside its old ones.
    let next = cat.commit_table(&t("t"), vec![], prop("a")).await.unwrap();
    assert!(next
        .metadata_location
        .starts_with(&format!("{own_warehouse}/db/t/metadata/00004-")));
    assert!(std::path::Path::new(&next.metadata_location["file://".len()..]).exists());
    // Nothing left to import.
    let again = cat
        .import_legacy(own_objects.as_ref(), &Path::from("catalog"))
        .await
        .unwrap();
    assert_eq!(again, Migrated::default());
}

fn other_view(
    shared: &Arc<dyn ObjectStore>,
    shared_warehouse: &str,
    own_warehouse: &str,
    own: &Arc<dyn ObjectStore>,
) -> Catalog {
    catalog(shared.clone(), shared_warehouse).with_foreign_warehouse(
        own_warehouse,
        Path::from("warehouse"),
        own.clone(),
    )
}
