//! What each command shows: serializable views of the controller's answers, and their tables,
//! one file per subject (`jobs`, `agents`, `results`); here the helpers they share.

mod agents;
mod jobs;
mod results;

use std::collections::BTreeMap;

pub use agents::{AgentView, DrainView, ForgetView, QueueView};
pub use jobs::{CancelView, JobSummaryView, JobView};
pub use results::{ResultView, SavedView};

fn sorted(map: &std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn pairs(map: &BTreeMap<String, String>) -> String {
    if map.is_empty() {
        return "-".to_owned();
    }
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}
