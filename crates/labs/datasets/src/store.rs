//! Research datasets, their users and the audit log — the durable truth the
//! dashboard statistics are computed from.

use serde::Serialize;

use platform::clock;
use platform::db::Db;
use platform::on_pool;

/// The flagship dataset of the story.
pub const FLAGSHIP_ID: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
pub const FLAGSHIP_NAME: &str = "Research Analytics Dataset";
/// Downloads the seed records for the flagship: what the CEO's dashboard shows.
pub const SEEDED_DOWNLOADS: usize = 15;

/// Workshop users and their API tokens (documented in the workshop guide).
pub const USERS: [(&str, &str, &str); 4] = [
    ("11111111-1111-4111-8111-111111111111", "alice", "alice-token"),
    ("22222222-2222-4222-8222-222222222222", "bob", "bob-token"),
    ("33333333-3333-4333-8333-333333333333", "charlie", "charlie-token"),
    ("44444444-4444-4444-8444-444444444444", "researcher1", "researcher1-token"),
];

/// Conference attendees who download the flagship during the demonstration.
pub const ATTENDEES: usize = 15;

pub fn attendee(n: usize) -> (String, String, String) {
    (format!("aaaaaaaa-0000-4000-8000-{n:012}"), format!("attendee{n:02}"), format!("attendee{n:02}-token"))
}

const DATASETS: [(&str, &str, &str, &str, i64, &str, &str); 4] = [
    (
        FLAGSHIP_ID,
        FLAGSHIP_NAME,
        "Anonymised usage analytics from the research platform, one row per session",
        "csv",
        48_213_504,
        "public",
        "alice",
    ),
    (
        "0c2d9f7e-5b1a-4e8c-9d3f-2a6b8c4e1f70",
        "Climate Observations 2025",
        "Hourly station readings: temperature, humidity, wind",
        "parquet",
        733_102_080,
        "public",
        "bob",
    ),
    (
        "5f8e2c1a-9b7d-4c3e-8a6f-1d2e3f4a5b6c",
        "Genome Variants Sample",
        "A small sample of annotated variants for teaching",
        "vcf",
        12_582_912,
        "private",
        "charlie",
    ),
    (
        "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
        "Survey Responses Q3",
        "Free-text and Likert answers from the quarterly survey",
        "json",
        2_097_152,
        "public",
        "researcher1",
    ),
];

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Dataset {
    pub id: String,
    pub name: String,
    pub description: String,
    pub file_type: String,
    pub size_bytes: i64,
    pub privacy: String,
    pub owner: String,
    #[schema(nullable)]
    pub last_accessed: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: String,
    pub username: String,
}

/// What the dashboard shows for one dataset.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Statistics {
    pub total_downloads: i64,
    pub unique_users: i64,
    #[schema(nullable)]
    pub last_accessed: Option<String>,
}

/// The id of the conference's `n`th upload.
fn upload_id(n: u32) -> String {
    format!("cccccccc-0000-4000-8000-{n:012}")
}

/// `n` of an upload's id.
fn upload_number(id: &str) -> Option<u32> {
    id.strip_prefix("cccccccc-0000-4000-8000-")?.parse().ok()
}

const COUNT_UPLOADS: &str = "SELECT COUNT(*) FROM datasets WHERE id LIKE 'cccccccc-%'";
const DELETE_UPLOADS: &str = "DELETE FROM datasets WHERE id LIKE 'cccccccc-%'";

#[derive(Clone)]
pub struct DatasetStore {
    db: Db,
}

pub(crate) const DATASET_COLUMNS: &str = "d.id, d.name, d.description, d.file_type, d.size_bytes, d.privacy, \
     u.username AS owner, d.last_accessed, d.created_at";

