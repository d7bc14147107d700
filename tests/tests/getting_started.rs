//! `docs/getting-started-envoy.md` as a newcomer runs it: its shell blocks, in order, in
//! one bash from the repository's root, with the work folder and the ports chosen here
//! (the page's commands take them from the environment, with defaults), and debug
//! binaries (`PROFILE=dev`) instead of release ones. Then what the page promises: both
//! model versions answered behind their variants, the weights moved by the schedule, and
//! every user on the canary once it is promoted.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use outrider_harness::paths;
use outrider_harness::prometheus::free_port;

const PAGE: &str = "docs/getting-started-envoy.md";
/// Long enough for the build steps when the filters are not built yet.
const TIMEOUT: Duration = Duration::from_secs(1200);

/// The `sh` blocks of a page, in order.
fn shell_blocks(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    // Inside a block: Some(its text if it is `sh`, None for another language).
    let mut open: Option<Option<String>> = None;
    for line in markdown.lines() {
        match (line.strip_prefix("```"), open.take()) {
            (Some(lang), None) => open = Some((lang.trim() == "sh").then(String::new)),
            (Some(_), Some(block)) => out.extend(block),
            (None, Some(mut block)) => {
                if let Some(text) = block.as_mut() {
                    text.push_str(line);
                    text.push('\n');
                }
                open = Some(block);
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "{PAGE}: an unclosed code block");
    out
}

/// The script's process group, killed when the test ends however it ends: the page
/// starts servers in the background.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let pgid = self.0.id() as i32;
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

#[test]
fn the_envoy_getting_started_runs_as_written() {
    let root = paths::repo_root();
    let page = std::fs::read_to_string(root.join(PAGE)).unwrap();
    let blocks = shell_blocks(&page);
    assert!(blocks.len() >= 8, "{PAGE}: {} shell blocks", blocks.len());
    let work = tempfile::Builder::new()
        .prefix("outrider-getting-started-")
        .tempdir()
        .unwrap();
    let out_path = work.path().join("stdout");
    let err_path = work.path().join("stderr");
    let script = format!("set -euo pipefail\n{}", blocks.join("\n"));
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(&script)
        .current_dir(&root)
        .env("PROFILE", "dev")
        .env("WORK", work.path().join("work"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .process_group(0);
    std::fs::create_dir(work.path().join("work")).unwrap();
    for var in [
        "ENVOY_PORT",
        "ADMIN_PORT",
        "SCORER_PORT",
        "STABLE_PORT",
        "CANARY_PORT",
        "STABLE_GRPC_PORT",
        "CANARY_GRPC_PORT",
    ] {
        cmd.env(var, free_port().unwrap().to_string());
    }
    let started = Instant::now();
    let mut group = Group(cmd.spawn().unwrap());
    let status = loop {
        if let Some(status) = group.0.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > TIMEOUT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let read = |p: &std::path::Path| {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(p) {
            let _ = f.read_to_string(&mut s);
        }
        s
    };
    let stdout = read(&out_path);
    let logs: String = ["scorer.log", "envoy.log", "stable.log", "canary.log"]
        .iter()
        .map(|f| {
            let text = read(&work.path().join("work").join(f));
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("--- {f} (end)\n{}\n", tail.join("\n"))
        })
        .collect();
    let context = format!(
        "--- stdout\n{stdout}\n--- stderr\n{}\n{logs}",
        read(&err_path)
    );
    match status {
        None => panic!(
            "{PAGE} did not finish within {} s\n{context}",
            TIMEOUT.as_secs()
        ),
        Some(s) => assert!(s.success(), "{PAGE} failed ({s})\n{context}"),
    }
    eprintln!(
        "{PAGE} ran in {:.1} s; its output:\n{stdout}",
        started.elapsed().as_secs_f64()
    );

    // The two `send`s, as `uniq -c` prints them: under the 90/10 step both variants
    // (sorted: canary first), after the promotion the canary alone.
    let tallies: Vec<(u32, String)> = stdout
        .lines()
        .filter_map(|l| {
            let (count, rest) = l.trim().split_once(' ')?;
            let count = count.parse().ok()?;
            rest.contains(" model_version=")
                .then(|| (count, rest.to_owned()))
        })
        .collect();
    let shown: Vec<(u32, &str)> = tallies.iter().map(|(n, w)| (*n, w.as_str())).collect();
    let [(canary, canary_what), (stable, stable_what), after] = shown.as_slice() else {
        panic!("expected three tally lines, got {shown:?}\n{context}");
    };
    assert_eq!(
        (*canary_what, *stable_what),
        ("canary model_version=2", "stable model_version=1"),
        "each variant is answered by its model version\n{context}"
    );
    assert_eq!(canary + stable, 200, "{shown:?}");
    assert!(
        *canary > 0 && *stable > *canary,
        "a 90/10 split of 200 users: {shown:?}\n{context}"
    );
    assert_eq!(
        *after,
        (200, "canary model_version=2"),
        "after promotion every user is on the canary\n{context}"
    );
    // The schedule's middle step reached the state the filter polls, and the filter
    // applied the promotion.
    assert!(
        stdout.contains(r#"{"variant":"canary","weight":50}"#),
        "the 50% step never showed in the polled state\n{context}"
    );
    assert!(
        stdout.contains(r#"outrider_weight_basis_points{rollout="fraud",variant="canary"} 10000"#),
        "Envoy's weight gauge does not show the promotion\n{context}"
    );
    for variant in ["stable", "canary"] {
        assert!(
            stdout.contains(&format!(
                r#"outrider_rq_total{{rollout="fraud",variant="{variant}"}}"#
            )),
            "no outrider_rq_total for {variant}\n{context}"
        );
    }
}
