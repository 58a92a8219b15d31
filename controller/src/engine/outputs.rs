//! The engine's side of task outputs: uploads and input fetches fenced by the attempt, and
//! the published results readers list and download. Files live in `artifacts`; rows in the store.

use crate::artifacts::{ArtifactError, Reader, Upload, UploadGrant, UploadHeader};
use crate::model::{AttemptKey, ResultFile};

use super::{Engine, EngineError, Identity};

impl Engine {
    /// Checks that `attempt` is current on this agent's live session (`Fenced` otherwise).
    async fn fence(&self, who: &Identity, attempt: &AttemptKey) -> Result<(), EngineError> {
        self.touch_for(who, attempt)?;
        Ok(self.store.check_attempt(&who.name, attempt).await?)
    }

    /// Starts (or resumes) receiving one output of the agent's current attempt.
    pub async fn begin_upload(
        &self,
        who: &Identity,
        attempt: &AttemptKey,
        header: UploadHeader,
    ) -> Result<Upload, EngineError> {
        self.fence(who, attempt).await?;
        Ok(self.artifacts.begin(attempt.clone(), header).await?)
    }

    /// Bytes of one output of the agent's current attempt that the controller holds.
    pub async fn upload_status(
        &self,
        who: &Identity,
        attempt: &AttemptKey,
        name: &str,
    ) -> Result<u64, EngineError> {
        self.fence(who, attempt).await?;
        Ok(self.artifacts.received(attempt, name).await?)
    }

    /// Opens a dependency's published output for the consuming attempt, from `offset`.
    pub async fn fetch_input(
        &self,
        who: &Identity,
        consumer: &AttemptKey,
        producer: &str,
        name: &str,
        offset: u64,
    ) -> Result<(ResultFile, Reader), EngineError> {
        self.fence(who, consumer).await?;
        self.check_dependency(consumer, producer).await?;
        self.result(&consumer.job_id, producer, name, offset).await
    }

    /// URLs to upload one output of the agent's current attempt straight to the object store;
    /// `None` when artifacts live in the data directory (the agent streams them here).
    pub async fn grant_upload(
        &self,
        who: &Identity,
        attempt: &AttemptKey,
        name: &str,
        size: u64,
        first_part: u32,
    ) -> Result<Option<UploadGrant>, EngineError> {
        self.fence(who, attempt).await?;
        let Some(objects) = &self.objects else {
            return Ok(None);
        };
        Ok(Some(
            objects
                .grant_upload(attempt, name, size, first_part)
                .await?,
        ))
    }

