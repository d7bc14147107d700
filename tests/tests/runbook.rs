//! `docs/runbook.md` against what it refers to: every alert (the scorer's own, and those
//! of the Prometheus rule files in `monitoring/prometheus/rules/`) links to a section that
//! exists, every alert section has the same parts, every `outrider-scorer` and
//! `outrider-model` command line names real subcommands and flags (their `--help`), every
//! PromQL query parses (`promtool check rules`), and every `curl` reaches a route that
//! exists (the scorer's in `docs/openapi.yaml`). Failures name the runbook's line.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use outrider_harness::paths;
use serde_json::Value;

const RUNBOOK: &str = "docs/runbook.md";

fn runbook() -> String {
    std::fs::read_to_string(paths::repo_root().join(RUNBOOK)).unwrap()
}

/// `## Heading` → its anchor as GitHub makes it: lower case, punctuation other than `-`
/// and `_` removed, spaces as `-`; a repeated anchor gets `-1`, `-2`, ...
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let text = line.trim_start_matches('#');
        if !text.starts_with(' ') {
            continue;
        }
        let slug: String = text
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    }
    out
}

/// The scorer's own alerts (`alerts::NAMES`).
fn scorer_alerts() -> Vec<String> {
    let names = outrider_harness::alertmanager::scorer_alert_names();
    assert!(names.len() >= 13, "alerts::NAMES read as {names:?}");
    names
}

