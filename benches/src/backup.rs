//! Backups side by side with restic 0.14 (compression auto) and borg 1.2
//! (zstd,3), each to a local repository on the same disk, encrypted:
//!
//! - a real tree from this machine (`--source`, default: the Rust
//!   toolchain's documentation, the cargo registry's package sources and
//!   /usr/lib/x86_64-linux-gnu, capped at `--limit-mb`), copied once;
//! - first backup (Sen: `site push` + `backup create` on a one-node
//!   cluster, fsync on; the peers: one `backup`/`create` of the directory);
//! - nine more versions, each with 1% of the files edited (every 100th
//!   file from a shifting offset: a line inserted in the middle);
//! - restore of the last version into an empty directory (verified), the
//!   page cache dropped first (every restore reads its repository cold);
//! - repository size after the ten versions; peak memory.
//!
//! Tools run alternately (Sen, restic, borg, Sen, …) for `--rounds` rounds;
//! the report gives medians and Sen/peer ratios.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args as ClapArgs;
use sen_chaos::ProcessCluster;
use serde::Serialize;
use serde_json::json;

use crate::content::{files_of, need, peak_rss_mib, reset_peak_rss, run_ok, sen_cli};
use crate::report::{self, Machine, summarize};

#[derive(ClapArgs, Debug, Clone)]
pub struct Args {
    /// Directories copied into the test tree (in order, until --limit-mb).
    /// Default: `$(rustc --print sysroot)/share/doc`, `~/.cargo/registry/src`,
    /// `/usr/lib/x86_64-linux-gnu`.
    #[arg(long = "source")]
    pub sources: Vec<PathBuf>,
    /// Cap on the tree size, MB.
    #[arg(long, default_value_t = 2000)]
    pub limit_mb: u64,
    /// Versions backed up per tool (the first plus 1%-edits).
    #[arg(long, default_value_t = 10)]
    pub versions: usize,
    /// Rounds (each runs every tool once, alternating).
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Pause after deleting a round's files: ext4 avoids reusing inodes
    /// deleted in the last 60 s, and creating many files right after a big
    /// deletion is several times slower for whichever tool comes next.
    #[arg(long, value_parser = crate::duration, default_value = "65s")]
    pub settle: Duration,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            sources: Vec::new(),
            limit_mb: 2000,
            versions: 10,
            rounds: 2,
            settle: Duration::from_secs(65),
        }
    }
}

/// One tool's run through the whole pipeline.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ToolRun {
    pub tool: String,
    pub round: usize,
    /// First backup, seconds (Sen: push + backup).
    pub first_s: f64,
    /// Sen only: the two parts.
    pub first_push_s: f64,
    pub first_backup_s: f64,
    /// Incremental backups (1% of files edited), seconds each (Sen: push
    /// + backup).
    pub incremental_s: Vec<f64>,
    /// Sen only: the two parts of each incremental one.
    pub incremental_push_s: Vec<f64>,
    pub incremental_backup_s: Vec<f64>,
    pub restore_s: f64,
    pub repo_bytes: u64,
    pub backup_peak_mib: f64,
    pub restore_peak_mib: f64,
}

fn default_sources() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(o) = Command::new("rustc").args(["--print", "sysroot"]).output() {
        let root = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        if !root.is_empty() {
            v.push(Path::new(&root).join("share/doc"));
        }
    }
    if let Ok(home) = std::env::var("HOME") {
        v.push(Path::new(&home).join(".cargo/registry/src"));
    }
    v.push(PathBuf::from("/usr/lib/x86_64-linux-gnu"));
    v
}

