//! The README's commands, typed as a new user types them: `sen demo`, then
//! the command block, verbatim, in a shell.

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// Stops the demo's detached nodes, whatever happens.
struct DemoNodes<'a>(&'a Path);

impl Drop for DemoNodes<'_> {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.0) else { return };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("node") && name.ends_with(".pid") {
                let pid = std::fs::read_to_string(e.path()).unwrap_or_default();
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        if std::thread::panicking() {
            for i in 1..=3 {
                let log = std::fs::read_to_string(self.0.join(format!("node{i}.log"))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!("----- demo node {i} log (last 30 lines) -----");
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

/// The first `sh` block after `marker` in the README.
fn readme_block(marker: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let after = &readme[readme.find(marker).expect("README marker")..];
    let start = after.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let len = after[start..].find("```").expect("end of the block");
    after[start..start + len].to_owned()
}

#[test]
fn the_readme_commands_work_as_typed() {
    let dir = TestDir::new("readme");
    let root = dir.path.clone();
    // A checkout as the user has it after `./scripts/demo.sh`: the binary
    // at target/release/sen and the repository's docs/ to push.
    std::fs::create_dir_all(root.join("target/release")).unwrap();
    std::os::unix::fs::symlink(SEN, root.join("target/release/sen")).unwrap();
    std::os::unix::fs::symlink(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs"), root.join("docs")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();

    // 1. The demo, as scripts/demo.sh starts it (detached here).
    let _nodes = DemoNodes(&root.join("sen-demo"));
    let out = Command::new(root.join("target/release/sen"))
        .args(["demo", "--dir", "sen-demo", "--detach"])
        .current_dir(&root)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in ["export SEN_CA=", "export SEN_TOKEN_FILE=", "export SEN_ENDPOINTS="] {
        assert!(text.contains(line), "the demo prints `{line}…`: {text}");
    }
    let token = root.join("sen-demo/admin.token");
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&token).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // 2. The README's block, verbatim but for /tmp (this test's own).
    let block = readme_block("Then, in another terminal").replace("/tmp/", &format!("{}/tmp/", root.display()));
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -eu\n{block}"))
        .current_dir(&root)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "README commands failed:\n{stdout}\n{stderr}");
    // What the user sees on the way.
    assert!(stdout.contains("Thứ hai: họp giao ban"), "{stdout}");
    assert!(
        stdout.contains("HTTP/1.1 200") || stdout.contains("HTTP/2 200"),
        "{stdout}"
    );
    assert!(
        stdout.contains("sen_") && stdout.contains("lich-tuan-admin"),
        "a token was printed: {stdout}"
    );
    assert!(root.join("tmp/portal-copy/sites.md").exists());
    // The secret never reached a log.
    let secret = std::fs::read_to_string(&token).unwrap();
    for i in 1..=3 {
        let log = std::fs::read_to_string(root.join(format!("sen-demo/node{i}.log"))).unwrap_or_default();
        assert!(!log.contains(secret.trim()), "node {i}'s log holds the admin token");
    }

    // Stopped and started again (its token file lost meanwhile), the demo
    // resumes the same cluster and gives the admin a new token.
    drop(_nodes);
    let _nodes = DemoNodes(&root.join("sen-demo"));
    std::fs::remove_file(&token).unwrap();
    let sen = root.join("target/release/sen");
    let run = |args: &[&str]| {
        Command::new(&sen)
            .args(args)
            .current_dir(&root)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SEN_CA", root.join("sen-demo/certs/ca.pem"))
            .env("SEN_TOKEN_FILE", &token)
            .output()
            .unwrap()
    };
    // (The killed nodes' ports may take a moment to be free again.)
    let mut out = run(&["demo", "--dir", "sen-demo", "--detach"]);
    for _ in 0..20 {
        if out.status.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        out = run(&["demo", "--dir", "sen-demo", "--detach"]);
    }
    assert!(
        out.status.success(),
        "demo again: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["kv", "get", "lichtuan", "2026-w48"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Thứ hai: họp giao ban"));
}