#[test]
fn anchors_follow_github() {
    let a = anchors(
        "# A title\n## OutriderNoLeader\n### Data pipeline broken (all features null)\n```sh\n# not a heading\n```\n## Twice\n## Twice\n",
    );
    let want: BTreeSet<String> = [
        "a-title",
        "outridernoleader",
        "data-pipeline-broken-all-features-null",
        "twice",
        "twice-1",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(a, want);
}

#[test]
fn every_scorer_alert_links_to_its_section() {
    let anchors = anchors(&runbook());
    for name in scorer_alerts() {
        // The scorer links to `<runbook>#<name in lower case>` (alerts.rs).
        let anchor = name.to_ascii_lowercase();
        assert!(
            anchors.contains(&anchor),
            "{RUNBOOK} has no section for the scorer's alert {name} (anchor #{anchor})"
        );
    }
}

#[test]
fn every_prometheus_alert_links_to_its_section() {
    let dir = paths::repo_root().join("monitoring/prometheus/rules");
    if !dir.is_dir() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{} is missing (CI=true: nothing skips)",
            dir.display()
        );
        eprintln!(
            "SKIPPED: {} is missing; its alerts' runbook links are not checked",
            dir.display()
        );
        return;
    }
    let anchors = anchors(&runbook());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut alerts = 0;
    let mut failures = Vec::new();
    for file in &files {
        let doc: Value = serde_saphyr::from_str(&std::fs::read_to_string(file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let groups = doc["groups"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no `groups` list", file.display()));
        for group in groups {
            for rule in group["rules"].as_array().into_iter().flatten() {
                let Some(name) = rule["alert"].as_str() else {
                    continue;
                };
                alerts += 1;
                let where_ = format!("{}: alert {name}", file.display());
                let Some(url) = rule["annotations"]["runbook_url"].as_str() else {
                    failures.push(format!("{where_}: no annotations.runbook_url"));
                    continue;
                };
                let Some((page, anchor)) = url.split_once('#') else {
                    failures.push(format!("{where_}: runbook_url {url} has no #anchor"));
                    continue;
                };
                if !page.ends_with("runbook.md") {
                    failures.push(format!("{where_}: runbook_url {url} is not the runbook"));
                }
                if !anchors.contains(anchor) {
                    failures.push(format!("{where_}: {RUNBOOK} has no section #{anchor}"));
                }
            }
        }
    }
    assert!(
        alerts > 0,
        "no alerting rule in {} ({} files)",
        dir.display(),
        files.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!(
        "{alerts} alerts in {} rule files link to their sections",
        files.len()
    );
}

/// Every `## Outrider...` section says the same things in the same order.
#[test]
fn every_alert_section_has_the_same_parts() {
    const PARTS: [&str; 6] = [
        "**Means**",
        "**Impact**",
        "**Confirm**",
        "**Already done**",
        "**Now**",
        "**Escalate**",
    ];
    let text = runbook();
    let mut sections: Vec<(usize, &str, String)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if let Some(name) = line.strip_prefix("## ") {
            sections.push((n + 1, name, String::new()));
        } else if line.starts_with("## ") || line.starts_with("# ") {
            continue;
        } else if let Some(last) = sections.last_mut() {
            last.2.push_str(line);
            last.2.push('\n');
        }
    }
    let mut failures = Vec::new();
    let mut checked = 0;
    for (line, name, body) in &sections {
        if !name.starts_with("Outrider") {
            continue;
        }
        checked += 1;
        let mut from = 0;
        for part in PARTS {
            match body[from..].find(part) {
                Some(at) => from += at + part.len(),
                None => {
                    failures.push(format!(
                        "{RUNBOOK}:{line}: section {name} lacks {part} (or has it out of order)"
                    ));
                    break;
                }
            }
        }
    }
    assert!(checked >= scorer_alerts().len(), "{checked} alert sections");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A fenced block: its language and its lines with their line numbers.
struct Block {
    lang: String,
    lines: Vec<(usize, String)>,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (n, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("```") {
            match open.take() {
                Some(block) => out.push(block),
                None => {
                    open = Some(Block {
                        lang: rest.trim().to_owned(),
                        lines: Vec::new(),
                    })
                }
            }
        } else if let Some(block) = open.as_mut() {
            block.lines.push((n + 1, trimmed.to_owned()));
        }
    }
    assert!(open.is_none(), "an unclosed code block");
    out
}

/// Shell lines of `sh` blocks with `\` continuations joined, each with the line it
/// starts on.
fn shell_lines(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for block in blocks(markdown)
        .into_iter()
        .filter(|b| b.lang == "sh" || b.lang == "bash")
    {
        let mut pending: Option<(usize, String)> = None;
        for (n, line) in block.lines {
            let (start, mut joined) = pending.take().unwrap_or((n, String::new()));
            match line.strip_suffix('\\') {
                Some(head) => {
                    joined.push_str(head);
                    joined.push(' ');
                    pending = Some((start, joined));
                }
                None => {
                    joined.push_str(&line);
                    out.push((start, joined));
                }
            }
        }
        assert!(pending.is_none(), "a block ends with `\\`");
    }
    out
}

/// Splits a shell line into simple commands (at `|`, `;`, `&&`, `||`, `&`), each a list
/// of words with their quotes removed; a `#` comment ends the line and redirections are
/// dropped.
fn commands(line: &str) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new()];
    let mut word: Option<String> = None;
    let mut chars = line.chars().peekable();
    let mut redirect = false;
    let end_word = |word: &mut Option<String>, out: &mut Vec<Vec<String>>, redirect: &mut bool| {
        if let Some(w) = word.take() {
            if *redirect {
                *redirect = false;
            } else {
                out.last_mut().unwrap().push(w);
            }
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    w.push(c);
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => w.extend(chars.next()),
                        c => w.push(c),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            '#' if word.is_none() => break,
            ' ' | '\t' => end_word(&mut word, &mut out, &mut redirect),
            '|' | ';' | '&' => {
                end_word(&mut word, &mut out, &mut redirect);
                if chars.peek() == Some(&c) {
                    chars.next();
                }
                out.push(Vec::new());
            }
            '>' | '<' => {
                end_word(&mut word, &mut out, &mut redirect);
                if chars.peek() == Some(&c) {
                    chars.next();
                }
                redirect = true;
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    end_word(&mut word, &mut out, &mut redirect);
    out.retain(|c| !c.is_empty());
    out
}

#[test]
fn commands_split_like_the_shell() {
    assert_eq!(
        commands(r#"a --x "b c" | jq '.e[] | {k}' > /tmp/f && d 'e' # note"#),
        vec![
            vec!["a", "--x", "b c"],
            vec!["jq", ".e[] | {k}"],
            vec!["d", "e"]
        ]
    );
}

/// The `--help` of a command line's (sub)commands, cached.
struct Helps {
    binaries: HashMap<&'static str, PathBuf>,
    cache: HashMap<Vec<String>, Result<String, String>>,
}

impl Helps {
    fn help(&mut self, words: &[String]) -> Result<String, String> {
        if let Some(h) = self.cache.get(words) {
            return h.clone();
        }
        let out = Command::new(&self.binaries[words[0].as_str()])
            .args(&words[1..])
            .arg("--help")
            .output()
            .unwrap();
        let shown = format!("{} --help", words.join(" "));
        let result = if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "`{shown}` exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        };
        self.cache.insert(words.to_vec(), result.clone());
        result
    }
}

/// The subcommands a help text lists under `Commands:`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Whether the help text lists `flag`, and whether it takes a value.
fn flag_in(help: &str, flag: &str) -> Option<bool> {
    let mut found = None;
    for (at, _) in help.match_indices(flag) {
        let before = help[..at].chars().next_back();
        let after = help[at + flag.len()..].chars().next();
        let starts = before.is_none_or(|c| c == ' ' || c == '\n');
        let ends = after.is_none_or(|c| matches!(c, ' ' | ',' | '\n' | '='));
        if starts && ends {
            let takes_value = help[at + flag.len()..].starts_with(" <");
            found = Some(found.unwrap_or(false) || takes_value);
        }
    }
    found
}

/// Checks one `outrider-*` command against the binaries' help; the problems found.
fn check_cli(helps: &mut Helps, words: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut path = vec![words[0].clone()];
    let mut help = match helps.help(&path) {
        Ok(h) => h,
        Err(e) => return vec![e],
    };
    let mut positional = false;
    let mut i = 1;
    while i < words.len() {
        let w = &words[i];
        if w.starts_with('-') && w.len() > 1 {
            let flag = w.split('=').next().unwrap();
            match flag_in(&help, flag) {
                None => problems.push(format!("`{flag}` is not in `{} --help`", path.join(" "))),
                Some(true) if !w.contains('=') => i += 1,
                Some(_) => {}
            }
        } else if !positional && subcommands(&help).contains(w) {
            path.push(w.clone());
            help = match helps.help(&path) {
                Ok(h) => h,
                Err(e) => return vec![e],
            };
        } else {
            if !positional && !subcommands(&help).is_empty() {
                problems.push(format!("`{w}` is not a subcommand of `{}`", path.join(" ")));
            }
            positional = true;
        }
        i += 1;
    }
    problems
}

/// What a URL in the runbook reaches: (service, path, query).
fn url_target(word: &str) -> Option<(&'static str, String)> {
    for (var, service) in [
        ("$OUTRIDER_SERVER", "scorer"),
        ("$ENVOY_ADMIN", "envoy"),
        ("$PROMETHEUS", "prometheus"),
    ] {
        if let Some(rest) = word.strip_prefix(var) {
            let path = rest.split('?').next().unwrap().to_owned();
            return Some((service, path));
        }
    }
    None
}

/// The scorer's routes: (path template split into segments, methods).
fn openapi_routes() -> Vec<(Vec<String>, Vec<String>)> {
    let doc: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(paths::repo_root().join("docs/openapi.yaml")).unwrap(),
    )
    .unwrap();
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let segments = path.split('/').map(str::to_owned).collect();
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "post", "put", "delete", "patch"].contains(&k.as_str()))
                .cloned()
                .collect();
            (segments, methods)
        })
        .collect()
}

