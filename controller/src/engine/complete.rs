//! An attempt's end, as its agent reports it: outputs checked and prepared for publication by
//! the `ArtifactStore` (whichever is configured), the outcome recorded with the agent's next
//! claims in one transaction, and the artifacts of a refused completion taken back or removed.

use tokio::sync::oneshot;

use super::{Engine, EngineError, Identity};
use crate::artifacts::ArtifactError;
use crate::model::AttemptKey;
use crate::model::{Assignment, AttemptReport, Outcome};
use crate::store::{ClaimRequest, Completion, StoreError};

impl Engine {
    /// Records an attempt's end; with `want > 0`, also claims the agent's next attempts in the
    /// same transaction and hands them to `next` as soon as it is written, so that a busy agent
    /// needs one call per task and its freed slot need not wait for the sync. A success
    /// publishes its `outputs`: each is checked against what was received, the attempt's files
    /// are moved to the published area, and their rows are written in the finishing
    /// transaction; if that transaction is refused, the files are taken back. Nothing is
    /// published otherwise. `Ok` once the outcome is durable.
    #[tracing::instrument(skip_all, fields(job = %report.finish.attempt.job_id, task = %report.finish.attempt.task_id, attempt = report.finish.attempt.attempt))]
    pub async fn complete_early(
        &self,
        who: &Identity,
        mut report: AttemptReport,
        want: u32,
        next: oneshot::Sender<Vec<Assignment>>,
    ) -> Result<(), EngineError> {
        let view = self.touch_for(who, &report.finish.attempt).await?;
        let outcome = report.finish.outcome;
        let key = report.finish.attempt.clone();
        let outputs = &report.outputs;
        let succeeded = outcome == Outcome::Succeeded && !outputs.is_empty();
        let publication = if succeeded {
            if let Err(e) = self.outputs.clone().check(&key, outputs).await {
                // A fenced attempt hears that it is fenced rather than about its files.
                self.store.check_attempt(&who.name, &key).await?;
                // The completion sent again after a controller died between moving its
                // outputs and recording them: the files wait in the published area.
                let reclaimed = matches!(e, ArtifactError::NotStaged { .. })
                    && self.outputs.take_back(&key).await?;
                let again = if reclaimed {
                    tracing::info!(
                        "outputs moved by a controller that died before recording them, taken back"
                    );
                    self.outputs.clone().check(&key, outputs).await
                } else {
                    Err(e)
                };
                if let Err(e) = again {
                    tracing::warn!(error = %e, "completion refused: outputs do not check out");
                    return Err(e.into());
                }
            }
            Some(self.outputs.clone().prepare(&key).await?)
        } else {
            None
        };
        let published = outputs.len();
        let bytes: u64 = outputs.iter().map(|o| o.size).sum();
        let claim = (want > 0 && !view.draining).then(|| ClaimRequest {
            agent: who.name.clone(),
            session: who.session.clone(),
            queues: view.queues,
            labels: view.labels,
            max: want,
        });
        // Only a success records what was extracted.
        report.extract = report.extract.filter(|_| outcome == Outcome::Succeeded);
        if let Some(e) = &report.extract {
            tracing::debug!(rows = e.rows, bytes = e.bytes, files = e.files.len(), watermark = ?e.watermark, backfill = e.backfill, "extract reported");
        }
        let completion = Completion {
            report,
            log_limit: self.config.log_limit,
        };
        let result = match self
            .store
            .complete_early(completion, claim, self.clock.now_ms())
            .await
        {
            Ok(written) => {
                // The next attempts go out as soon as the transaction is written.
                let _ = next.send(written.early);
                written.durable.await
            }
            Err(e) => Err(e),
        };
        let undone = match (&result, publication) {
            (Ok(_), Some(publication)) => {
                publication.commit();
                Ok(())
            }
            // Fenced: unless another controller recorded this very attempt's success
            // meanwhile (its rows name these outputs), they are of no use.
            (Err(StoreError::Fenced { .. }), Some(publication)) => {
                if self.published_by_attempt(&key).await {
                    publication.commit();
                    Ok(())
                } else {
                    publication.remove().await
                }
            }
            (Err(_), Some(publication)) => publication.restore().await,
            // Not a success (or a success without outputs): its staging is of no more use.
            (Ok(_) | Err(StoreError::Fenced { .. }), None) => self.outputs.drop_attempt(&key).await,
            (Err(_), None) => Ok(()),
        };
        if let Err(e) = undone {
            tracing::warn!(error = %e, "cleaning the attempt's artifacts failed");
        }
        let effects = result?;
        tracing::debug!(agent = %who.name, ?outcome, published, bytes, "attempt completed");
        self.publish(effects);
        Ok(())
    }
}

impl Engine {
    /// Whether the store's published outputs of the task are this attempt's.
    async fn published_by_attempt(&self, key: &AttemptKey) -> bool {
        match self
            .store
            .list_outputs(&key.job_id, Some(&key.task_id))
            .await
        {
            Ok(rows) => rows.iter().any(|r| r.attempt == key.attempt),
            // Unknown: keep the files (retention removes what no row names).
            Err(_) => true,
        }
    }
}
