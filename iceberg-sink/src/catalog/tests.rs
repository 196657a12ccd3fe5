//! The catalog in-process and through its router, over the in-memory store and the local
//! filesystem (both have create-if-absent). Several catalogs over one store: tests_shared.rs.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use iceberg::spec::{NestedField, PrimitiveType, Schema, Transform, Type, UnboundPartitionSpec};
use iceberg::{NamespaceIdent, TableCreation, TableIdent, TableRequirement, TableUpdate};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;

fn schema() -> Schema {
    Schema::builder()
        .with_fields(vec![
            NestedField::optional(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::optional(2, "ts", Type::Primitive(PrimitiveType::Timestamp)).into(),
        ])
        .build()
        .unwrap()
}

fn creation(name: &str) -> TableCreation {
    let spec = UnboundPartitionSpec::builder()
        .add_partition_field(2, "ts_hour", Transform::Hour)
        .unwrap()
        .build();
    TableCreation::builder()
        .name(name.to_string())
        .schema(schema())
        .partition_spec(spec)
        .build()
}

fn catalog_over(store: Arc<dyn ObjectStore>, warehouse: &str) -> Catalog {
    Catalog::new(
        store,
        CatalogConfig {
            warehouse_location: warehouse.to_string(),
            warehouse_path: Path::from("warehouse"),
            catalog_path: Path::from("catalog"),
        },
    )
}

fn memory_catalog() -> Catalog {
    catalog_over(Arc::new(InMemory::new()), "memory:///warehouse")
}

fn ns(name: &str) -> NamespaceIdent {
    NamespaceIdent::new(name.to_string())
}

fn ident(n: &str, t: &str) -> TableIdent {
    TableIdent::new(ns(n), t.to_string())
}

fn set_prop(k: &str, v: &str) -> TableUpdate {
    TableUpdate::SetProperties {
        updates: HashMap::from([(k.to_string(), v.to_string())]),
    }
}

#[tokio::test]
async fn create_load_commit_and_conflict() {
    let cat = memory_catalog();
    cat.create_namespace(&ns("db"), HashMap::new())
        .await
        .unwrap();
    let created = cat.create_table(&ns("db"), creation("t")).await.unwrap();
    assert!(created
        .metadata_location
        .starts_with("memory:///warehouse/db/t/metadata/00000-"));
    assert_eq!(created.metadata.default_partition_spec().fields().len(), 1);
    assert!(matches!(
        cat.create_table(&ns("db"), creation("t")).await,
        Err(CatalogError::TableAlreadyExists(_))
    ));

    let uuid = created.metadata.uuid();
    let id = ident("db", "t");
    let committed = cat
        .commit_table(
            &id,
            vec![TableRequirement::UuidMatch { uuid }],
            vec![set_prop("a", "1")],
        )
        .await
        .unwrap();
    assert!(committed.metadata_location.contains("/metadata/00001-"));
    assert_eq!(committed.metadata.metadata_log().len(), 1);
    let loaded = cat.load_table(&id).await.unwrap();
    assert_eq!(loaded.metadata_location, committed.metadata_location);
    assert_eq!(loaded.metadata.properties()["a"], "1");

    // Schema evolution through the builder: add a schema, make it current.
    let evolved = Schema::builder()
        .with_schema_id(1)
        .with_fields(schema().as_struct().fields().iter().cloned().chain([
            NestedField::optional(3, "region", Type::Primitive(PrimitiveType::String)).into(),
        ]))
        .build()
        .unwrap();
    let current_schema = loaded.metadata.current_schema_id();
    let after = cat
        .commit_table(
            &id,
            vec![TableRequirement::CurrentSchemaIdMatch {
                current_schema_id: current_schema,
            }],
            vec![
                TableUpdate::AddSchema { schema: evolved },
                TableUpdate::SetCurrentSchema { schema_id: -1 },
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        after.metadata.current_schema().as_struct().fields().len(),
        3
    );

    // A stale requirement is a commit conflict, and changes nothing.
    let stale = cat
        .commit_table(
            &id,
            vec![TableRequirement::CurrentSchemaIdMatch {
                current_schema_id: current_schema,
            }],
            vec![set_prop("b", "2")],
        )
        .await;
    assert!(
        matches!(stale, Err(CatalogError::CommitFailed(_))),
        "{stale:?}"
    );
    let now = cat.load_table(&id).await.unwrap();
    assert_eq!(now.metadata_location, after.metadata_location);
    assert!(!now.metadata.properties().contains_key("b"));

    // Bad updates are the request's fault, not a panic or a 500.
    let bad = cat
        .commit_table(
            &id,
            vec![],
            vec![TableUpdate::SetCurrentSchema { schema_id: 42 }],
        )
        .await;
    assert!(matches!(bad, Err(CatalogError::BadRequest(_))), "{bad:?}");
    assert!(matches!(
        cat.commit_table(&ident("db", "nope"), vec![], vec![set_prop("a", "b")])
            .await,
        Err(CatalogError::NoSuchTable(_))
    ));
}

/// Many commits at once on the local filesystem: the per-table lock serializes them, so
/// every one lands (none even has to retry) and none is lost.
#[tokio::test]
async fn concurrent_commits_on_local_files_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    let warehouse = format!("file://{}/warehouse", dir.path().display());
    let cat = Arc::new(catalog_over(Arc::new(store), &warehouse));
    cat.create_namespace(&ns("db"), HashMap::new())
        .await
        .unwrap();
    cat.create_table(&ns("db"), creation("t")).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let cat = cat.clone();
            tokio::spawn(async move {
                cat.commit_table(
                    &ident("db", "t"),
                    vec![],
                    vec![set_prop(&format!("k{i}"), "v")],
                )
                .await
                .unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let loaded = cat.load_table(&ident("db", "t")).await.unwrap();
    assert!((0..16).all(|i| loaded.metadata.properties().contains_key(&format!("k{i}"))));
    assert!(loaded.metadata_location.contains("/metadata/00016-"));
    assert_eq!(loaded.metadata.metadata_log().len(), 16);
    assert!(std::path::Path::new(&loaded.metadata_location["file://".len()..]).exists());

    // Purge removes the files; a plain drop would have kept them.
    cat.drop_table(&ident("db", "t"), true).await.unwrap();
    assert!(!cat.table_exists(&ident("db", "t")).await.unwrap());
    let left: Vec<_> = walk(&dir.path().join("warehouse"));
    assert!(left.is_empty(), "{left:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Two catalogs over one store stand for two brokers: their locks are separate, so only
/// the create-only pointer versions keep the second writer from overwriting the first.
#[tokio::test]
async fn pointer_updates_are_conditional_across_processes() {
    let objects: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    // Broker B, committing against the schema A has just replaced,
    // fails its requirement instead of silently replacing A's change.
    let a = catalog_over(objects.clone(), "memory:///warehouse");
    let b = catalog_over(objects, "memory:///warehouse");
    a.create_namespace(&ns("db"), HashMap::new()).await.unwrap();
    let t = a.create_table(&ns("db"), creation("t")).await.unwrap();
    let schema_id = t.metadata.current_schema_id();
    let req = || {
        vec![TableRequirement::CurrentSchemaIdMatch {
            current_schema_id: schema_id,
        }]
    };
    let evolve = |name: &str| {
        let s = Schema::builder()
            .with_fields(schema().as_struct().fields().iter().cloned().chain([
                NestedField::optional(3, name, Type::Primitive(PrimitiveType::String)).into(),
            ]))
            .build()
            .unwrap();
        vec![
            TableUpdate::AddSchema { schema: s },
            TableUpdate::SetCurrentSchema { schema_id: -1 },
        ]
    };
    a.commit_table(&ident("db", "t"), req(), evolve("from_a"))
        .await
        .unwrap();
    let lost = b
        .commit_table(&ident("db", "t"), req(), evolve("from_b"))
        .await;
    assert!(
        matches!(lost, Err(CatalogError::CommitFailed(_))),
        "{lost:?}"
    );
}

#[tokio::test]
async fn staged_create_then_assert_create_commit() {
    let cat = memory_catalog();
    cat.create_namespace(&ns("db"), HashMap::new())
        .await
        .unwrap();
    let staged = cat.stage_table(&ns("db"), creation("s")).await.unwrap();
    assert!(!cat.table_exists(&ident("db", "s")).await.unwrap());
    // What a client sends back: the staged metadata as updates.
    let updates = vec![
        TableUpdate::AssignUuid {
            uuid: staged.uuid(),
        },
        TableUpdate::UpgradeFormatVersion {
            format_version: staged.format_version(),
        },
        TableUpdate::AddSchema {
            schema: (**staged.current_schema()).clone(),
        },
        TableUpdate::SetCurrentSchema { schema_id: -1 },
        TableUpdate::AddSpec {
            spec: staged
                .default_partition_spec()
                .as_ref()
                .clone()
                .into_unbound(),
        },
        TableUpdate::SetDefaultSpec { spec_id: -1 },
        TableUpdate::AddSortOrder {
            sort_order: (**staged.default_sort_order()).clone(),
        },
        TableUpdate::SetDefaultSortOrder { sort_order_id: -1 },
        TableUpdate::SetLocation {
            location: staged.location().to_string(),
        },
        set_prop("owner", "duck"),
    ];
    let created = cat
        .commit_table(
            &ident("db", "s"),
            vec![TableRequirement::NotExist],
            updates.clone(),
        )
        .await
        .unwrap();
    assert_eq!(created.metadata.uuid(), staged.uuid());
    assert_eq!(created.metadata.properties()["owner"], "duck");
    assert_eq!(created.metadata.default_partition_spec().fields().len(), 1);
    let again = cat
        .commit_table(&ident("db", "s"), vec![TableRequirement::NotExist], updates)
        .await;
    assert!(
        matches!(again, Err(CatalogError::CommitFailed(_))),
        "{again:?}"
    );
}

#[tokio::test]
async fn rename_and_namespaces() {
    let cat = memory_catalog();
    let nested = NamespaceIdent::from_strs(["a", "b"]).unwrap();
    cat.create_namespace(&ns("a"), HashMap::new())
        .await
        .unwrap();
    cat.create_namespace(&nested, HashMap::from([("k".into(), "v".into())]))
        .await
        .unwrap();
    cat.create_namespace(&ns("z"), HashMap::new())
        .await
        .unwrap();
    assert_eq!(
        cat.list_namespaces(None).await.unwrap(),
        vec![ns("a"), ns("z")]
    );
    assert_eq!(
        cat.list_namespaces(Some(&ns("a"))).await.unwrap(),
        vec![nested.clone()]
    );
    assert!(matches!(
        cat.drop_namespace(&ns("a")).await,
        Err(CatalogError::NamespaceNotEmpty(_))
    ));
    cat.create_table(&nested, creation("t")).await.unwrap();
    let from = TableIdent::new(nested.clone(), "t".into());
    let to = ident("z", "t2");
    cat.rename_table(&from, &to).await.unwrap();
    assert!(!cat.table_exists(&from).await.unwrap());
    assert_eq!(cat.list_tables(&ns("z")).await.unwrap(), vec![to.clone()]);
    assert!(matches!(
        cat.rename_table(&from, &to).await,
        Err(CatalogError::NoSuchTable(_))
    ));
    assert!(matches!(
        cat.rename_table(&to, &ident("nope", "x")).await,
        Err(CatalogError::NoSuchNamespace(_))
    ));
    cat.drop_namespace(&nested).await.unwrap();
    cat.drop_namespace(&ns("a")).await.unwrap();
    assert!(matches!(
        cat.drop_namespace(&ns("z")).await,
        Err(CatalogError::NamespaceNotEmpty(_))
    ));
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, value)
}

#[tokio::test]
async fn rest_routes_speak_the_spec() {
    let app = router(Arc::new(memory_catalog()));
    let (s, v) = call(&app, "GET", "/v1/config?warehouse=w", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["endpoints"].as_array().unwrap().len() > 10 && v["overrides"].is_object());

    let (s, v) = call(
        &app,
        "POST",
        "/v1/namespaces",
        Some(json!({"namespace": ["a", "b"], "properties": {"x": "1"}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"namespace": ["a", "b"], "properties": {"x": "1"}})
    );
    let (s, v) = call(&app, "GET", "/v1/namespaces/a%1Fb", None).await;
    assert_eq!((s, &v["properties"]["x"]), (StatusCode::OK, &json!("1")));
    let (s, _) = call(&app, "HEAD", "/v1/namespaces/a%1Fb", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = call(&app, "HEAD", "/v1/namespaces/zz", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let create = json!({
        "name": "t",
        "schema": {"type": "struct", "schema-id": 0, "fields": [
            {"id": 1, "name": "id", "required": false, "type": "long"},
            {"id": 2, "name": "ts", "required": false, "type": "timestamp"}]},
        "partition-spec": {"spec-id": 0, "fields": [
            {"source-id": 2, "field-id": 1000, "name": "ts_hour", "transform": "hour"}]},
        "properties": {"format-version": "2", "owner": "me"}
    });
    let (s, v) = call(
        &app,
        "POST",
        "/v1/namespaces/a%1Fb/tables",
        Some(create.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["metadata-location"]
        .as_str()
        .unwrap()
        .ends_with(".metadata.json"));
    assert_eq!(v["metadata"]["format-version"], 2);
    assert_eq!(v["metadata"]["properties"]["owner"], "me");
    assert_eq!(
        v["metadata"]["partition-specs"][0]["fields"][0]["transform"],
        "hour"
    );
    let (s, v) = call(&app, "POST", "/v1/namespaces/a%1Fb/tables", Some(create)).await;
    assert_eq!(
        (s, &v["error"]["type"]),
        (StatusCode::CONFLICT, &json!("AlreadyExistsException"))
    );

    let (s, v) = call(&app, "GET", "/v1/namespaces/a%1Fb/tables", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["identifiers"],
        json!([{"namespace": ["a", "b"], "name": "t"}])
    );
    let (s, v) = call(
        &app,
        "POST",
        "/v1/namespaces/a%1Fb/tables/t",
        Some(json!({
        "requirements": [{"type": "assert-current-schema-id", "current-schema-id": 7}],
        "updates": [{"action": "set-properties", "updates": {"k": "v"}}]})),
    )
    .await;
    assert_eq!(
        (s, &v["error"]["type"]),
        (StatusCode::CONFLICT, &json!("CommitFailedException"))
    );
    let (s, v) = call(
        &app,
        "POST",
        "/v1/namespaces/a%1Fb/tables/t",
        Some(json!({
        "requirements": [], "updates": [{"action": "set-properties", "updates": {"k": "v"}}]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["metadata"]["properties"]["k"], "v");

    let (s, v) = call(&app, "DELETE", "/v1/namespaces/a%1Fb", None).await;
    assert_eq!(
        (s, &v["error"]["type"]),
        (StatusCode::CONFLICT, &json!("NamespaceNotEmptyException"))
    );
    let (s, v) = call(&app, "GET", "/v1/namespaces/nope/tables/t", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        v["error"],
        json!({"message": "table does not exist: nope.t", "type": "NoSuchTableException", "code": 404})
    );
    let (s, v) = call(&app, "GET", "/v1/namespaces/nope/tables", None).await;
    assert_eq!(
        (s, &v["error"]["type"]),
        (StatusCode::NOT_FOUND, &json!("NoSuchNamespaceException"))
    );
    let (s, v) = call(
        &app,
        "POST",
        "/v1/tables/rename",
        Some(json!({"source": {"namespace": ["a", "b"], "name": "t"}})),
    )
    .await;
    assert_eq!(
        (s, &v["error"]["type"]),
        (StatusCode::BAD_REQUEST, &json!("BadRequestException"))
    );
    let (s, _) = call(
        &app,
        "POST",
        "/v1/tables/rename",
        Some(json!({
        "source": {"namespace": ["a", "b"], "name": "t"},
        "destination": {"namespace": ["a", "b"], "name": "u"}})),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = call(&app, "HEAD", "/v1/namespaces/a%1Fb/tables/u", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = call(
        &app,
        "DELETE",
        "/v1/namespaces/a%1Fb/tables/u?purgeRequested=true",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = call(&app, "DELETE", "/v1/namespaces/a%1Fb", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = call(&app, "GET", "/v1/nothing/here", None).await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!(404))
    );
    let (s, v) = call(
        &app,
        "POST",
        "/v1/namespaces",
        Some(json!({"namespace": []})),
    )
    .await;
    assert_eq!(
        (s, &v["error"]["type"]),
        (StatusCode::BAD_REQUEST, &json!("BadRequestException"))
    );
}

#[tokio::test]
async fn table_locations_stay_in_their_own_prefix_and_purge_stays_there() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let warehouse = format!("file://{}/warehouse", dir.path().display());
    let cat = Arc::new(catalog_over(store.clone(), &warehouse));
    cat.create_namespace(&ns("db"), HashMap::new())
        .await
        .unwrap();
    let t1 = cat.create_table(&ns("db"), creation("t1")).await.unwrap();
    let t2 = cat.create_table(&ns("db"), creation("t2")).await.unwrap();
    let t2_location = t2.metadata.location().to_string();
    let t2_file = Path::from("warehouse/db/t2/data/part-0.parquet");
    store.put(&t2_file, b"rows".to_vec().into()).await.unwrap();

    // A new table at the warehouse root, at another table's location, at a parent of one,
    // or climbing back out of its own prefix: all 400s.
    let at = |location: String| {
        let mut c = creation("t3");
        c.location = Some(location);
        c
    };
    for location in [
        warehouse.clone(),
        format!("{warehouse}/"),
        t2_location.clone(),
        format!("{warehouse}/db"),
        format!("{warehouse}/db/t3/../t2"),
        format!("{warehouse}/db/t3/../../.."),
    ] {
        let got = cat.create_table(&ns("db"), at(location.clone())).await;
        assert!(
            matches!(got, Err(CatalogError::BadRequest(_))),
            "{location}: {:?}",
            got.map(|t| t.metadata_location)
        );
    }
    // Its own prefix, or below it, is fine.
    cat.create_table(&ns("db"), at(format!("{warehouse}/db/t3/./custom/")))
        .await
        .unwrap();

    // Moving t1 onto t2's files, or registering t2's metadata under another name: refused.
    let moved = cat
        .commit_table(
            &ident("db", "t1"),
            vec![],
            vec![TableUpdate::SetLocation {
                location: t2_location.clone(),
            }],
        )
        .await;
    assert!(
        matches!(moved, Err(CatalogError::BadRequest(_))),
        "{moved:?}"
    );
    let registered = cat
        .register_table(&ident("db", "t4"), &t2.metadata_location)
        .await;
    assert!(matches!(registered, Err(CatalogError::BadRequest(_))));

    // Purging t1 deletes t1's files and nothing of t2's.
    let t1_metadata = Path::from(
        t1.metadata_location
            .strip_prefix(&format!("file://{}/", dir.path().display()))
            .unwrap(),
    );
    cat.drop_table(&ident("db", "t1"), true).await.unwrap();
    assert!(store.head(&t1_metadata).await.is_err(), "t1 purged");
    assert!(store.head(&t2_file).await.is_ok(), "t2's files remain");
    assert!(cat.load_table(&ident("db", "t2")).await.is_ok());

    // Through the REST router: a 400 with the spec's error body.
    let app = router(cat.clone());
    let (s, v) = call(
        &app,
        "POST",
        "/v1/namespaces/db/tables",
        Some(json!({
            "name": "root",
            "location": warehouse,
            "schema": {"type": "struct", "schema-id": 0, "fields": [
                {"id": 1, "name": "id", "required": false, "type": "long"}]},
        })),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["type"], "BadRequestException", "{v}");
}