    /// Assembles a multipart upload of the agent's current attempt; the object's size.
    pub async fn complete_upload(
        &self,
        who: &Identity,
        attempt: &AttemptKey,
        name: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<u64, EngineError> {
        self.fence(who, attempt).await?;
        let objects = self.objects.as_ref().ok_or_else(|| {
            EngineError::InvalidArgument(
                "this controller keeps artifacts in its data directory: no multipart uploads"
                    .into(),
            )
        })?;
        Ok(objects
            .complete_upload(attempt, name, upload_id, parts)
            .await?)
    }

    /// A presigned URL of a dependency's published output for the consuming attempt; `None`
    /// when artifacts live in the data directory (use `fetch_input`).
    pub async fn grant_download(
        &self,
        who: &Identity,
        consumer: &AttemptKey,
        producer: &str,
        name: &str,
    ) -> Result<Option<(ResultFile, String)>, EngineError> {
        self.fence(who, consumer).await?;
        if self.objects.is_none() {
            return Ok(None);
        }
        self.check_dependency(consumer, producer).await?;
        self.result_url(&consumer.job_id, producer, name).await
    }

    /// A presigned URL of one published output; `None` when artifacts live in the data
    /// directory (use `result`).
    pub async fn result_url(
        &self,
        job_id: &str,
        task_id: &str,
        name: &str,
    ) -> Result<Option<(ResultFile, String)>, EngineError> {
        let Some(objects) = &self.objects else {
            return Ok(None);
        };
        let file = self.published(job_id, task_id, name).await?;
        let url = objects.download_url(job_id, task_id, file.attempt, name)?;
        Ok(Some((file, url)))
    }

    async fn check_dependency(
        &self,
        consumer: &AttemptKey,
        producer: &str,
    ) -> Result<(), EngineError> {
        let deps = self
            .store
            .task_dependencies(&consumer.job_id, &consumer.task_id)
            .await?;
        if !deps.iter().any(|d| d == producer) {
            return Err(EngineError::PermissionDenied(format!(
                "task {producer} is not a dependency of task {}",
                consumer.task_id
            )));
        }
        Ok(())
    }

    async fn published(
        &self,
        job_id: &str,
        task_id: &str,
        name: &str,
    ) -> Result<ResultFile, EngineError> {
        crate::artifacts::check_name(name)?;
        self.store
            .list_outputs(job_id, Some(task_id))
            .await?
            .into_iter()
            .find(|f| f.name == name)
            .ok_or_else(|| {
                EngineError::NotFound(format!("output {name} of task {task_id} of job {job_id}"))
            })
    }

    /// Published outputs of a job, or of one of its tasks.
    pub async fn results(
        &self,
        job_id: &str,
        task_id: Option<&str>,
    ) -> Result<Vec<ResultFile>, EngineError> {
        Ok(self.store.list_outputs(job_id, task_id).await?)
    }

    /// Opens one published output from `offset`.
    pub async fn result(
        &self,
        job_id: &str,
        task_id: &str,
        name: &str,
        offset: u64,
    ) -> Result<(ResultFile, Reader), EngineError> {
        if self.objects.is_some() {
            return Err(ArtifactError::NotFound(format!(
                "a stream of output {name} (artifacts live in an object store: ask for a URL)"
            ))
            .into());
        }
        let file = self.published(job_id, task_id, name).await?;
        let path = self
            .artifacts
            .published_path(job_id, task_id, file.attempt, name)?;
        let reader = self.artifacts.reader(path, name, offset, file.size).await?;
        Ok((file, reader))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use sha2::{Digest, Sha256};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::artifacts::{ArtifactError, Artifacts};
    use crate::engine::EngineConfig;
    use crate::model::{
        now_ms, Assignment, AttemptFinish, NewJob, Outcome, OutputFile, RetryPolicy, TaskKind,
        TaskSpec,
    };
    use crate::store::{Store, StoreError};

    /// `complete_early`, answered with the next attempts once the outcome is durable.
    async fn complete(
        engine: &Engine,
        who: &Identity,
        finish: AttemptFinish,
        outputs: Vec<OutputFile>,
        want: u32,
    ) -> Result<Vec<Assignment>, EngineError> {
        let (next, claimed) = tokio::sync::oneshot::channel();
        engine
            .complete_early(who, finish, outputs, None, vec![], 0, want, next)
            .await?;
        Ok(claimed.await.unwrap_or_default())
    }

    async fn engine(dir: &std::path::Path) -> Arc<Engine> {
        let store: Arc<dyn Store> = Arc::new(
            crate::store::sqlite::SqliteStore::open(&dir.join("ferry.db"))
                .await
                .unwrap(),
        );
        let artifacts = Arc::new(Artifacts::open(&dir.join("artifacts"), 1 << 30).unwrap());
        let config = EngineConfig {
            agent_timeout: Duration::from_secs(15),
            log_limit: 1 << 20,
            timeout_grace: Duration::from_secs(10),
            max_poll_wait: Duration::from_secs(1),
        };
        Arc::new(
            Engine::new(config, store, artifacts, CancellationToken::new())
                .await
                .unwrap(),
        )
    }

    async fn agent(engine: &Engine) -> Identity {
        let session = engine
            .register(
                "a".into(),
                vec!["q".into()],
                Default::default(),
                4,
                "h".into(),
                "v".into(),
            )
            .await
            .unwrap();
        Identity {
            name: "a".into(),
            session,
        }
    }

    fn task(id: &str, deps: &[&str], outputs: &[&str]) -> TaskSpec {
        TaskSpec {
            id: id.into(),
            queue: "q".into(),
            labels: Default::default(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            kind: TaskKind::Shell {
                command: "true".into(),
            },
            outputs: outputs.iter().map(|o| o.to_string()).collect(),
            timeout_ms: 0,
            retry: RetryPolicy {
                max_attempts: 1,
                initial_delay_ms: 0,
                max_delay_ms: 0,
            },
        }
    }

    async fn submit(engine: &Engine, tasks: Vec<TaskSpec>) -> String {
        engine
            .submit(NewJob {
                name: "outputs".into(),
                params: Default::default(),
                tasks,
                idempotency_key: None,
                backfill: Default::default(),
            })
            .await
            .unwrap()
            .job_id
    }

    async fn upload(
        engine: &Engine,
        who: &Identity,
        key: &AttemptKey,
        name: &str,
        data: &[u8],
    ) -> OutputFile {
        let output = OutputFile {
            name: name.into(),
            size: data.len() as u64,
            sha256: Sha256::digest(data)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        };
        let header = UploadHeader {
            name: name.into(),
            size: output.size,
            sha256: output.sha256.clone(),
        };
        let mut up = engine.begin_upload(who, key, header).await.unwrap();
        for (i, chunk) in data.chunks(1000).enumerate() {
            up.write((i * 1000) as u64, chunk.to_vec(), crc32c::crc32c(chunk))
                .await
                .unwrap();
        }
        assert_eq!(up.finish().await.unwrap(), output.size);
        output
    }

    fn finish(who: &Identity, key: &AttemptKey, outcome: Outcome) -> AttemptFinish {
        AttemptFinish {
            agent: who.name.clone(),
            attempt: key.clone(),
            outcome,
            exit_code: Some(0),
            error: String::new(),
        }
    }

    async fn read_all(mut reader: Reader) -> Vec<u8> {
        let mut data = Vec::new();
        while let Some(chunk) = reader.next().await {
            data.extend(chunk.unwrap().1);
        }
        data
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fenced_or_unverified_completion_publishes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path()).await;
        let who = agent(&engine).await;
        let job = submit(&engine, vec![task("t", &[], &["out"])]).await;
        let orders = engine.poll(&who, 1, &[], Duration::ZERO).await.unwrap();
        let key = orders.assignments[0].attempt.clone();
        let mut out = upload(&engine, &who, &key, "out", &[5; 2500]).await;
        let published = engine
            .artifacts
            .published_path(&job, "t", 1, "out")
            .unwrap();

        let good_sha = std::mem::replace(&mut out.sha256, "00".repeat(32));
        let err = complete(
            &engine,
            &who,
            finish(&who, &key, Outcome::Succeeded),
            vec![out.clone()],
            0,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, EngineError::Artifact(ArtifactError::Disagrees { .. })),
            "{err}"
        );
        assert!(!published.exists());
        out.sha256 = good_sha;

        // The store declares the attempt lost (its agent's session ended) meanwhile.
        engine
            .store
            .agent_dead("a", &who.session, now_ms())
            .await
            .unwrap();
        let err = complete(
            &engine,
            &who,
            finish(&who, &key, Outcome::Succeeded),
            vec![out],
            0,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, EngineError::Store(StoreError::Fenced { .. })),
            "{err}"
        );
        assert!(!published.exists(), "the moved files were taken back");
        assert!(engine.results(&job, None).await.unwrap().is_empty());
        let err = engine.upload_status(&who, &key, "out").await.unwrap_err();
        assert!(
            matches!(err, EngineError::Store(StoreError::Fenced { .. })),
            "{err}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn outputs_publish_with_the_success_and_reach_the_dependents() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path()).await;
        let who = agent(&engine).await;
        let job = submit(
            &engine,
            vec![
                task("extract", &[], &["rows.csv", "empty"]),
                task("load", &["extract"], &[]),
            ],
        )
        .await;
        let orders = engine.poll(&who, 1, &[], Duration::ZERO).await.unwrap();
        let key = orders.assignments[0].attempt.clone();
        let data: Vec<u8> = (0..2_500_000u32).map(|i| (i % 253) as u8).collect();
        let outputs = vec![
            upload(&engine, &who, &key, "rows.csv", &data).await,
            upload(&engine, &who, &key, "empty", &[]).await,
        ];
        let next = complete(
            &engine,
            &who,
            finish(&who, &key, Outcome::Succeeded),
            outputs.clone(),
            1,
        )
        .await
        .unwrap();
        assert_eq!(next.len(), 1);
        let load = next[0].attempt.clone();
        let mut inputs: Vec<_> = next[0]
            .inputs
            .iter()
            .map(|f| (f.name.clone(), f.size, f.sha256.clone()))
            .collect();
        inputs.sort();
        assert_eq!(
            inputs,
            vec![
                ("empty".to_string(), 0, outputs[1].sha256.clone()),
                (
                    "rows.csv".to_string(),
                    data.len() as u64,
                    outputs[0].sha256.clone()
                ),
            ]
        );

        let (_, reader) = engine
            .fetch_input(&who, &load, "extract", "rows.csv", 7)
            .await
            .unwrap();
        assert_eq!(read_all(reader).await, data[7..]);
        let (_, reader) = engine
            .fetch_input(&who, &load, "extract", "empty", 0)
            .await
            .unwrap();
        assert!(read_all(reader).await.is_empty());
        let err = engine
            .fetch_input(&who, &load, "load", "x", 0)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, EngineError::PermissionDenied(_)), "{err}");
        let err = engine
            .fetch_input(&who, &load, "extract", "nope", 0)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, EngineError::NotFound(_)), "{err}");
        let err = engine
            .fetch_input(&who, &key, "extract", "rows.csv", 0)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, EngineError::Store(StoreError::Fenced { .. })),
            "{err}"
        );

        assert_eq!(engine.results(&job, None).await.unwrap().len(), 2);
        let (file, reader) = engine.result(&job, "extract", "rows.csv", 0).await.unwrap();
        assert_eq!(file.attempt, 1);
        assert_eq!(read_all(reader).await, data);

        // Retention, once the job has ended long enough ago.
        complete(
            &engine,
            &who,
            finish(&who, &load, Outcome::Succeeded),
            vec![],
            0,
        )
        .await
        .unwrap();
        let week = Duration::from_secs(7 * 86_400);
        let kept = crate::artifacts::retention::round(
            engine.store.as_ref(),
            &engine.artifacts,
            week,
            now_ms(),
        )
        .await
        .unwrap();
        assert_eq!(kept.jobs, 0);
        assert_eq!(engine.results(&job, None).await.unwrap().len(), 2);
        let gone = crate::artifacts::retention::round(
            engine.store.as_ref(),
            &engine.artifacts,
            week,
            now_ms() + 8 * 86_400_000,
        )
        .await
        .unwrap();
        assert_eq!((gone.jobs, gone.rows), (1, 2));
        assert!(engine.results(&job, None).await.unwrap().is_empty());
        assert!(!engine
            .artifacts
            .published_path(&job, "extract", 1, "rows.csv")
            .unwrap()
            .exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_removes_the_staging_of_attempts_no_longer_running() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path()).await;
        let who = agent(&engine).await;
        submit(&engine, vec![task("t", &[], &["out"])]).await;
        let orders = engine.poll(&who, 1, &[], Duration::ZERO).await.unwrap();
        let key = orders.assignments[0].attempt.clone();
        upload(&engine, &who, &key, "out", b"partial").await;
        let week = Duration::from_secs(7 * 86_400);
        let round = crate::artifacts::retention::round(
            engine.store.as_ref(),
            &engine.artifacts,
            week,
            now_ms(),
        )
        .await
        .unwrap();
        assert_eq!(round.attempts, 0, "a running attempt keeps its staging");
        engine
            .store
            .agent_dead("a", &who.session, now_ms())
            .await
            .unwrap();
        let round = crate::artifacts::retention::round(
            engine.store.as_ref(),
            &engine.artifacts,
            week,
            now_ms(),
        )
        .await
        .unwrap();
        assert_eq!(round.attempts, 1);
        assert_eq!(engine.artifacts.received(&key, "out").await.unwrap(), 0);
    }
}
