//! Reading one Rust file for the import-cycle check: its tokens (comments, strings and
//! character literals left out), the module paths it names (`crate::`, `super::`, `self::`,
//! `$crate::`, in `use` trees and in code), the names its `use` items bring in, and the modules
//! it declares inline. Text scanning, not parsing: good enough for paths, which are plain tokens.

/// One token: an identifier (keywords included) or one punctuation character; `::` is one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
}

/// The file's tokens with their 1-based line numbers.
pub fn tokens(text: &str) -> Vec<(Tok, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let at = |j: usize| chars.get(j).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            // Block comments nest in Rust.
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(chars[i] == '\n');
                    i += 1;
                }
            }
        } else if let Some(len) = raw_string_start(&chars, i) {
            // r"…", r#"…"#, br#"…"#: no escapes, ends at a quote and as many hashes.
            let hashes = len - 1 - usize::from(c == 'b') - 1;
            i += len;
            while i < chars.len() {
                if chars[i] == '"' && (1..=hashes).all(|h| at(i + h) == '#') {
                    i += 1 + hashes;
                    break;
                }
                line += usize::from(chars[i] == '\n');
                i += 1;
            }
        } else if c == '"' || (c == 'b' && at(i + 1) == '"') {
            i += if c == 'b' { 2 } else { 1 };
            while i < chars.len() && chars[i] != '"' {
                line += usize::from(chars[i] == '\n');
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '\'' {
            // A character literal ('a', '\n', '\u{1F600}') or a lifetime ('a, 'static).
            if at(i + 1) == '\\' {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
            }
        } else if is_ident_char(c) {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let word = word.strip_prefix("r#").unwrap_or(&word).to_owned();
            out.push((Tok::Ident(word), line));
        } else if c == ':' && at(i + 1) == ':' {
            out.push((Tok::PathSep, line));
            i += 2;
        } else {
            out.push((Tok::Punct(c), line));
            i += 1;
        }
    }
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The length of a raw (byte) string's opening (`r"`, `r##"`, `br#"`) at `i`, if one starts there.
fn raw_string_start(chars: &[char], i: usize) -> Option<usize> {
    if i > 0 && is_ident_char(chars[i - 1]) {
        return None;
    }
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    while chars.get(j) == Some(&'#') {
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some(j + 1 - i)
}

/// A path one module names, relative to where it is written: the segments as written
/// (`super`, `self`, `crate` included), inside the (inline) module `module`.
#[derive(Debug, Clone)]
pub struct PathRef {
    /// The module the path is written in, relative to the file's module (inline `mod`s).
    pub module: Vec<String>,
    pub segments: Vec<String>,
    pub line: usize,
}

/// What one file says about modules.
#[derive(Debug, Default)]
pub struct FileScan {
    /// Every `crate::`/`super::`/`self::` path, and every `use` path (bare ones too).
    pub paths: Vec<PathRef>,
    /// `use` items' names: (module, the name brought in, its path as written).
    pub uses: Vec<(Vec<String>, String, Vec<String>)>,
    /// Modules declared (`mod x;`, `mod x { … }`), relative to the file's module.
    pub declared_mods: Vec<Vec<String>>,
    /// Modules declared `#[cfg(test)] mod x;`, relative to the file's module: their files are
    /// test code and not checked.
    pub test_mods: Vec<Vec<String>>,
}

/// Scans a file's tokens. Items under `#[cfg(test)]` (a `use`, a `mod { … }`, a function) are
/// left out: test code may reach anywhere.
pub fn scan(text: &str) -> FileScan {
    let toks = tokens(text);
    let ident = |j: usize| match toks.get(j) {
        Some((Tok::Ident(w), _)) => Some(w.as_str()),
        _ => None,
    };
    let punct = |j: usize, c: char| matches!(toks.get(j), Some((Tok::Punct(p), _)) if *p == c);
    let sep = |j: usize| matches!(toks.get(j), Some((Tok::PathSep, _)));
    let mut out = FileScan::default();
    // The inline modules open around the current token: (name, the depth inside its braces).
    let mut mods: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    // Inside an item under `#[cfg(test)]`: the depth it started at, and whether it has opened
    // its braces.
    let mut test_item: Option<(usize, bool)> = None;
    let mut i = 0;
    while i < toks.len() {
        let here: Vec<String> = mods.iter().map(|(m, _)| m.clone()).collect();
        let line = toks[i].1;
        if punct(i, '#')
            && punct(i + 1, '[')
            && ident(i + 2) == Some("cfg")
            && punct(i + 3, '(')
            && ident(i + 4) == Some("test")
            && punct(i + 5, ')')
            && punct(i + 6, ']')
        {
            if test_item.is_none() {
                test_item = Some((depth, false));
            }
            i += 7;
            continue;
        }
        let in_test = test_item.is_some();
        match &toks[i].0 {
            Tok::Punct('{') => {
                if let Some((d, opened)) = test_item.as_mut() {
                    if *d == depth {
                        *opened = true;
                    }
                }
                depth += 1;
            }
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if mods.last().is_some_and(|(_, d)| *d == depth + 1) {
                    mods.pop();
                }
                if test_item.is_some_and(|(d, opened)| d == depth && opened) {
                    test_item = None;
                }
            }
            Tok::Punct(';') if test_item.is_some_and(|(d, opened)| d == depth && !opened) => {
                test_item = None;
            }
            Tok::Ident(w) if w == "mod" && !sep(i.wrapping_sub(1)) => {
                if let Some(name) = ident(i + 1) {
                    let mut path = here.clone();
                    path.push(name.to_owned());
                    if in_test {
                        out.test_mods.push(path);
                    } else {
                        if punct(i + 2, '{') {
                            mods.push((name.to_owned(), depth + 1));
                        }
                        out.declared_mods.push(path);
                    }
                }
            }
            Tok::Ident(w) if w == "use" && !sep(i.wrapping_sub(1)) => {
                let end = (i..toks.len())
                    .find(|&j| punct(j, ';'))
                    .unwrap_or(toks.len());
                if !in_test {
                    let mut trees = Vec::new();
                    let mut j = i + 1;
                    use_tree(&toks[..end], &mut j, Vec::new(), &mut trees);
                    for (segments, name) in trees {
                        if let Some(name) = name {
                            out.uses.push((here.clone(), name, segments.clone()));
                        }
                        out.paths.push(PathRef {
                            module: here.clone(),
                            segments,
                            line,
                        });
                    }
                }
                i = end;
                continue;
            }
            Tok::Ident(w)
                if matches!(w.as_str(), "crate" | "super" | "self") && !sep(i.wrapping_sub(1)) =>
            {
                let mut segments = vec![w.clone()];
                let mut j = i + 1;
                while sep(j) {
                    match ident(j + 1) {
                        Some(next) => segments.push(next.to_owned()),
                        None => break,
                    }
                    j += 2;
                }
                if !in_test && segments.len() > 1 {
                    out.paths.push(PathRef {
                        module: here.clone(),
                        segments,
                        line,
                    });
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Reads one `use` tree at `*j` under `prefix`, pushing each path it names with the name it
/// brings in (none for a glob).
fn use_tree(
    toks: &[(Tok, usize)],
    j: &mut usize,
    mut prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, Option<String>)>,
) {
    if matches!(toks.get(*j), Some((Tok::PathSep, _))) {
        *j += 1;
    }
    loop {
        match toks.get(*j).map(|t| &t.0) {
            Some(Tok::Ident(w)) if w == "self" && !prefix.is_empty() => {
                *j += 1;
            }
            Some(Tok::Ident(w)) if w != "as" => {
                prefix.push(w.clone());
                *j += 1;
            }
            Some(Tok::Punct('{')) => {
                *j += 1;
                while *j < toks.len() && !matches!(toks[*j].0, Tok::Punct('}')) {
                    use_tree(toks, j, prefix.clone(), out);
                    if matches!(toks.get(*j), Some((Tok::Punct(','), _))) {
                        *j += 1;
                    }
                }
                *j += 1;
                return;
            }
            Some(Tok::Punct('*')) => {
                *j += 1;
                out.push((prefix, None));
                return;
            }
            _ => break,
        }
        if matches!(toks.get(*j), Some((Tok::PathSep, _))) {
            *j += 1;
        } else {
            break;
        }
    }
    let mut name = prefix.last().cloned();
    if matches!(toks.get(*j), Some((Tok::Ident(w), _)) if w == "as") {
        name = match toks.get(*j + 1) {
            Some((Tok::Ident(alias), _)) if alias != "_" => Some(alias.clone()),
            _ => None,
        };
        *j += 2;
    }
    // Skip anything else up to the tree's end (a `,` or `}` of the enclosing list).
    while *j < toks.len() && !matches!(toks[*j].0, Tok::Punct(',') | Tok::Punct('}')) {
        *j += 1;
    }
    if !prefix.is_empty() {
        out.push((prefix, name));
    }
}
