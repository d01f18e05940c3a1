//! `sen site ...`: component sites (portal content).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use sen_client::content::{PushEvent, PushOptions};
use serde_json::json;

use crate::output::{emit, table};
use crate::{Failure, Output, client};

#[derive(Subcommand, Debug)]
pub enum SiteCmd {
    /// Create an empty site (public over HTTP unless --private).
    Create {
        site: String,
        /// Only readers of the site may fetch it over HTTP (a token, as a
        /// Bearer header or the `sen_token` cookie).
        #[arg(long)]
        private: bool,
    },
    /// Change a site's HTTP access, or the page the nodes' probes fetch to
    /// measure its availability.
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["private", "public", "probe_path"])))]
    Set {
        site: String,
        /// Only readers of the site may fetch it over HTTP.
        #[arg(long, conflicts_with = "public")]
        private: bool,
        /// Anyone may fetch it over HTTP.
        #[arg(long)]
        public: bool,
        /// The page the probes fetch instead of the front page, absolute
        /// within the site (`/index.html`); the site then counts as down
        /// whenever that page is missing. `/` goes back to the front page.
        #[arg(long, value_name = "PATH")]
        probe_path: Option<String>,
    },
    /// List sites with their current deployment.
    List,
    /// Delete a site and its history (needs --yes).
    Delete {
        site: String,
        /// Confirm: the site and its deployments are removed.
        #[arg(long)]
        yes: bool,
    },
    /// Make the site's tree equal to DIR, as one atomic deployment; only
    /// chunks the cluster lacks are sent.
    Push {
        site: String,
        dir: PathBuf,
        /// Also remove remote files that are not in DIR.
        #[arg(long)]
        delete: bool,
        /// Show what would change and how much would be sent; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// A note for `sen site history`.
        #[arg(long, short, default_value = "")]
        message: String,
        /// Uploads in flight (and hashing threads).
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        /// zstd level for chunks (1-19).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
        zstd_level: i32,
        /// Read and hash every file; by default a file whose size and
        /// modification time equal the site's copy is taken as unchanged.
        #[arg(long)]
        checksum: bool,
    },
    /// List files (path, size, modification time).
    Ls {
        site: String,
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Print a file.
    Cat { site: String, path: String },
    /// Download a site (or the files under PREFIX) into DIR.
    Pull {
        site: String,
        dir: PathBuf,
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Remove a file or a directory (a new deployment).
    Rm { site: String, path: String },
    /// Past deployments: time, author, files, size.
    History {
        site: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Delete chunks no site uses any more (after the grace period, or now
    /// with --grace 0s: a push running at that moment would have to be
    /// re-run).
    Gc {
        #[arg(long, value_parser = humantime::parse_duration)]
        grace: Option<Duration>,
    },
}

fn when(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Progress bars on a terminal (stderr), nothing otherwise.
fn progress_bars(output: Output) -> Option<sen_client::content::Progress> {
    if output == Output::Json || !std::io::stderr().is_terminal() {
        return None;
    }
    let style = ProgressStyle::with_template("{prefix:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let bar = ProgressBar::new(0).with_style(style);
    Some(Arc::new(move |e: PushEvent| match e {
        PushEvent::Scanning { bytes, .. } => {
            bar.set_prefix("scanning");
            bar.set_position(0);
            bar.set_length(bytes);
        }
        PushEvent::Scanned { bytes } | PushEvent::Uploaded { bytes } => bar.inc(bytes),
        PushEvent::Uploading { bytes, .. } => {
            bar.set_prefix("uploading");
            bar.set_position(0);
            bar.set_length(bytes);
        }
        PushEvent::Deploying => bar.finish_and_clear(),
    }))
}

pub async fn run(cmd: SiteCmd, endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    let c = client(endpoints, timeout)?;
    match cmd {
        SiteCmd::Create { site, private } => {
            let r = c.create_site(&site).await?;
            if private {
                c.set_site_access(&site, true).await?;
            }
            emit(
                output,
                json!({"site": site, "created": r.created, "private": private}),
                || {
                    if r.created {
                        format!("created site {site}{}", if private { " (private)" } else { "" })
                    } else {
                        format!("site {site} already exists")
                    }
                },
            );
        }
        SiteCmd::Set {
            site,
            private,
            public,
            probe_path,
        } => {
            let mut said = Vec::new();
            let mut out = json!({"site": site});
            if private || public {
                c.set_site_access(&site, private).await?;
                out["private"] = json!(private);
                said.push(format!(
                    "site {site} is now {}",
                    if private {
                        "private: HTTP needs a reader's token"
                    } else {
                        "public"
                    }
                ));
            }
            if let Some(path) = probe_path {
                c.set_probe_path(&site, &path).await?;
                let front = path.is_empty() || path == "/";
                out["probe_path"] = json!(if front { "/" } else { path.as_str() });
                said.push(if front {
                    format!("the probes fetch the front page of site {site}")
                } else {
                    format!("the probes fetch {path} of site {site}: it counts as down while that page is missing")
                });
            }
            emit(output, out, || said.join("\n"));
        }
        SiteCmd::List => {
            let r = c.list_sites().await?;
            emit(
                output,
                json!({"sites": r.sites.iter().map(|s| json!({"name": s.name, "deployment": s.deployment, "files": s.files, "bytes": s.bytes, "created_at_ms": s.created_at_ms, "probe_path": if s.probe_path.is_empty() { "/" } else { s.probe_path.as_str() }})).collect::<Vec<_>>()}),
                || {
                    let rows: Vec<Vec<String>> = r
                        .sites
                        .iter()
                        .map(|s| {
                            vec![
                                s.name.clone(),
                                s.deployment.to_string(),
                                s.files.to_string(),
                                crate::output::human_bytes(s.bytes),
                                if s.probe_path.is_empty() {
                                    "/".into()
                                } else {
                                    s.probe_path.clone()
                                },
                            ]
                        })
                        .collect();
                    table(&["SITE", "DEPLOYMENT", "FILES", "SIZE", "PROBE"], &rows)
                },
            );
        }
        SiteCmd::Delete { site, yes } => {
            if !yes {
                return Err(Failure::from(format!(
                    "deleting site {site} removes its files and history; add --yes to confirm"
                )));
            }
            let r = c.delete_site(&site).await?;
            if !r.deleted {
                return Err(Failure::from(format!("no site {site:?}")));
            }
            emit(output, json!({"site": site, "deleted": true}), || {
                format!("deleted site {site}; its chunks are freed by the next garbage collection")
            });
        }
        SiteCmd::Push {
            site,
            dir,
            delete,
            dry_run,
            message,
            parallel,
            zstd_level,
            checksum,
        } => {
            let opts = PushOptions {
                delete,
                dry_run,
                message,
                parallel,
                zstd_level,
                checksum,
                ..Default::default()
            };
            let s = c.push(&site, &dir, &opts, progress_bars(output)).await?;
            emit(output, serde_json::to_value(&s).unwrap_or_default(), || {
                let mut t = format!(
                    "{}{}: {} new, {} changed, {} unchanged, {} deleted ({} files)\nscanned {} (read {}), sent {} in {} chunks{}",
                    if s.dry_run { "dry run: " } else { "" },
                    site,
                    s.files_new,
                    s.files_changed,
                    s.files_unchanged,
                    s.files_deleted,
                    s.files_total,
                    crate::output::human_bytes(s.bytes_scanned),
                    crate::output::human_bytes(s.bytes_hashed),
                    crate::output::human_bytes(if s.dry_run { s.bytes_sent_plain } else { s.bytes_sent }),
                    s.chunks_sent,
                    if s.bytes_sent > 0 {
                        format!(
                            " (dedup {:.1}x, compression {:.1}x)",
                            s.dedup_ratio, s.compression_ratio
                        )
                    } else {
                        String::new()
                    }
                );
                match s.deployment {
                    Some(d) => t.push_str(&format!("\ndeployed as {d} in {:.1} s", s.duration_ms as f64 / 1000.0)),
                    None if !s.dry_run => t.push_str("\nnothing changed; no new deployment"),
                    None => {}
                }
                for w in &s.skipped {
                    t.push_str(&format!("\nskipped {w}"));
                }
                t
            });
        }
        SiteCmd::Ls { site, prefix } => {
            let (files, deployment) = c.list_files(&site, &prefix, false).await?;
            emit(
                output,
                json!({"site": site, "deployment": deployment, "files": files.iter().map(|f| json!({"path": f.path, "size": f.size, "mtime_ms": f.mtime_ms, "blake3": f.blake3.iter().map(|b| format!("{b:02x}")).collect::<String>()})).collect::<Vec<_>>()}),
                || {
                    let mut s = String::new();
                    for f in &files {
                        s.push_str(&format!("{:>10}  {}  {}\n", f.size, when(f.mtime_ms), f.path));
                    }
                    s
                },
            );
        }
        SiteCmd::Cat { site, path } => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            c.read_file(&site, &path, 0, 0, |d| out.write_all(d)).await?;
            out.flush().map_err(Failure::from)?;
        }
        SiteCmd::Pull { site, dir, prefix } => {
            let (n, bytes) = c.pull(&site, &prefix, &dir).await?;
            emit(
                output,
                json!({"site": site, "files": n, "bytes": bytes, "dir": dir}),
                || {
                    format!(
                        "pulled {n} files ({}) into {}",
                        crate::output::human_bytes(bytes),
                        dir.display()
                    )
                },
            );
        }
        SiteCmd::Rm { site, path } => {
            let author = PushOptions::default().author;
            let (n, dep) = c.remove_path(&site, &path, &author).await?;
            emit(output, json!({"site": site, "removed": n, "deployment": dep}), || {
                format!("removed {n} file(s); deployed as {dep}")
            });
        }
        SiteCmd::History { site, limit } => {
            let r = c.history(&site, limit).await?;
            emit(
                output,
                json!({"site": site, "deployments": r.deployments.iter().map(|d| json!({"id": d.id, "at_ms": d.at_ms, "author": d.author, "message": d.message, "files": d.files, "bytes": d.bytes, "new_chunks": d.new_chunks, "current": d.current})).collect::<Vec<_>>()}),
                || {
                    let rows: Vec<Vec<String>> = r
                        .deployments
                        .iter()
                        .map(|d| {
                            vec![
                                format!("{}{}", d.id, if d.current { "*" } else { "" }),
                                when(d.at_ms),
                                d.author.clone(),
                                d.files.to_string(),
                                crate::output::human_bytes(d.bytes),
                                d.message.clone(),
                            ]
                        })
                        .collect();
                    table(&["DEPLOYMENT", "TIME", "AUTHOR", "FILES", "SIZE", "MESSAGE"], &rows)
                },
            );
        }
        SiteCmd::Gc { grace } => {
            let mut total = (0u64, 0u64);
            loop {
                let r = c.collect_garbage(grace.map(|g| g.as_millis() as u64)).await?;
                total.0 += r.chunks;
                total.1 += r.bytes;
                if !r.more {
                    break;
                }
            }
            emit(output, json!({"chunks": total.0, "bytes": total.1}), || {
                format!(
                    "deleted {} unreferenced chunks ({})",
                    total.0,
                    crate::output::human_bytes(total.1)
                )
            });
        }
    }
    Ok(())
}
