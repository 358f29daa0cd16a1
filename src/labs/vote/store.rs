//! The durable side of the poll: `votes` is the truth every live count is rebuilt
//! from, `referral_partners` the table referral codes are checked against.

use rand::Rng;
use sqlx::AssertSqlSafe;

use super::ballot::{Choice, Tally};
use crate::on_pool;
use crate::platform::db::Db;

/// The partner whose code is on the right-hand QR code of the talk.
pub const KNOWN_PARTNER_CODE: &str = "conf-partner-2026";
pub const KNOWN_PARTNER_NAME: &str = "SREDay Conference Partner";

const PARTNER_CODE_LEN: usize = 20;
const PARTNER_NAME_STEMS: [&str; 8] =
    ["CloudLabs", "DataForge", "ByteWorks", "OpsGuild", "StackHaus", "InfraCo", "LogLine", "PagerPals"];

#[derive(Clone)]
pub struct VoteStore {
    db: Db,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Partner {
    pub id: i64,
    pub name: String,
}

impl VoteStore {
    pub fn new(db: Db) -> Self {
        VoteStore { db }
    }

    /// Stores one vote; returns once it is committed.
    pub async fn record_vote(&self, choice: Choice, referral: Option<&str>) -> Result<i64, sqlx::Error> {
        let sql = "INSERT INTO votes (choice, referral_code) VALUES ($1, $2) RETURNING id";
        on_pool!(self.db, |pool| sqlx::query_scalar::<_, i64>(sql)
            .bind(choice.key())
            .bind(referral)
            .fetch_one(pool)
            .await)
        .map_err(|e| self.db.observe(e))
    }

    /// Counts every stored vote by choice.
    pub async fn tally(&self) -> Result<Tally, sqlx::Error> {
        let sql = "SELECT choice, COUNT(*) FROM votes GROUP BY choice";
        let rows: Vec<(String, i64)> =
            on_pool!(self.db, |pool| sqlx::query_as(sql).fetch_all(pool).await).map_err(|e| self.db.observe(e))?;
        let mut tally = Tally::default();
        for (key, count) in rows {
            if let Some(choice) = Choice::parse(&key) {
                tally.0[choice.index()] = count;
            }
        }
        Ok(tally)
    }

    /// Looks a referral code up by its unique index.
    pub async fn find_partner(&self, code: &str) -> Result<Option<Partner>, sqlx::Error> {
        let sql = "SELECT id, name FROM referral_partners WHERE code = $1";
        on_pool!(self.db, |pool| sqlx::query_as::<_, Partner>(sql).bind(code).fetch_optional(pool).await)
            .map_err(|e| self.db.observe(e))
    }

    pub async fn clear_votes(&self) -> Result<u64, sqlx::Error> {
        on_pool!(self.db, |pool| sqlx::query("DELETE FROM votes").execute(pool).await.map(|r| r.rows_affected()))
            .map_err(|e| self.db.observe(e))
    }

    pub async fn partner_count(&self) -> Result<i64, sqlx::Error> {
        on_pool!(self.db, |pool| sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM referral_partners")
            .fetch_one(pool)
            .await)
    }

    /// Seeds the known partner plus `generated` random ones, once: a table that already
    /// has partners only gets the known one back if it went missing. Progress is logged
    /// every 100,000 rows; 500,000 partners take seconds on PostgreSQL.
    pub async fn seed_partners(&self, generated: u32) -> Result<u64, sqlx::Error> {
        let existing = self.partner_count().await?;
        let known = "INSERT INTO referral_partners (code, name) VALUES ($1, $2) ON CONFLICT (code) DO NOTHING";
        let mut inserted = on_pool!(self.db, |pool| sqlx::query(known)
            .bind(KNOWN_PARTNER_CODE)
            .bind(KNOWN_PARTNER_NAME)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        if existing > 0 {
            return Ok(inserted);
        }
        let mut rng = rand::rng();
        let mut done = 0u32;
        while done < generated {
            let batch = (generated - done).min(self.seed_batch_size());
            let rows: Vec<(String, String)> = (done..done + batch)
                .map(|i| (random_code(&mut rng), format!("{}-{:04}", PARTNER_NAME_STEMS[i as usize % 8], i + 1)))
                .collect();
            inserted += self.insert_partners(rows).await?;
            let before = done;
            done += batch;
            if done / 100_000 > before / 100_000 || done == generated {
                tracing::info!(seeded = done, of = generated, "seeding referral partners");
            }
        }
        Ok(inserted)
    }

    fn seed_batch_size(&self) -> u32 {
        // SQLite binds at most 32,766 parameters per statement; PostgreSQL takes arrays.
        if self.db.is_postgres() { 50_000 } else { 10_000 }
    }

    async fn insert_partners(&self, rows: Vec<(String, String)>) -> Result<u64, sqlx::Error> {
        match self.db.pool() {
            crate::platform::db::Pool::Postgres(pool) => {
                let (codes, names): (Vec<String>, Vec<String>) = rows.into_iter().unzip();
                sqlx::query(
                    "INSERT INTO referral_partners (code, name) \
                     SELECT * FROM UNNEST($1::text[], $2::text[]) ON CONFLICT (code) DO NOTHING",
                )
                .bind(codes)
                .bind(names)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
            }
            crate::platform::db::Pool::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let mut inserted = 0;
                // 2 parameters a row, well under SQLite's limit per statement.
                for chunk in rows.chunks(5_000) {
                    let placeholders = vec!["(?, ?)"; chunk.len()].join(", ");
                    let sql = format!(
                        "INSERT INTO referral_partners (code, name) VALUES {placeholders} ON CONFLICT (code) DO NOTHING"
                    );
                    let mut query = sqlx::query(AssertSqlSafe(sql));
                    for (code, name) in chunk {
                        query = query.bind(code).bind(name);
                    }
                    inserted += query.execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
                Ok(inserted)
            }
        }
    }
}

/// A 20-character `[a-z0-9]` partner code.
fn random_code(rng: &mut impl Rng) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..PARTNER_CODE_LEN).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_codes_are_twenty_lowercase_alphanumerics() {
        let code = super::random_code(&mut rand::rng());
        assert_eq!(code.len(), 20);
        assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{code}");
    }
}
