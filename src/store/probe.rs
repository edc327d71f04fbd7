//! Whether a state store is reachable and migrated, found without creating
//! or migrating anything (for `missionctl doctor`).

use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;

use super::{StoreError, redact};

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// A SQLite file that does not exist yet (the first command creates it).
    Missing { path: String },
    /// Reachable; `applied` of the `known` migrations this build carries.
    Reachable {
        applied: i64,
        known: i64,
        newest: i64,
        newest_known: i64,
    },
}

impl Health {
    /// Every migration this build knows is applied, and none newer.
    pub fn migrated(&self) -> bool {
        matches!(self, Health::Reachable { newest, newest_known, .. } if newest == newest_known)
    }
}

fn versions<R: Row>(rows: &[R]) -> Vec<i64>
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    rows.iter()
        .filter_map(|row| row.try_get::<i64, _>(0).ok())
        .collect()
}

fn known(m: &sqlx::migrate::Migrator) -> (i64, i64) {
    let n = m.iter().count() as i64;
    (n, m.iter().map(|x| x.version).max().unwrap_or(0))
}

/// Reach the store at `url` read-only and count its applied migrations.
pub async fn probe(url: &str) -> Result<Health, StoreError> {
    let shown = redact(url);
    let connect = |source| StoreError::Connect {
        url: shown.clone(),
        source,
    };
    let (rows, (known, newest_known)) = if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        if !std::path::Path::new(path).is_file() {
            return Ok(Health::Missing {
                path: path.to_string(),
            });
        }
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .map_err(connect)?
            .read_only(true);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts)
            .await
            .map_err(connect)?;
        // A file that is not a database (or a damaged one) fails here, not
        // at the next command: reading the schema touches the file's header.
        sqlx::query("SELECT count(*) FROM sqlite_master")
            .fetch_one(&pool)
            .await
            .map_err(connect)?;
        let rows = sqlx::query("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&pool)
            .await
            .map(|r| versions(&r));
        (rows, known(&sqlx::migrate!("migrations/sqlite")))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(connect)?;
        let rows = sqlx::query("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&pool)
            .await
            .map(|r| versions(&r));
        (rows, known(&sqlx::migrate!("migrations/postgres")))
    } else {
        return Err(StoreError::Url(shown));
    };
    // No migrations table: reachable, nothing applied yet.
    let versions = rows.unwrap_or_default();
    Ok(Health::Reachable {
        applied: versions.len() as i64,
        known,
        newest: versions.iter().copied().max().unwrap_or(0),
        newest_known,
    })
}
