//! The task graph's cycles, found once for the CLI (which names each with its place in the
//! file) and the controller (which names the first). Iterative throughout: a chain of many
//! thousand tasks must not exhaust a runtime worker's stack.

use std::collections::{HashMap, VecDeque};

/// The dependency cycles among a job's tasks, given in job order as their ids (`None` for a
/// task without a valid one, which nothing can depend on) and the ids each depends on.
///
/// One cycle per group of tasks that depend on each other (a strongly connected component of
/// two or more), groups in the order of their first task: the shortest path from that first
/// task back to itself, as task indices, both ends included. A dependency on the task itself
/// or on an unknown id is left out (each is a problem of its own); a duplicated id stands for
/// its first task.
pub fn cycles(ids: &[Option<&str>], depends_on: &[Vec<&str>]) -> Vec<Vec<usize>> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        if let Some(id) = id {
            index.entry(id).or_insert(i);
        }
    }
    let edges: Vec<Vec<usize>> = (0..ids.len())
        .map(|i| {
            let deps = depends_on.get(i).map_or(&[][..], Vec::as_slice);
            deps.iter()
                .filter(|dep| ids[i] != Some(**dep))
                .filter_map(|dep| index.get(dep).copied())
                .collect()
        })
        .collect();
    strongly_connected(&edges)
        .into_iter()
        .filter(|component| component.len() > 1)
        .map(|component| cycle_through(component[0], &component, &edges))
        .collect()
}

/// Tarjan's algorithm, iterative; each component sorted, components ordered by their first
/// node.
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

#[cfg(test)]
mod tests {
    use super::cycles;

    fn run(tasks: &[(&str, &[&str])]) -> Vec<Vec<usize>> {
        let ids: Vec<Option<&str>> = tasks.iter().map(|(id, _)| Some(*id)).collect();
        let deps: Vec<Vec<&str>> = tasks.iter().map(|(_, d)| d.to_vec()).collect();
        cycles(&ids, &deps)
    }

    #[test]
    fn a_dag_has_no_cycles_and_self_or_unknown_dependencies_are_left_out() {
        assert!(run(&[("a", &[]), ("b", &["a", "b", "zz"]), ("c", &["a", "b"])]).is_empty());
    }

    #[test]
    fn one_shortest_cycle_per_group_from_its_first_task() {
        assert_eq!(
            run(&[
                ("a", &["c"]),
                ("b", &["a"]),
                ("c", &["b", "a"]),
                ("d", &["e"]),
                ("e", &["d"]),
            ]),
            vec![vec![0, 2, 0], vec![3, 4, 3]]
        );
    }

    #[test]
    fn a_duplicated_id_stands_for_its_first_task_and_a_missing_one_for_nothing() {
        let ids = [Some("a"), Some("b"), Some("a"), None];
        let deps = vec![vec!["b"], vec!["a"], vec!["b"], vec!["a"]];
        assert_eq!(cycles(&ids, &deps), vec![vec![0, 1, 0]]);
    }

    #[test]
    fn a_cycle_through_a_long_chain_is_found_without_recursion() {
        let n = 100_000;
        let found = std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || {
                let names: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
                let ids: Vec<Option<&str>> = names.iter().map(|s| Some(s.as_str())).collect();
                let deps: Vec<Vec<&str>> = (0..n)
                    .map(|i| vec![names[(i + n - 1) % n].as_str()])
                    .collect();
                cycles(&ids, &deps)
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].len(), n + 1);
        assert_eq!(found[0][..3], [0, n - 1, n - 2]);
    }
}
