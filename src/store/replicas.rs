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

/// Leadership as this replica holds it: the lease's name, this holder and
/// the epoch it was granted. The epoch grows by one whenever the lease
/// passes to another holder, so a writer that lost the lease (however long
/// it was frozen) holds an epoch that is no longer current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub lease: String,
    pub holder: String,
    pub epoch: i64,
}

impl Store {
    /// Take or renew the lease `name` for `holder` until `ttl` from now.
    /// The epoch held afterwards, or None when another holder has it. One
    /// statement per backend, so two replicas asking at once cannot both
    /// win: the row is created by the first, and the update only takes it
    /// over when it is ours or expired; taking it over bumps the epoch.
    pub async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<i64>, StoreError> {
        let (now, until) = (at(Duration::ZERO), at(ttl));
        let row: Option<(i64,)> = fetch_optional!(
            self,
            "INSERT INTO leases (name, holder, expires_at, epoch) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (name) DO UPDATE SET holder = $2, expires_at = $3, \
             epoch = CASE WHEN leases.holder = $2 THEN leases.epoch ELSE leases.epoch + 1 END \
             WHERE leases.holder = $2 OR leases.expires_at < $4 RETURNING epoch",
            name,
            holder,
            until,
            now
        )?;
        Ok(row.map(|r| r.0))
    }

    /// Give the lease up (on shutdown), so another replica need not wait
    /// for it to expire. The row stays, expired, so its epoch keeps growing.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        execute!(
            self,
            "UPDATE leases SET expires_at = '1970-01-01T00:00:00Z' WHERE name = $1 AND holder = $2",
            name,
            holder
        )?;
        Ok(())
    }

    /// The lease's current holder and epoch, if it has not expired.
    pub async fn lease_holder(&self, name: &str) -> Result<Option<(String, i64)>, StoreError> {
        Ok(fetch_optional!(
            self,
            "SELECT holder, epoch FROM leases WHERE name = $1 AND expires_at >= $2",
            name,
            at(Duration::ZERO)
        )?)
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
