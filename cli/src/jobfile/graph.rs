//! Checks of the task graph: duplicate ids, unknown or self dependencies, and cycles.

use std::collections::{hash_map::Entry, HashMap, VecDeque};

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

    let mut edges = vec![Vec::new(); tasks.len()];
    for (i, task) in tasks.iter().enumerate() {
        let own = task.id.as_ref().map(|(id, _)| id.as_str());
        for (dep, at) in &task.deps {
            if Some(dep.as_str()) == own {
                problems.push(Problem::new(
                    *at,
                    format!("{} depends on itself", task.label()),
                ));
            } else if let Some(&j) = index.get(dep.as_str()) {
                edges[i].push(j);
            } else {
                problems.push(Problem::new(
                    *at,
                    format!("{} depends on unknown task {dep:?}", task.label()),
                ));
            }
        }
    }

    for component in strongly_connected(&edges) {
        if component.len() < 2 {
            continue;
        }
        let start = component[0];
        let cycle = cycle_through(start, &component, &edges);
        let names: Vec<String> = cycle
            .iter()
            .map(|&i| match &tasks[i].id {
                Some((id, _)) => id.clone(),
                None => format!("#{}", tasks[i].number),
            })
            .collect();
        problems.push(Problem::new(
            tasks[start].offset,
            format!("dependency cycle: {}", names.join(" -> ")),
        ));
    }
}

/// Tarjan's algorithm, iterative (a chain of many thousand tasks must not exhaust the
/// stack); each component sorted, components ordered by their first node.
fn strongly_connected(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut next = 0;
    let mut index: Vec<Option<usize>> = vec![None; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    // The depth-first path: each node with how many of its edges have been followed.
    let mut path: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if index[root].is_some() {
            continue;
        }
        index[root] = Some(next);
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        path.push((root, 0));
        while let Some(&mut (v, ref mut followed)) = path.last_mut() {
            if let Some(&w) = edges[v].get(*followed) {
                *followed += 1;
                match index[w] {
                    None => {
                        index[w] = Some(next);
                        low[w] = next;
                        next += 1;
                        stack.push(w);
                        on_stack[w] = true;
                        path.push((w, 0));
                    }
                    Some(iw) if on_stack[w] => low[v] = low[v].min(iw),
                    Some(_) => {}
                }
                continue;
            }
            path.pop();
            if let Some(&(parent, _)) = path.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if Some(low[v]) == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                component.sort_unstable();
                out.push(component);
            }
        }
    }
    out.sort_by_key(|c| c[0]);
    out
}

/// The shortest path from `start` back to itself inside `component`, both ends included.
fn cycle_through(start: usize, component: &[usize], edges: &[Vec<usize>]) -> Vec<usize> {
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in &edges[v] {
            if w == start {
                let mut path = vec![v];
                while let Some(&p) = parent.get(path.last().unwrap_or(&start)) {
                    path.push(p);
                }
                path.reverse();
                path.push(start);
                return path;
            }
            if component.binary_search(&w).is_ok() && w != start && !parent.contains_key(&w) {
                parent.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    vec![start, start]
}