impl DatasetStore {
    pub fn new(db: Db) -> Self {
        DatasetStore { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    fn observe(&self, error: sqlx::Error) -> sqlx::Error {
        self.db.observe(error)
    }

    /// Users, datasets and the flagship's 15 downloads; an existing seed is left as is.
    pub async fn seed(&self) -> Result<(), sqlx::Error> {
        let users = "INSERT INTO research_users (id, username, token) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING";
        for (id, username, token) in USERS {
            on_pool!(self.db, |pool| sqlx::query(users)
                .bind(id)
                .bind(username)
                .bind(token)
                .execute(pool)
                .await
                .map(drop))?;
        }
        for n in 1..=ATTENDEES {
            let (id, username, token) = attendee(n);
            on_pool!(self.db, |pool| sqlx::query(users)
                .bind(&id)
                .bind(&username)
                .bind(&token)
                .execute(pool)
                .await
                .map(drop))?;
        }
        let now = clock::now();
        let datasets = "INSERT INTO datasets (id, name, description, file_type, size_bytes, privacy, owner_id, created_at) \
                        VALUES ($1, $2, $3, $4, $5, $6, (SELECT id FROM research_users WHERE username = $7), $8) \
                        ON CONFLICT (id) DO NOTHING";
        let mut created = 0;
        for (id, name, description, file_type, size, privacy, owner) in DATASETS {
            created += on_pool!(self.db, |pool| sqlx::query(datasets)
                .bind(id)
                .bind(name)
                .bind(description)
                .bind(file_type)
                .bind(size)
                .bind(privacy)
                .bind(owner)
                .bind(&now)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()))?;
        }
        if created > 0 {
            self.seed_flagship_downloads().await?;
        }
        Ok(())
    }

    /// The flagship's 15 downloads, from alice, bob and charlie in rotation.
    async fn seed_flagship_downloads(&self) -> Result<(), sqlx::Error> {
        for i in 0..SEEDED_DOWNLOADS {
            let user = USERS[i % 3].0;
            self.record(user, "download", FLAGSHIP_ID, Some("10.0.0.1")).await?;
        }
        Ok(())
    }

    /// The conference's uploads: `count` more public datasets, owned by the workshop's
    /// users in turn, upload `n` downloaded `n % 4` times. Returns how many were added
    /// and how many datasets there are now. Only the datasets this call inserted get
    /// downloads, so two imports at once never double them.
    pub async fn import_uploads(&self, count: u32) -> Result<(u32, i64), sqlx::Error> {
        let existing: i64 = on_pool!(self.db, |pool| sqlx::query_scalar(COUNT_UPLOADS).fetch_one(pool).await)
            .map_err(|e| self.observe(e))?;
        let now = clock::now();
        let first = existing as u32 + 1;
        let numbers: Vec<u32> = (first..first.saturating_add(count)).collect();
        let mut added = 0;
        // 6 parameters a row (3 a download): 1,000 rows stay under SQLite's 32,766 per statement.
        for chunk in numbers.chunks(1_000) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let p = i * 6;
                    format!("(${}, ${}, ${}, 'csv', ${}, 'public', ${}, ${})", p + 1, p + 2, p + 3, p + 4, p + 5, p + 6)
                })
                .collect();
            let sql = format!(
                "INSERT INTO datasets (id, name, description, file_type, size_bytes, privacy, owner_id, created_at) \
                 VALUES {} ON CONFLICT (id) DO NOTHING RETURNING id",
                rows.join(", ")
            );
            let inserted: Vec<String> = on_pool!(self.db, |pool| {
                let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()));
                for &n in chunk {
                    query = query
                        .bind(upload_id(n))
                        .bind(format!("Conference upload {n:04}"))
                        .bind("Uploaded during the conference")
                        .bind(i64::from(n) * 4096)
                        .bind(USERS[n as usize % USERS.len()].0)
                        .bind(&now);
                }
                query.fetch_all(pool).await
            })
            .map_err(|e| self.observe(e))?;
            added += inserted.len() as u32;
            let downloads: Vec<(&String, &str)> = inserted
                .iter()
                .filter_map(|id| upload_number(id).map(|n| (id, n)))
                .flat_map(|(id, n)| (0..n % 4).map(move |d| (id, USERS[(n + d) as usize % USERS.len()].0)))
                .collect();
            if downloads.is_empty() {
                continue;
            }
            let audit: Vec<String> = (0..downloads.len())
                .map(|i| format!("(${}, 'download', 'dataset', ${}, ${}, '10.0.0.2')", i * 3 + 1, i * 3 + 2, i * 3 + 3))
                .collect();
            let audit_sql = format!(
                "INSERT INTO audit_logs (user_id, action, object_type, object_id, timestamp, ip) VALUES {}",
                audit.join(", ")
            );
            on_pool!(self.db, |pool| {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(audit_sql.clone()));
                for (id, user) in &downloads {
                    query = query.bind(*user).bind(*id).bind(&now);
                }
                query.execute(pool).await.map(drop)
            })
            .map_err(|e| self.observe(e))?;
        }
        let total = on_pool!(self.db, |pool| sqlx::query_scalar("SELECT COUNT(*) FROM datasets").fetch_one(pool).await)
            .map_err(|e| self.observe(e))?;
        Ok((added, total))
    }

    /// Back to the seeded state: no audit rows but the seeded downloads, no access times.
    pub async fn restore_seed(&self) -> Result<(), sqlx::Error> {
        self.db.execute("DELETE FROM audit_logs").await.map_err(|e| self.observe(e))?;
        self.db.execute(DELETE_UPLOADS).await.map_err(|e| self.observe(e))?;
        self.db.execute("UPDATE datasets SET last_accessed = NULL").await.map_err(|e| self.observe(e))?;
        self.seed().await?;
        self.seed_flagship_downloads().await
    }

    pub async fn user_by_token(&self, token: &str) -> Result<Option<User>, sqlx::Error> {
        let sql = "SELECT id, username FROM research_users WHERE token = $1";
        on_pool!(self.db, |pool| sqlx::query_as::<_, User>(sql).bind(token).fetch_optional(pool).await)
            .map_err(|e| self.observe(e))
    }

    /// One dataset, if it exists and the user may see it.
    pub async fn find_visible(&self, user: &User, id: &str) -> Result<Option<Dataset>, sqlx::Error> {
        let sql = format!(
            "SELECT {DATASET_COLUMNS} FROM datasets d JOIN research_users u ON u.id = d.owner_id \
             WHERE d.id = $1 AND (d.privacy = 'public' OR d.owner_id = $2)"
        );
        on_pool!(self.db, |pool| sqlx::query_as::<_, Dataset>(sqlx::AssertSqlSafe(sql.clone()))
            .bind(id)
            .bind(&user.id)
            .fetch_optional(pool)
            .await)
        .map_err(|e| self.observe(e))
    }

    /// Appends one audit row.
    pub async fn record(
        &self,
        user_id: &str,
        action: &str,
        dataset_id: &str,
        ip: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        let sql = "INSERT INTO audit_logs (user_id, action, object_type, object_id, timestamp, ip) \
                   VALUES ($1, $2, 'dataset', $3, $4, $5)";
        let now = clock::now();
        on_pool!(self.db, |pool| sqlx::query(sql)
            .bind(user_id)
            .bind(action)
            .bind(dataset_id)
            .bind(&now)
            .bind(ip)
            .execute(pool)
            .await
            .map(drop))
        .map_err(|e| self.observe(e))
    }

    pub async fn touch(&self, dataset_id: &str) -> Result<(), sqlx::Error> {
        let now = clock::now();
        on_pool!(self.db, |pool| sqlx::query("UPDATE datasets SET last_accessed = $2 WHERE id = $1")
            .bind(dataset_id)
            .bind(&now)
            .execute(pool)
            .await
            .map(drop))
        .map_err(|e| self.observe(e))
    }

    /// The statistics, computed from the audit log (the expensive part the cache saves).
    pub async fn statistics(&self, dataset_id: &str) -> Result<Statistics, sqlx::Error> {
        let sql = "SELECT COUNT(a.id), COUNT(DISTINCT a.user_id), MAX(d.last_accessed) \
                   FROM datasets d LEFT JOIN audit_logs a \
                     ON a.object_type = 'dataset' AND a.object_id = d.id AND a.action = 'download' \
                   WHERE d.id = $1";
        let (total, unique, last): (i64, i64, Option<String>) =
            on_pool!(self.db, |pool| sqlx::query_as(sql).bind(dataset_id).fetch_one(pool).await)
                .map_err(|e| self.observe(e))?;
        Ok(Statistics { total_downloads: total, unique_users: unique, last_accessed: last })
    }
}
