//! Which agents may take a task beyond its queue, and why none does. An sql task needs an agent
//! with its datasource: the claim matches it as a required label, under a key no label can
//! have (it starts with a control character, which `fields::label_key` refuses), so both store
//! backends filter datasources in the same pass and at the same cost as labels. Agents offer
//! their labels and a key per datasource name; `split_offer` gives them back apart.

use std::collections::BTreeMap;
use std::fmt;

use crate::model::{TaskKind, TaskSpec};

/// The prefix of the key an agent's datasource is offered under.
const DATASOURCE: &str = "\u{1}datasource ";

/// What the claim matches a task against: its required labels and, for an sql task, its
/// datasource.
pub fn requirements(spec: &TaskSpec) -> BTreeMap<String, String> {
    let mut required = spec.labels.clone();
    if let TaskKind::Sql { datasource, .. } = &spec.kind {
        required.insert(format!("{DATASOURCE}{datasource}"), String::new());
    }
    required
}

/// What an agent offers to the claim: its labels and a key per datasource.
pub fn offer(labels: BTreeMap<String, String>, datasources: &[String]) -> BTreeMap<String, String> {
    let mut offer = labels;
    for name in datasources {
        offer.insert(format!("{DATASOURCE}{name}"), String::new());
    }
    offer
}

/// An offer (or requirements) apart again: the labels, and the datasources' names.
pub fn split_offer(offer: &BTreeMap<String, String>) -> (BTreeMap<String, String>, Vec<String>) {
    let mut labels = BTreeMap::new();
    let mut datasources = Vec::new();
    for (k, v) in offer {
        match k.strip_prefix(DATASOURCE) {
            Some(name) => datasources.push(name.to_string()),
            None => {
                labels.insert(k.clone(), v.clone());
            }
        }
    }
    (labels, datasources)
}

/// An agent as placement sees it.
pub struct Candidate<'a> {
    pub queues: &'a [String],
    /// Its labels and datasources (`offer`).
    pub offer: &'a BTreeMap<String, String>,
    pub running: u32,
    pub max_tasks: u32,
}

/// Why no agent runs a queued task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// No agent serves the queue.
    NoAgent { queue: String },
    /// `agents` serve the queue, none with all of `missing`.
    NoMatch {
        queue: String,
        agents: usize,
        missing: Vec<String>,
    },
    /// Every one of the `agents` that may run it is running all it may.
    Busy { agents: usize },
}

impl Waiting {
    /// True when no agent may run the task at all (not merely busy): worth a warning at submit.
    pub fn unplaceable(&self) -> bool {
        !matches!(self, Waiting::Busy { .. })
    }
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Waiting::NoAgent { queue } => write!(f, "no agent on queue {queue}"),
            Waiting::NoMatch {
                queue,
                agents,
                missing,
            } => {
                let s = if *agents == 1 { "" } else { "s" };
                write!(
                    f,
                    "{agents} agent{s} on queue {queue}, none with {}",
                    missing.join(", ")
                )
            }
            Waiting::Busy { agents: 1 } => write!(f, "its only agent is busy"),
            Waiting::Busy { agents } => write!(f, "all {agents} busy"),
        }
    }
}

/// A requirement as a person reads it: `site=dc2`, `datasource sales`.
fn shown(key: &str, value: &str) -> String {
    match key.strip_prefix(DATASOURCE) {
        Some(name) => format!("datasource {name}"),
        None => format!("{key}={value}"),
    }
}

/// Why none of `agents` runs a task of `queue` requiring `required` (`requirements`), or `None`
/// when one of them has a free slot.
pub fn why_waiting(
    queue: &str,
    required: &BTreeMap<String, String>,
    agents: &[Candidate],
) -> Option<Waiting> {
    let on_queue: Vec<&Candidate> = agents
        .iter()
        .filter(|a| a.queues.iter().any(|q| q == queue))
        .collect();
    if on_queue.is_empty() {
        return Some(Waiting::NoAgent {
            queue: queue.to_string(),
        });
    }
    let able: Vec<&&Candidate> = on_queue
        .iter()
        .filter(|a| super::labels_match(required, a.offer))
        .collect();
    if able.is_empty() {
        // What none of them carries; if each is carried by one but none carries all, all.
        let mut missing: Vec<String> = required
            .iter()
            .filter(|(k, v)| !on_queue.iter().any(|a| a.offer.get(*k) == Some(*v)))
            .map(|(k, v)| shown(k, v))
            .collect();
        if missing.is_empty() {
            missing = required.iter().map(|(k, v)| shown(k, v)).collect();
        }
        return Some(Waiting::NoMatch {
            queue: queue.to_string(),
            agents: on_queue.len(),
            missing,
        });
    }
    if able.iter().all(|a| a.running >= a.max_tasks) {
        return Some(Waiting::Busy { agents: able.len() });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn datasources_are_offered_and_split_apart_from_labels() {
        let offer = offer(map(&[("site", "dc1")]), &["sales".into(), "crm".into()]);
        let (labels, mut datasources) = split_offer(&offer);
        datasources.sort();
        assert_eq!(labels, map(&[("site", "dc1")]));
        assert_eq!(datasources, ["crm", "sales"]);
        let required = map(&[("\u{1}datasource sales", "")]);
        assert!(super::super::labels_match(&required, &offer));
        let other = map(&[("\u{1}datasource sale", "")]);
        assert!(!super::super::labels_match(&other, &offer));
    }

    #[test]
    fn why_a_task_waits_names_the_queue_the_labels_the_datasource_or_the_load() {
        let onprem = vec!["onprem".to_string()];
        let dc1 = offer(map(&[("site", "dc1")]), &["sales".into()]);
        let agent = |offer, running| Candidate {
            queues: &onprem,
            offer,
            running,
            max_tasks: 1,
        };
        let two = [agent(&dc1, 0), agent(&dc1, 1)];
        let why = |queue, required: &[(&str, &str)], agents: &[Candidate]| {
            why_waiting(queue, &map(required), agents).map(|w| w.to_string())
        };
        assert_eq!(
            why("onperm", &[], &two).as_deref(),
            Some("no agent on queue onperm")
        );
        assert_eq!(
            why("onprem", &[("site", "dc2")], &two).as_deref(),
            Some("2 agents on queue onprem, none with site=dc2")
        );
        assert_eq!(
            why("onprem", &[("\u{1}datasource sale", "")], &two).as_deref(),
            Some("2 agents on queue onprem, none with datasource sale")
        );
        assert_eq!(why("onprem", &[("site", "dc1")], &two), None);
        let busy = [agent(&dc1, 1), agent(&dc1, 1), agent(&dc1, 2)];
        assert_eq!(why("onprem", &[], &busy).as_deref(), Some("all 3 busy"));
        assert!(!why_waiting("onprem", &map(&[]), &busy)
            .unwrap()
            .unplaceable());
    }
}