fn check_curl(routes: &[(Vec<String>, Vec<String>)], words: &[String]) -> Vec<String> {
    const ENVOY_ADMIN: [&str; 8] = [
        "/stats",
        "/stats/prometheus",
        "/clusters",
        "/config_dump",
        "/ready",
        "/server_info",
        "/listeners",
        "/runtime",
    ];
    const PROMETHEUS: [&str; 4] = [
        "/api/v1/query",
        "/api/v1/query_range",
        "/api/v1/alerts",
        "/api/v1/rules",
    ];
    let targets: Vec<(&str, String)> = words.iter().filter_map(|w| url_target(w)).collect();
    let [(service, path)] = targets.as_slice() else {
        return vec![format!(
            "curl must reach one URL under $OUTRIDER_SERVER, $ENVOY_ADMIN or $PROMETHEUS, found {}",
            targets.len()
        )];
    };
    let ok = match *service {
        "envoy" => ENVOY_ADMIN.contains(&path.as_str()),
        "prometheus" => PROMETHEUS.contains(&path.as_str()),
        _ => {
            let explicit = words
                .iter()
                .position(|w| w == "-X")
                .map(|i| words[i + 1].to_lowercase());
            let has_body = words.iter().any(|w| w == "-d" || w.starts_with("--data"));
            let method = explicit.unwrap_or_else(|| if has_body { "post" } else { "get" }.into());
            let segments: Vec<&str> = path.split('/').collect();
            let found = routes.iter().find(|(template, _)| {
                template.len() == segments.len()
                    && template
                        .iter()
                        .zip(&segments)
                        .all(|(t, s)| t == s || (t.starts_with('{') && !s.is_empty()))
            });
            match found {
                Some((_, methods)) if methods.contains(&method) => true,
                Some(_) => {
                    return vec![format!(
                        "{} {path} is not in docs/openapi.yaml",
                        method.to_uppercase()
                    )];
                }
                None => false,
            }
        }
    };
    if ok {
        Vec::new()
    } else {
        vec![format!("{path} is not a route of {service}")]
    }
}