/// Copy regular files of `sources` into `tree` (up to `limit` bytes),
/// skipping names that are not valid UTF-8 site paths. Returns (files, bytes).
fn build_tree(sources: &[PathBuf], tree: &Path, limit: u64) -> Result<(usize, u64)> {
    let mut bytes = 0u64;
    let mut n = 0usize;
    'outer: for (i, src) in sources.iter().enumerate() {
        let name = format!("{i}-{}", src.file_name().and_then(|s| s.to_str()).unwrap_or("src"));
        for f in files_of(src) {
            let Ok(rel) = f.strip_prefix(src) else { continue };
            let Some(rel_s) = rel.to_str() else { continue };
            if rel_s
                .split('/')
                .any(|c| c.is_empty() || c.starts_with(".sen") || c.chars().any(char::is_control))
            {
                continue;
            }
            let Ok(md) = std::fs::metadata(&f) else { continue };
            if bytes + md.len() > limit {
                break 'outer;
            }
            let to = tree.join(&name).join(rel);
            if let Some(p) = to.parent() {
                std::fs::create_dir_all(p)?;
            }
            if std::fs::copy(&f, &to).is_ok() {
                bytes += md.len();
                n += 1;
            }
        }
    }
    Ok((n, bytes))
}

/// Edit 1% of the files for version `v` (1-based).
fn edit_one_percent(tree: &Path, v: usize) -> Result<usize> {
    let files = files_of(tree);
    let mut n = 0;
    for f in files.iter().skip(v % 100).step_by(100) {
        let mut b = std::fs::read(f)?;
        let mid = b.len() / 2;
        b.splice(
            mid..mid,
            format!("\n// phiên bản {v}: sửa đổi theo Quyết định 201/QĐ-UBND\n").bytes(),
        );
        std::fs::write(f, b)?;
        n += 1;
    }
    Ok(n)
}

/// Run a peer's command, timing it and sampling its peak memory.
fn timed(cmd: &mut Command, what: &str) -> Result<(f64, f64)> {
    let t = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("{what}: cannot start"))?;
    let pid = child.id();
    let mut peak: f64 = 0.0;
    let status = loop {
        if let Some(m) = peak_rss_mib(pid) {
            peak = peak.max(m);
        }
        if let Some(s) = child.try_wait()? {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let secs = t.elapsed().as_secs_f64();
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        bail!("{what} failed: {}", err.trim());
    }
    Ok((secs, peak))
}

fn du(path: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        let Ok(rd) = std::fs::read_dir(p) else { return 0 };
        rd.flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => walk(&e.path()),
                Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
                _ => 0,
            })
            .sum()
    }
    walk(path)
}

/// The restored tree equals the source: same files and sizes, and the
/// content of every 20th file.
fn verify(src: &Path, restored: &Path) -> Result<()> {
    let a = files_of(src);
    let b = files_of(restored);
    if a.len() != b.len() {
        bail!("restored {} files, the tree has {}", b.len(), a.len());
    }
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let (mx, my) = (std::fs::metadata(x)?.len(), std::fs::metadata(y)?.len());
        if x.strip_prefix(src).ok() != y.strip_prefix(restored).ok() || mx != my {
            bail!("restored {} differs from {}", y.display(), x.display());
        }
        if i % 20 == 0 && std::fs::read(x)? != std::fs::read(y)? {
            bail!("restored {} has other content", y.display());
        }
    }
    Ok(())
}

