//! What several replicas on one store agree through: a lease naming the one
//! replica that acts on rollouts, the positions every replica converges to,
//! and the webhook deliveries already acted on.

use std::time::Duration;

use super::{Store, StoreError};

fn at(offset: Duration) -> String {
    crate::time_util::canonical(
        time::OffsetDateTime::now_utc() + time::Duration::try_from(offset).unwrap_or_default(),
    )
}

/// Where the shared state stands: the commit the registry should serve and a
/// counter bumped by every change to a rollout. A replica whose snapshot was
/// built at other positions rebuilds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions {
    pub good_commit: Option<String>,
    pub rollouts_epoch: i64,
}

impl Store {
    /// Take or renew the lease `name` for `holder` until `ttl` from now.
    /// True when `holder` holds it afterwards. One statement per backend, so
    /// two replicas asking at once cannot both win: the row is created by the
    /// first, and the update only takes it over when it is ours or expired.
    pub async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let (now, until) = (at(Duration::ZERO), at(ttl));
        let changed = execute!(
            self,
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = $2, expires_at = $3 \
             WHERE leases.holder = $2 OR leases.expires_at < $4",
            name,
            holder,
            until,
            now
        )?;
        Ok(changed == 1)
    }

    /// Give the lease up (on shutdown), so another replica need not wait for it to expire.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        execute!(
            self,
            "DELETE FROM leases WHERE name = $1 AND holder = $2",
            name,
            holder
        )?;
        Ok(())
    }

    /// The lease's current holder, if it has not expired.
    pub async fn lease_holder(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = fetch_optional!(
            self,
            "SELECT holder FROM leases WHERE name = $1 AND expires_at >= $2",
            name,
            at(Duration::ZERO)
        )?;
        Ok(row.map(|r| r.0))
    }

    pub(crate) async fn bump_rollouts_epoch(&self) -> Result<(), StoreError> {
        execute!(self, "UPDATE epochs SET n = n + 1 WHERE name = 'rollouts'")?;
        Ok(())
    }

    /// The positions of `source`, in one cheap read (a follower polls this).
    pub async fn positions(&self, source: &str) -> Result<Positions, StoreError> {
        let row: Option<(Option<String>, i64)> = fetch_optional!(
            self,
            "SELECT (SELECT good_commit FROM reconcile_state WHERE source = $1), \
                    (SELECT n FROM epochs WHERE name = 'rollouts')",
            source
        )?;
        Ok(
            row.map_or_else(Positions::default, |(good_commit, rollouts_epoch)| {
                Positions {
                    good_commit,
                    rollouts_epoch,
                }
            }),
        )
    }

    /// Record webhook delivery `id` for `keep`. False when it was already
    /// recorded and has not expired: a replay, to be ignored. Expired ids are
    /// removed on the way.
    pub async fn first_delivery(&self, id: &str, keep: Duration) -> Result<bool, StoreError> {
        execute!(
            self,
            "DELETE FROM webhook_deliveries WHERE expires_at < $1",
            at(Duration::ZERO)
        )?;
        let inserted = execute!(
            self,
            "INSERT INTO webhook_deliveries (delivery_id, expires_at) VALUES ($1, $2) ON CONFLICT (delivery_id) DO NOTHING",
            id,
            at(keep)
        )?;
        Ok(inserted == 1)
    }
}
