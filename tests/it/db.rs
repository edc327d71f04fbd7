//! Databases for tests: a SQLite file, and a fresh PostgreSQL database per
//! test on the server at MISSIONCTL_TEST_DATABASE_URL (default
//! postgres://postgres@127.0.0.1:5432/test). A missing server fails the
//! test, unless MISSIONCTL_SKIP_POSTGRES=1 says to skip it (loudly).

use std::time::Duration;

pub struct PgDb {
    pub url: String,
    admin: String,
    name: String,
}

fn admin_url() -> String {
    std::env::var("MISSIONCTL_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A fresh database, or None (with a loud message) when no server answers outside CI.
pub fn postgres(test: &str) -> Option<PgDb> {
    let admin = admin_url();
    let name = format!(
        "mc_{}_{}",
        test.chars()
            .filter(char::is_ascii_alphanumeric)
            .take(20)
            .collect::<String>()
            .to_lowercase(),
        std::process::id() as u64 * 1000 + rand_suffix()
    );
    let created = rt().block_on(async {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(3))
            .connect(&admin)
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&pool)
            .await?;
        Ok::<_, sqlx::Error>(())
    });
    match created {
        Ok(()) => {
            crate::util::used("postgresql");
            let base = admin
                .rsplit_once('/')
                .map_or(admin.as_str(), |(b, _)| b)
                .to_string();
            Some(PgDb {
                url: format!("{base}/{name}"),
                admin,
                name,
            })
        }
        Err(e) => {
            crate::util::missing(
                "PostgreSQL",
                "MISSIONCTL_SKIP_POSTGRES",
                &format!(
                    "no server answered at {admin} ({e}); start one, or set MISSIONCTL_TEST_DATABASE_URL"
                ),
            );
            None
        }
    }
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64 % 1000)
        .unwrap_or(0)
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = rt().block_on(async move {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&admin)
                .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&pool)
            .await?;
            Ok::<_, sqlx::Error>(())
        });
    }
}

/// Run `body` against SQLite, then against PostgreSQL when available.
#[macro_export]
macro_rules! both_stores {
    ($name:ident, $body:expr) => {
        mod $name {
            #[test]
            fn sqlite() {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}", dir.path().join("state.db").display());
                ($body)(url.as_str());
            }
            #[test]
            fn postgres() {
                if let Some(db) = $crate::db::postgres(stringify!($name)) {
                    ($body)(db.url.as_str());
                }
            }
        }
    };
}