async fn sen_run(sen: &Path, work: &Path, master: &Path, a: &Args, round: usize, pw: &Path) -> Result<ToolRun> {
    let dir = work.join("sen");
    let _ = std::fs::remove_dir_all(&dir);
    let tree = dir.join("tree");
    std::fs::create_dir_all(&dir)?;
    run_ok(Command::new("cp").arg("-a").arg(master).arg(&tree), "copy tree")?;
    let mut cluster = ProcessCluster::new(sen, dir.join("cluster"), "[content]\ngc-grace = \"24h\"\n")?
        .with_log("warn")
        .insecure();
    cluster.form(1).await?;
    let eps = cluster.grpc(1)?;
    let pid = cluster.nodes[&1].pid().ok_or_else(|| anyhow!("node not running"))?;
    let repo = format!("file://{}", std::path::absolute(dir.join("repo"))?.display());
    let pwf = pw.to_str().unwrap_or_default();
    sen_cli(sen, &eps, &["backup", "init", "--repo", &repo, "--password-file", pwf])?;
    sen_cli(sen, &eps, &["site", "create", "portal"])?;
    let mut run = ToolRun {
        tool: "sen".into(),
        round,
        ..Default::default()
    };
    let tree_s = tree.to_str().unwrap_or_default().to_owned();
    let backup = |eps: &str| -> Result<f64> {
        let (_, s, _) = sen_cli(sen, eps, &["backup", "create", "--repo", &repo, "--password-file", pwf])?;
        Ok(s)
    };
    reset_peak_rss(pid);
    let (_, push_s, _) = sen_cli(sen, &eps, &["site", "push", "portal", &tree_s])?;
    let backup_s = backup(&eps)?;
    run.backup_peak_mib = peak_rss_mib(pid).unwrap_or(f64::NAN);
    run.first_push_s = push_s;
    run.first_backup_s = backup_s;
    run.first_s = push_s + backup_s;
    for v in 1..a.versions {
        edit_one_percent(&tree, v)?;
        let (_, p, _) = sen_cli(sen, &eps, &["site", "push", "portal", &tree_s])?;
        let b = backup(&eps)?;
        run.incremental_s.push(p + b);
        run.incremental_push_s.push(p);
        run.incremental_backup_s.push(b);
    }
    run.repo_bytes = du(&dir.join("repo"));
    let out = dir.join("restored");
    cold_cache();
    let t = Instant::now();
    let (_, _, peak) = sen_cli(
        sen,
        &eps,
        &[
            "restore",
            "site",
            "portal",
            "--repo",
            &repo,
            "--password-file",
            pwf,
            "--to",
            out.to_str().unwrap_or_default(),
        ],
    )?;
    run.restore_s = t.elapsed().as_secs_f64();
    run.restore_peak_mib = peak;
    verify(&tree, &out)?;
    drop(cluster);
    Ok(run)
}

fn restic_run(work: &Path, master: &Path, a: &Args, round: usize, password: &str) -> Result<ToolRun> {
    let restic = need("restic")?;
    let dir = work.join("restic");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let tree = dir.join("tree");
    run_ok(Command::new("cp").arg("-a").arg(master).arg(&tree), "copy tree")?;
    let repo = dir.join("repo");
    let cmd = || {
        let mut c = Command::new(&restic);
        c.env("RESTIC_PASSWORD", password)
            .env("RESTIC_REPOSITORY", &repo)
            .env("RESTIC_CACHE_DIR", dir.join("cache"));
        c
    };
    run_ok(cmd().args(["init", "--repository-version", "2"]), "restic init")?;
    let mut run = ToolRun {
        tool: "restic".into(),
        round,
        ..Default::default()
    };
    // Back up from inside the tree so every version has the same paths.
    let backup = || -> Result<(f64, f64)> {
        timed(
            cmd().current_dir(&tree).args(["backup", "--compression", "auto", "."]),
            "restic backup",
        )
    };
    let (s, peak) = backup()?;
    run.first_s = s;
    run.backup_peak_mib = peak;
    for v in 1..a.versions {
        edit_one_percent(&tree, v)?;
        run.incremental_s.push(backup()?.0);
    }
    run.repo_bytes = du(&repo);
    let out = dir.join("restored");
    cold_cache();
    let (s, peak) = timed(
        cmd().args(["restore", "latest", "--target"]).arg(&out),
        "restic restore",
    )?;
    run.restore_s = s;
    run.restore_peak_mib = peak;
    verify(&tree, &out)?;
    Ok(run)
}

fn borg_run(work: &Path, master: &Path, a: &Args, round: usize, password: &str) -> Result<ToolRun> {
    let borg = need("borg")?;
    let dir = work.join("borg");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let tree = dir.join("tree");
    run_ok(Command::new("cp").arg("-a").arg(master).arg(&tree), "copy tree")?;
    let repo = dir.join("repo");
    let cmd = || {
        let mut c = Command::new(&borg);
        c.env("BORG_PASSPHRASE", password)
            .env("BORG_BASE_DIR", dir.join("base"))
            .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes");
        c
    };
    run_ok(cmd().args(["init", "-e", "repokey-blake2"]).arg(&repo), "borg init")?;
    let mut run = ToolRun {
        tool: "borg".into(),
        round,
        ..Default::default()
    };
    let backup = |v: usize| -> Result<(f64, f64)> {
        timed(
            cmd()
                .current_dir(&tree)
                .args(["create", "--compression", "zstd,3"])
                .arg(format!("{}::v{v}", repo.display()))
                .arg("."),
            "borg create",
        )
    };
    let (s, peak) = backup(0)?;
    run.first_s = s;
    run.backup_peak_mib = peak;
    for v in 1..a.versions {
        edit_one_percent(&tree, v)?;
        run.incremental_s.push(backup(v)?.0);
    }
    run.repo_bytes = du(&repo);
    let out = dir.join("restored");
    std::fs::create_dir_all(&out)?;
    cold_cache();
    let (s, peak) = timed(
        cmd()
            .current_dir(&out)
            .arg("extract")
            .arg(format!("{}::v{}", repo.display(), a.versions - 1)),
        "borg extract",
    )?;
    run.restore_s = s;
    run.restore_peak_mib = peak;
    verify(&tree, &out)?;
    Ok(run)
}