#[test]
fn every_command_and_route_in_the_runbook_exists() {
    let mut helps = Helps {
        binaries: HashMap::from([
            (
                "outrider-scorer",
                paths::workspace_binary("outrider-scorer").unwrap(),
            ),
            (
                "outrider-model",
                paths::workspace_binary("outrider-model").unwrap(),
            ),
        ]),
        cache: HashMap::new(),
    };
    let routes = openapi_routes();
    let mut failures = Vec::new();
    let (mut cli, mut curls) = (0, 0);
    for (line, text) in shell_lines(&runbook()) {
        for words in commands(&text) {
            let name = Path::new(&words[0])
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let problems = match name.as_str() {
                "outrider-scorer" | "outrider-model" => {
                    cli += 1;
                    let mut words = words.clone();
                    words[0] = name;
                    check_cli(&mut helps, &words)
                }
                "curl" => {
                    curls += 1;
                    check_curl(&routes, &words)
                }
                _ => Vec::new(),
            };
            failures.extend(
                problems
                    .into_iter()
                    .map(|p| format!("{RUNBOOK}:{line}: {p}\n    {text}")),
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        cli >= 20 && curls >= 20,
        "{cli} CLI commands, {curls} curls"
    );
    eprintln!("{cli} outrider commands and {curls} curl calls checked");
}

#[test]
fn every_promql_query_parses() {
    let dir = tempfile::tempdir().unwrap();
    let queries: Vec<(usize, String)> = blocks(&runbook())
        .into_iter()
        .filter(|b| b.lang == "promql")
        .map(|b| {
            let text: Vec<&str> = b.lines.iter().map(|(_, l)| l.as_str()).collect();
            (b.lines[0].0, text.join("\n"))
        })
        .collect();
    assert!(queries.len() >= 20, "{} PromQL queries", queries.len());
    let mut failures = Vec::new();
    for (line, query) in &queries {
        // One rule file per query, so a failure names its line.
        let file = dir.path().join(format!("line-{line}.yaml"));
        let indented = query.replace('\n', "\n          ");
        std::fs::write(
            &file,
            format!(
                "groups:\n- name: runbook\n  rules:\n  - record: runbook:query\n    expr: |\n          {indented}\n"
            ),
        )
        .unwrap();
        let out = Command::new("promtool")
            .args(["check", "rules"])
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("promtool: {e} (run `make setup`)"));
        if !out.status.success() {
            failures.push(format!(
                "{RUNBOOK}:{line}: promtool refuses the query: {}{}\n    {query}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("{} PromQL queries parse", queries.len());
}
