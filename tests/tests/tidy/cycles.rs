//! Import cycles between sibling modules: for each directory of modules (each module's
//! children), the edges "module a refers to sibling b" from the paths the files name, then the
//! cycles among them (strongly connected components of more than one module).
//!
//! A file's module comes from where it lies: a crate's root is `src/lib.rs`/`src/main.rs`,
//! `src/bin/x.rs`, or each file directly in `tests/`, `benches/`, `examples/` (whose modules lie
//! in `tests/x/`, as the `#[path]` attributes of this workspace place them). A module's files
//! include its submodules': `jobs/claim.rs` naming `super::super::outputs` is an edge jobs →
//! outputs. A path that goes through a name the parent imports (`super::X` where the parent
//! says `use self::jobs::X`) counts as naming the module it comes from; a glob re-export does
//! not. Test code is left out: files named `tests.rs` or `*_tests.rs`, modules declared
//! `#[cfg(test)] mod x;`, and any item under `#[cfg(test)]`.

use std::collections::{BTreeMap, BTreeSet};

use super::scan::{scan, FileScan};

/// A module's path inside its crate, `[]` for the crate root.
type ModPath = Vec<String>;

/// One cycle: the directory of modules, the modules in order (the first repeated at the end
/// when printed), and where each edge of the cycle's component is written.
#[derive(Debug)]
pub struct Cycle {
    pub dir: String,
    pub modules: Vec<String>,
    pub edges: Vec<String>,
}

impl std::fmt::Display for Cycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut order = self.modules.clone();
        order.push(self.modules[0].clone());
        writeln!(f, "{}: {}", self.dir, order.join(" → "))?;
        for edge in &self.edges {
            writeln!(f, "    {edge}")?;
        }
        Ok(())
    }
}

/// Where a file lies in its crate: the crate's root directory and the file's module path, or
/// `None` for a file outside any module tree (`build.rs`) or test code by its name.
fn locate(path: &str) -> Option<(String, ModPath)> {
    let parts: Vec<&str> = path.split('/').collect();
    let file = *parts.last()?;
    let stem = file.strip_suffix(".rs")?;
    if stem == "tests" || stem.ends_with("_tests") {
        return None;
    }
    let pos = parts
        .iter()
        .rposition(|p| matches!(*p, "src" | "tests" | "benches" | "examples"))?;
    let mut root = parts[..=pos].join("/");
    let mut rest: Vec<&str> = parts[pos + 1..].to_vec();
    let per_file_roots = parts[pos] != "src" || rest.first() == Some(&"bin");
    if parts[pos] == "src" && rest.first() == Some(&"bin") {
        root.push_str("/bin");
        rest.remove(0);
    }
    if per_file_roots {
        // Each file directly here is a crate of its own; `x/…` holds the modules of `x.rs`.
        let crate_name = rest.first()?.trim_end_matches(".rs").to_owned();
        root = format!("{root}/{crate_name}");
        rest.remove(0);
    } else if rest.len() == 1 && matches!(stem, "lib" | "main") {
        rest.clear();
    }
    let mut module: ModPath = rest
        .iter()
        .map(|p| p.trim_end_matches(".rs").to_owned())
        .collect();
    if module.last().is_some_and(|m| m == "mod") {
        module.pop();
    }
    Some((root, module))
}

/// Joins `relative` (as written inside `module`) into a path from the crate's root; `None` for a
/// path into another crate.
fn absolute(
    module: &[String],
    relative: &[String],
    modules: &BTreeSet<ModPath>,
) -> Option<ModPath> {
    let first = relative.first()?;
    let (mut path, rest) = match first.as_str() {
        "crate" => (Vec::new(), &relative[1..]),
        "self" | "super" => {
            let mut path = module.to_vec();
            let mut k = 0;
            while let Some(s) = relative.get(k).filter(|s| *s == "self" || *s == "super") {
                if s == "super" {
                    path.pop()?;
                }
                k += 1;
            }
            (path, &relative[k..])
        }
        // A bare path in a `use` names a child module in scope, or another crate.
        _ => {
            let mut child = module.to_vec();
            child.push(first.clone());
            if !modules.contains(&child) {
                return None;
            }
            (module.to_vec(), relative)
        }
    };
    path.extend(rest.iter().cloned());
    Some(path)
}

/// Follows names imported by a module (`super::X` where the parent imports `X` from a child)
/// to the module they come from.
fn resolve(
    mut path: ModPath,
    modules: &BTreeSet<ModPath>,
    imports: &BTreeMap<(ModPath, String), ModPath>,
) -> ModPath {
    for _ in 0..8 {
        let Some(k) = (1..=path.len()).find(|&k| !modules.contains(&path[..k])) else {
            return path;
        };
        let Some(target) = imports.get(&(path[..k - 1].to_vec(), path[k - 1].clone())) else {
            return path;
        };
        let mut next = target.clone();
        next.extend(path[k..].iter().cloned());
        if next == path {
            return path;
        }
        path = next;
    }
    path
}

