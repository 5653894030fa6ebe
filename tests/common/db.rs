//! Per-test databases cloned from a migrated template.
//!
//! The template's name carries a hash of the migration sources, so editing a
//! migration builds a fresh template; an advisory lock makes concurrent test
//! processes build it once.

use std::hash::{Hash, Hasher};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use uuid::Uuid;

/// PostgreSQL server URL without a database name: `TEST_PG_URL` or the local default.
pub fn admin_url() -> String {
    std::env::var("TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432".into())
}

fn url_for(db: &str) -> String {
    format!("{}/{db}", admin_url())
}

/// One test's database; dropped (forcibly) when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

fn migrations_hash() -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migration/src");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for f in files {
        std::fs::read(&f).unwrap().hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

async fn admin() -> DatabaseConnection {
    Database::connect(url_for("postgres"))
        .await
        .expect("PostgreSQL must be running (see README)")
}

async fn ensure_template(admin: &DatabaseConnection) -> String {
    let template = format!("concert_tpl_{}", migrations_hash());
    // A session-level lock on this connection serialises template builds across test processes.
    admin
        .execute_unprepared("SELECT pg_advisory_lock(727274)")
        .await
        .unwrap();
    let exists = admin
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT 1 AS x FROM pg_database WHERE datname = '{template}'"),
        ))
        .await
        .unwrap()
        .is_some();
    if !exists {
        let building = format!("{template}_building");
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
            .await
            .unwrap();
        admin
            .execute_unprepared(&format!("CREATE DATABASE {building}"))
            .await
            .unwrap();
        let db = Database::connect(url_for(&building)).await.unwrap();
        domain::platform::db::migrate(&db)
            .await
            .expect("migrations apply");
        db.close().await.unwrap();
        admin
            .execute_unprepared(&format!("ALTER DATABASE {building} RENAME TO {template}"))
            .await
            .unwrap();
    }
    admin
        .execute_unprepared("SELECT pg_advisory_unlock(727274)")
        .await
        .unwrap();
    template
}

impl TestDb {
    pub async fn create() -> Self {
        let admin = admin().await;
        let template = ensure_template(&admin).await;
        let name = format!("concert_test_{}", Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .await
            .unwrap();
        admin.close().await.unwrap();
        let url = url_for(&name);
        Self { name, url }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside any runtime guarantee: use a private thread and runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(admin) = Database::connect(url_for("postgres")).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}
