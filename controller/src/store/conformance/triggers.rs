//! Webhook triggers (decision 0017): created only for a live pipeline and only once per name,
//! read back with their secret, listed by name, deleted once.

use super::*;
use crate::store::pipelines::{NewPipeline, PipelineTemplate};
use crate::store::triggers::TriggerRecord;

fn trigger(name: &str, pipeline: &str, secret: &str) -> TriggerRecord {
    TriggerRecord {
        name: name.into(),
        pipeline: pipeline.into(),
        secret: secret.into(),
        created_at: T0,
    }
}

pub(crate) async fn triggers_name_a_live_pipeline_once_and_keep_their_secret(
    store: &Arc<dyn Store>,
) {
    // No pipeline yet: refused, nothing written.
    let e = store
        .create_trigger(trigger("orders", "hooked", "s1"))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
    assert!(store.get_trigger("orders").await.unwrap().is_none());

    let template = PipelineTemplate {
        tasks: vec![task("extract", &[])],
        defaults: BTreeMap::new(),
        params: vec![],
        schedule: None,
    };
    store
        .apply_pipeline(
            NewPipeline {
                name: "hooked".into(),
                template,
            },
            T0,
        )
        .await
        .unwrap();
    store
        .create_trigger(trigger("orders", "hooked", "s1"))
        .await
        .unwrap();
    store
        .create_trigger(trigger("backfill", "hooked", "s2"))
        .await
        .unwrap();
    // A second trigger of one name is refused; the first keeps its secret.
    let e = store
        .create_trigger(trigger("orders", "hooked", "other"))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    let got = store.get_trigger("orders").await.unwrap().unwrap();
    assert_eq!(got, trigger("orders", "hooked", "s1"));
    assert!(!format!("{got:?}").contains("s1"), "Debug shows no secret");

    let names: Vec<String> = store
        .list_triggers()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["backfill", "orders"], "by name");

    store.delete_trigger("orders").await.unwrap();
    assert!(store.get_trigger("orders").await.unwrap().is_none());
    let e = store.delete_trigger("orders").await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
    // Deleted, the name may be made anew.
    store
        .create_trigger(trigger("orders", "hooked", "s3"))
        .await
        .unwrap();
    assert_eq!(
        store.get_trigger("orders").await.unwrap().unwrap().secret,
        "s3"
    );
    // A deleted pipeline gets no new trigger.
    store.delete_pipeline("hooked", T0 + 1).await.unwrap();
    let e = store
        .create_trigger(trigger("late", "hooked", "s4"))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
}