/// Before each tool's restore: write everything out and drop the page
/// cache (root only; returns whether it was dropped). Every restore then
/// reads its repository from disk, and none pays for inodes another run
/// freed: ext4 without a journal skips free inodes whose inode-table block
/// is still cached and that were freed less than 300 s ago (360 s while
/// the block is dirty) — 40% of a restore's samples right after a large
/// deletion, more than the round's settle pause covers.
fn cold_cache() -> bool {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

/// Delete the previous round's files, flush, and let ext4's recently
/// deleted inodes age (see `Args::settle`), so no tool pays for another's
/// deletions.
fn settle(work: &Path, pause: Duration) {
    for d in ["sen", "restic", "borg"] {
        let _ = std::fs::remove_dir_all(work.join(d));
    }
    let _ = Command::new("sync").status();
    std::thread::sleep(pause);
}

fn median(v: impl Iterator<Item = f64>) -> f64 {
    summarize(&v.collect::<Vec<_>>()).median
}

pub async fn run(sen: &Path, data: &Path, out: &Path, machine: &Machine, mut a: Args) -> Result<()> {
    need("restic")?;
    need("borg")?;
    if a.sources.is_empty() {
        a.sources = default_sources();
    }
    let work = data.join("backup");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let master = work.join("master");
    let (files, bytes) = build_tree(&a.sources, &master, a.limit_mb * 1_000_000)?;
    if files == 0 {
        bail!("no files found in {:?}", a.sources);
    }
    let password = "một mật khẩu dài cho phép đo";
    let pw = work.join("pw");
    std::fs::write(&pw, format!("{password}\n"))?;

    let mut runs: Vec<ToolRun> = Vec::new();
    for round in 0..a.rounds {
        settle(&work, a.settle);
        eprintln!("round {}: sen", round + 1);
        runs.push(sen_run(sen, &work, &master, &a, round, &pw).await?);
        eprintln!("round {}: restic", round + 1);
        runs.push(restic_run(&work, &master, &a, round, password)?);
        eprintln!("round {}: borg", round + 1);
        runs.push(borg_run(&work, &master, &a, round, password)?);
    }
    let _ = std::fs::remove_dir_all(&master);
    for d in ["sen", "restic", "borg"] {
        let _ = std::fs::remove_dir_all(work.join(d));
    }

    let mbs = |s: f64| bytes as f64 / 1e6 / s;
    let of = |tool: &'static str| runs.iter().filter(move |r| r.tool == tool);
    let row = |tool: &'static str| {
        let first = median(of(tool).map(|r| r.first_s));
        let inc = median(of(tool).flat_map(|r| r.incremental_s.clone()));
        let restore = median(of(tool).map(|r| r.restore_s));
        let repo = median(of(tool).map(|r| r.repo_bytes as f64));
        let bpeak = median(of(tool).map(|r| r.backup_peak_mib));
        let rpeak = median(of(tool).map(|r| r.restore_peak_mib));
        (first, inc, restore, repo, bpeak, rpeak)
    };
    let sen_row = row("sen");
    let mut md = format!(
        "## Backup and restore: Sen vs restic 0.14 vs borg 1.2\n\n{}\nCommand: `target/release/sen-benches backup --out {}` ({} round(s), tools alternating).\n\nTree: {} files, {:.0} MB copied from {}. {} versions: the first, then 1% of the files edited per version. All repositories local, on the same disk, encrypted (Sen: XChaCha20-Poly1305 + Argon2id; restic: repository v2, compression auto; borg: repokey-blake2, zstd,3). Sen runs one node (fsync on); its first backup is `site push` + `backup create`, its incremental ones the same after the edits; the peers back up the directory. Restore: the last version into an empty directory (Sen: `restore site`), verified. Each round starts after deleting the previous round's files and waiting {:?} (ext4 avoids recently deleted inodes: file creation right after a large deletion is several times slower). Before each restore: {}.\n\n| | first backup s | MB/s | incremental s (median) | restore s | restore MB/s | repo after {} versions MB | backup peak MiB | restore peak MiB |\n|---|---|---|---|---|---|---|---|---|\n",
        machine.markdown(),
        out.display(),
        a.rounds,
        files,
        bytes as f64 / 1e6,
        a.sources
            .iter()
            .map(|s| format!("`{}`", s.display()))
            .collect::<Vec<_>>()
            .join(", "),
        a.versions,
        a.settle,
        if cold_cache() {
            "`sync` and the page cache dropped (every restore reads its repository from disk; no tool meets inodes freed by another)"
        } else {
            "the page cache could not be dropped (not root): restores read warm repositories and may meet recently freed inodes"
        },
        a.versions,
    );
    let mut table = Vec::new();
    for tool in ["sen", "restic", "borg"] {
        let (first, inc, restore, repo, bpeak, rpeak) = row(tool);
        md.push_str(&format!(
            "| {tool} | {first:.1} | {:.1} | {inc:.2} | {restore:.1} | {:.1} | {:.1} | {bpeak:.0} | {rpeak:.0} |\n",
            mbs(first),
            mbs(restore),
            repo / 1e6
        ));
        table.push(json!({"tool": tool, "first_s": first, "first_mb_s": mbs(first), "incremental_s": inc, "restore_s": restore, "restore_mb_s": mbs(restore), "repo_bytes": repo, "backup_peak_mib": bpeak, "restore_peak_mib": rpeak}));
    }
    md.push_str("\nRatios (Sen / peer; for times and size lower is better, for MB/s higher):\n\n| peer | first backup MB/s | incremental time | restore MB/s | repository size |\n|---|---|---|---|---|\n");
    for peer in ["restic", "borg"] {
        let p = row(peer);
        md.push_str(&format!(
            "| {peer} | {:.2}× | {:.2}× | {:.2}× | {:.2}× |\n",
            p.0 / sen_row.0,
            sen_row.1 / p.1,
            p.2 / sen_row.2,
            sen_row.3 / p.3
        ));
    }
    let sen_parts = (
        median(of("sen").map(|r| r.first_push_s)),
        median(of("sen").map(|r| r.first_backup_s)),
    );
    md.push_str(&format!(
        "\nSen's first backup, in parts: push {:.1} s ({:.1} MB/s), backup of the cluster {:.1} s ({:.1} MB/s). Backup peak memory for Sen is the node's (it takes the backup); the CLI's is small.\n",
        sen_parts.0,
        mbs(sen_parts.0),
        sen_parts.1,
        mbs(sen_parts.1)
    ));
    let inc_parts = (
        median(of("sen").flat_map(|r| r.incremental_push_s.clone())),
        median(of("sen").flat_map(|r| r.incremental_backup_s.clone())),
    );
    let restic_inc = median(of("restic").flat_map(|r| r.incremental_s.clone()));
    md.push_str(&format!(
        "\nSen's incremental ones, in parts (medians): push of the edited tree {:.2} s, backup of the cluster {:.2} s ({:.1}× faster than restic's incremental backup of the tree, {:.2} s; with the push, {:.1}×).\n",
        inc_parts.0,
        inc_parts.1,
        restic_inc / inc_parts.1.max(1e-9),
        restic_inc,
        restic_inc / (inc_parts.0 + inc_parts.1).max(1e-9)
    ));
    report::write(
        out,
        "backup",
        &json!({"machine": machine, "files": files, "bytes": bytes, "sources": a.sources, "versions": a.versions, "runs": runs, "summary": table}),
        &md,
    )
}
