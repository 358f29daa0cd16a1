//! The durable side of the poll: `votes` is the truth every live count is rebuilt
//! from, `referral_partners` the table referral codes are checked against.

use rand::Rng;
use sqlx::AssertSqlSafe;

use super::ballot::{Choice, Tally};
use platform::db::{Db, Pool};
use platform::on_pool;

/// The partner whose code is on the right-hand QR code of the talk.
pub const KNOWN_PARTNER_CODE: &str = "conf-partner-2026";
pub const KNOWN_PARTNER_NAME: &str = "SREDay Conference Partner";

/// A referral code's partner, by the unique index on `code`.
pub const FIND_PARTNER_SQL: &str = "SELECT id, name FROM referral_partners WHERE code = $1";

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

    /// Stores a batch of votes in one transaction: all of them, or none.
    pub async fn record_votes(&self, votes: &[(Choice, Option<String>)]) -> Result<(), sqlx::Error> {
        if votes.is_empty() {
            return Ok(());
        }
        let result = match self.db.pool() {
            Pool::Postgres(pool) => {
                let choices: Vec<&str> = votes.iter().map(|(c, _)| c.key()).collect();
                let referrals: Vec<Option<&str>> = votes.iter().map(|(_, r)| r.as_deref()).collect();
                sqlx::query("INSERT INTO votes (choice, referral_code) SELECT * FROM UNNEST($1::text[], $2::text[])")
                    .bind(choices)
                    .bind(referrals)
                    .execute(pool)
                    .await
                    .map(drop)
            }
            // In a block of its own, so every error of it (a pool timeout on `begin`
            // included) is observed below.
            Pool::Sqlite(pool) => {
                async {
                    let mut tx = pool.begin().await?;
                    // 2 parameters a row: 1,000 rows stay far under SQLite's limit.
                    for chunk in votes.chunks(1_000) {
                        let placeholders = vec!["(?, ?)"; chunk.len()].join(", ");
                        let sql = format!("INSERT INTO votes (choice, referral_code) VALUES {placeholders}");
                        let mut query = sqlx::query(AssertSqlSafe(sql));
                        for (choice, referral) in chunk {
                            query = query.bind(choice.key()).bind(referral.as_deref());
                        }
                        query.execute(&mut *tx).await?;
                    }
                    tx.commit().await
                }
                .await
            }
        };
        result.map_err(|e| self.db.observe(e))
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
        on_pool!(self.db, |pool| sqlx::query_as::<_, Partner>(FIND_PARTNER_SQL).bind(code).fetch_optional(pool).await)
            .map_err(|e| self.db.observe(e))
    }

    pub async fn clear_votes(&self) -> Result<u64, sqlx::Error> {
        self.db.execute("DELETE FROM votes").await.map_err(|e| self.db.observe(e))
    }

    /// Seeds the known partner plus `generated` random ones, once, in one transaction:
    /// replicas starting together on an empty PostgreSQL take turns (advisory lock), and
    /// an interrupted seed leaves nothing half done. A table that already has partners
    /// only gets the known one back if it went missing. Progress is logged every
    /// 100,000 rows; 500,000 partners take seconds on PostgreSQL.
    pub async fn seed_partners(&self, generated: u32) -> Result<u64, sqlx::Error> {
        const KNOWN: &str = "INSERT INTO referral_partners (code, name) VALUES ($1, $2) ON CONFLICT (code) DO NOTHING";
        const COUNT: &str = "SELECT COUNT(*) FROM referral_partners";
        match self.db.pool() {
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext('breakroom.vote.seed_partners'))")
                    .execute(&mut *tx)
                    .await?;
                let existing: i64 = sqlx::query_scalar(COUNT).fetch_one(&mut *tx).await?;
                let mut inserted = sqlx::query(KNOWN)
                    .bind(KNOWN_PARTNER_CODE)
                    .bind(KNOWN_PARTNER_NAME)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if existing == 0 {
                    for (codes, names) in generated_partners(generated, 50_000) {
                        inserted += sqlx::query(
                            "INSERT INTO referral_partners (code, name) \
                             SELECT * FROM UNNEST($1::text[], $2::text[]) ON CONFLICT (code) DO NOTHING",
                        )
                        .bind(codes)
                        .bind(names)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    }
                }
                tx.commit().await?;
                Ok(inserted)
            }
            Pool::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let existing: i64 = sqlx::query_scalar(COUNT).fetch_one(&mut *tx).await?;
                let mut inserted = sqlx::query(KNOWN)
                    .bind(KNOWN_PARTNER_CODE)
                    .bind(KNOWN_PARTNER_NAME)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if existing == 0 {
                    // 2 parameters a row: 5,000 rows stay under SQLite's 32,766 per statement.
                    for (codes, names) in generated_partners(generated, 5_000) {
                        let placeholders = vec!["(?, ?)"; codes.len()].join(", ");
                        let sql = format!(
                            "INSERT INTO referral_partners (code, name) VALUES {placeholders} ON CONFLICT (code) DO NOTHING"
                        );
                        let mut query = sqlx::query(AssertSqlSafe(sql));
                        for (code, name) in codes.into_iter().zip(names) {
                            query = query.bind(code).bind(name);
                        }
                        inserted += query.execute(&mut *tx).await?.rows_affected();
                    }
                }
                tx.commit().await?;
                Ok(inserted)
            }
        }
    }
}

/// `total` generated partners in batches of `batch` (codes, names), logging progress.
fn generated_partners(total: u32, batch: u32) -> impl Iterator<Item = (Vec<String>, Vec<String>)> {
    // A seeded generator of its own: the iterator lives across awaits on any thread.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_rng(&mut rand::rng());
    (0..total).step_by(batch as usize).map(move |start| {
        let end = (start + batch).min(total);
        let rows = (start..end).map(|i| {
            (
                random_code(&mut rng),
                format!("{}-{:04}", PARTNER_NAME_STEMS[i as usize % PARTNER_NAME_STEMS.len()], i + 1),
            )
        });
        let (codes, names): (Vec<String>, Vec<String>) = rows.unzip();
        if end / 100_000 > start / 100_000 || end == total {
            tracing::info!(seeded = end, of = total, "seeding referral partners");
        }
        (codes, names)
    })
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
