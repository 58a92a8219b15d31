//! Checks of the task graph: duplicate ids, unknown or self dependencies, and cycles (found by
//! `ferry_jobspec::graph`, named here with their place in the file).

use std::collections::{hash_map::Entry, HashMap};

use super::{location::LineIndex, read::TaskMeta, Problem};

pub(super) fn check(tasks: &[TaskMeta], lines: &LineIndex<'_>, problems: &mut Vec<Problem>) {
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, task) in tasks.iter().enumerate() {
        let Some((id, at)) = &task.id else { continue };
        match index.entry(id) {
            Entry::Occupied(first) => {
                let first_at = tasks[*first.get()].id.as_ref().map_or(0, |(_, at)| *at);
                problems.push(Problem::new(
                    *at,
                    format!(
                        "duplicate task id {id:?} (first used at {})",
                        lines.place(first_at)
                    ),
                ));
            }
            Entry::Vacant(slot) => {
                slot.insert(i);
            }
        }
    }

    for task in tasks {
        let own = task.id.as_ref().map(|(id, _)| id.as_str());
        for (dep, at) in &task.deps {
            if Some(dep.as_str()) == own {
                problems.push(Problem::new(
                    *at,
                    format!("{} depends on itself", task.label()),
                ));
            } else if !index.contains_key(dep.as_str()) {
                problems.push(Problem::new(
                    *at,
                    format!("{} depends on unknown task {dep:?}", task.label()),
                ));
            }
        }
    }

    let ids: Vec<Option<&str>> = tasks
        .iter()
        .map(|t| t.id.as_ref().map(|(id, _)| id.as_str()))
        .collect();
    let deps: Vec<Vec<&str>> = tasks
        .iter()
        .map(|t| t.deps.iter().map(|(dep, _)| dep.as_str()).collect())
        .collect();
    for cycle in ferry_jobspec::graph::cycles(&ids, &deps) {
        let names: Vec<String> = cycle
            .iter()
            .map(|&i| match &tasks[i].id {
                Some((id, _)) => id.clone(),
                None => format!("#{}", tasks[i].number),
            })
            .collect();
        problems.push(Problem::new(
            tasks[cycle[0]].offset,
            format!("dependency cycle: {}", names.join(" -> ")),
        ));
    }
}