/// The import cycles between sibling modules among `files` (path relative to the workspace,
/// text).
pub fn find(files: &[(String, String)]) -> Vec<Cycle> {
    // Per crate root: its modules, imports, and each file's scan.
    type Crate = (BTreeSet<ModPath>, Vec<(String, ModPath, FileScan)>);
    let mut crates: BTreeMap<String, Crate> = BTreeMap::new();
    for (path, text) in files {
        let Some((root, module)) = locate(path) else {
            continue;
        };
        let scanned = scan(text);
        let (modules, scans) = crates.entry(root).or_default();
        for k in 0..=module.len() {
            modules.insert(module[..k].to_vec());
        }
        for inline in &scanned.declared_mods {
            modules.insert([module.clone(), inline.clone()].concat());
        }
        scans.push((path.clone(), module, scanned));
    }
    let mut cycles = Vec::new();
    for (root, (modules, scans)) in &crates {
        let test_mods: BTreeSet<ModPath> = scans
            .iter()
            .flat_map(|(_, m, s)| {
                s.test_mods
                    .iter()
                    .map(move |t| [m.clone(), t.clone()].concat())
            })
            .collect();
        let is_test = |m: &ModPath| (1..=m.len()).any(|k| test_mods.contains(&m[..k]));
        let mut imports = BTreeMap::new();
        for (_, module, scanned) in scans {
            for (inner, name, target) in &scanned.uses {
                let here = [module.clone(), inner.clone()].concat();
                if let Some(target) = absolute(&here, target, modules) {
                    imports.insert((here, name.clone()), target);
                }
            }
        }
        // (parent, a, b) → where a refers to b.
        let mut edges: BTreeMap<(ModPath, String, String), Vec<String>> = BTreeMap::new();
        for (file, module, scanned) in scans {
            if is_test(module) {
                continue;
            }
            for r in &scanned.paths {
                let from = [module.clone(), r.module.clone()].concat();
                let Some(to) = absolute(&from, &r.segments, modules) else {
                    continue;
                };
                let to = resolve(to, modules, &imports);
                let k = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
                if k < from.len() && k < to.len() && modules.contains(&to[..=k]) {
                    let key = (from[..k].to_vec(), from[k].clone(), to[k].clone());
                    let at = format!("{file}:{}", r.line);
                    let places = edges.entry(key).or_default();
                    if !places.contains(&at) {
                        places.push(at);
                    }
                }
            }
        }
        let mut by_parent: BTreeMap<&ModPath, Vec<(&String, &String)>> = BTreeMap::new();
        for (parent, a, b) in edges.keys() {
            by_parent.entry(parent).or_default().push((a, b));
        }
        for (parent, pairs) in by_parent {
            for component in components(&pairs) {
                let modules = cycle_through(&component, &pairs);
                let edges = edges
                    .iter()
                    .filter(|((p, a, b), _)| {
                        p == parent && component.contains(a) && component.contains(b)
                    })
                    .map(|((_, a, b), at)| format!("{a} → {b}: {}", at.join(", ")))
                    .collect();
                let dir = std::iter::once(root.as_str())
                    .chain(parent.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join("/");
                cycles.push(Cycle {
                    dir,
                    modules,
                    edges,
                });
            }
        }
    }
    cycles
}

/// The strongly connected components of more than one node: the modules that reach each other.
fn components(pairs: &[(&String, &String)]) -> Vec<BTreeSet<String>> {
    let nodes: BTreeSet<&String> = pairs.iter().flat_map(|(a, b)| [*a, *b]).collect();
    let mut next: BTreeMap<&String, Vec<&String>> = BTreeMap::new();
    for (a, b) in pairs {
        next.entry(*a).or_default().push(*b);
    }
    let next = |n: &String| next.get(n).cloned().unwrap_or_default();
    let mut reach: BTreeMap<&String, BTreeSet<&String>> = BTreeMap::new();
    for &n in &nodes {
        // Who n reaches: a walk from n (the graphs are a few dozen modules).
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&String> = next(n);
        while let Some(m) = todo.pop() {
            if seen.insert(m) {
                todo.extend(next(m));
            }
        }
        reach.insert(n, seen);
    }
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for &n in &nodes {
        if out.iter().any(|c| c.contains(n)) || !reach[n].contains(n) {
            continue;
        }
        let component = nodes
            .iter()
            .filter(|m| reach[n].contains(*m) && reach[*m].contains(n))
            .map(|m| (*m).clone())
            .collect();
        out.push(component);
    }
    out
}

/// One cycle inside `component`, from its first module back to it (a shortest one).
fn cycle_through(component: &BTreeSet<String>, pairs: &[(&String, &String)]) -> Vec<String> {
    let start = component.iter().next().expect("a component is not empty");
    let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for (a, b) in pairs {
            if *a != n || !component.contains(*b) {
                continue;
            }
            if *b == start {
                let mut path = vec![n.clone()];
                let mut at = n;
                while at != start {
                    at = came_from[at];
                    path.push(at.clone());
                }
                path.reverse();
                return path;
            }
            if !came_from.contains_key(b) {
                came_from.insert(b, n);
                queue.push_back(b);
            }
        }
    }
    vec![start.clone()]
}
