//! The docs name files and functions for students to read; this test keeps
//! them true. Every file path a doc writes in backticks
//! (`fabric-core/src/healing.rs`) or links to must exist in the
//! repository, and a function or type named beside a file in parentheses
//! (`fabric-core/src/healing.rs` (`FabricCore::heal`)) must appear in that
//! file.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace root")
}

/// README.md and every Markdown file under docs/.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut found = vec![root.join("README.md")];
    let mut dirs = vec![root.join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("docs/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Whether a backticked text is a repository path this test should check:
/// it has a directory part and a source file's extension, and no
/// placeholder, glob, URL or path outside the repository.
fn is_repo_path(text: &str) -> bool {
    const EXTENSIONS: &[&str] = &[".rs", ".md", ".proto", ".toml", ".yml", ".sh", ".py"];
    text.contains('/')
        && EXTENSIONS.iter().any(|e| text.ends_with(e))
        && !text.contains(['<', '>', '*', '{', ' ', '$'])
        && !text.starts_with(['/', '.', '~'])
        && !text.contains("://")
        && !text.starts_with("target/")
}

/// (path, the identifier named after it in parentheses, if any) for every
/// backticked path in `text`.
fn backticked_paths(text: &str) -> Vec<(String, Option<String>)> {
    let parts: Vec<&str> = text.split('`').collect();
    let mut found = Vec::new();
    // Odd indices are inside backticks.
    for i in (1..parts.len()).step_by(2) {
        let candidate = parts[i];
        if !is_repo_path(candidate) {
            continue;
        }
        let named = (parts.get(i + 1) == Some(&" (") && i + 2 < parts.len())
            .then(|| parts[i + 2].to_owned())
            .filter(|n| n.chars().all(|c| c.is_alphanumeric() || "_:.".contains(c)));
        found.push((candidate.to_owned(), named));
    }
    found
}

/// Relative link targets in `text`: `](target)` without a scheme.
fn links(text: &str) -> Vec<String> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .map(|t| t.split('#').next().unwrap_or("").to_owned())
        .filter(|t| !t.is_empty() && !t.contains("://") && !t.starts_with("mailto:"))
        .collect()
}

#[test]
fn every_file_and_function_a_doc_names_exists() {
    let root = root();
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in documents(&root) {
        let text = std::fs::read_to_string(&doc).expect("a readable doc");
        let shown = doc
            .strip_prefix(&root)
            .unwrap_or(&doc)
            .display()
            .to_string();
        for (path, named) in backticked_paths(&text) {
            checked += 1;
            // A path is written from the repository's root or from the
            // crate's (`src/scenarios/` in a table of crates).
            let file = root.join(&path);
            if !file.exists() {
                problems.push(format!("{shown}: `{path}` does not exist"));
                continue;
            }
            if let Some(name) = named {
                let word = name.rsplit("::").next().unwrap_or(&name);
                let word = word.rsplit('.').next().unwrap_or(word);
                let source = std::fs::read_to_string(&file).unwrap_or_default();
                if !source.contains(word) {
                    problems.push(format!("{shown}: `{path}` has no `{name}`"));
                }
            }
        }
        for target in links(&text) {
            checked += 1;
            let base = doc.parent().expect("a doc has a directory");
            if target.starts_with("../shared") || base.join(&target).exists() {
                continue;
            }
            problems.push(format!("{shown}: link ({target}) goes nowhere"));
        }
    }
    assert!(
        checked > 100,
        "only {checked} references found: the scan is broken"
    );
    assert!(
        problems.is_empty(),
        "{} stale references in the docs:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_scan_finds_what_it_should() {
    let text = "see `fabric-core/src/healing.rs` (`FabricCore::heal`), `a/<b>.rs`, \
                `--flag`, [x](../docs/a.md#part) and [y](https://example.org)";
    assert_eq!(
        backticked_paths(text),
        vec![(
            "fabric-core/src/healing.rs".to_owned(),
            Some("FabricCore::heal".to_owned())
        )]
    );
    assert_eq!(links(text), vec!["../docs/a.md".to_owned()]);
}
