//! `forge-sweep`: how long a forge sweep takes and how many Gitea calls it makes, over
//! a meta repo of `--entries` RFC entries and `--repos` RFC repos (issue 13, "Measure").
//!
//! No fleet is involved. The forge role runs in this process against the Gitea
//! stand-in and a scratch database (`switchyard_bench_forge`, dropped and migrated
//! first). The doorbell has no relay behind it: the events each change stages stay in
//! the outbox, as they would while the relay is behind.
//!
//! Each run measures three sweeps:
//! - **cold**: [`Forge::rebuild`], the cache dropped, so every entry is fetched;
//! - **warm**: a scheduled sweep right after, with nothing changed upstream (an entry
//!   whose blob sha the cache holds is not fetched again);
//! - **changed**: a scheduled sweep after [`CHANGED_ENTRIES`] entries were edited and
//!   [`PUSHED_BRANCHES`] RFC-repo branches were pushed.
//!
//! Gitea calls are counted twice: by the sweep's own client (`SweepReport::gitea_calls`)
//! and by the stand-in (requests it answered). The two agree unless something else
//! talks to the stand-in. The table ends with the medians over the runs and the load
//! average, so a noisy machine shows.

use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context, ensure};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, PgPool};
use switchyard_bus::Doorbell;
use switchyard_domain::status::SweepTrigger;
use switchyard_gitea_standin::GiteaStandin;
use switchyard_workers::forge::{Forge, ForgeConfig, SweepReport};

/// The scratch database, on the server `--database-url` names.
const SCRATCH: &str = "switchyard_bench_forge";
/// The meta repo; graduated RFCs' repos share its owner.
const META: &str = "bench/meta";
/// The token the stand-in asks for.
const TOKEN: &str = "bench-forge-token";
/// Pull requests on the meta repo (ideas and body edits).
const META_PULLS: usize = 20;
/// Branches of each RFC repo besides main; pull requests come from the first two.
const RFC_BRANCHES: [&str; 3] = ["draft", "review", "typos"];
/// Entries edited before the `changed` sweep.
const CHANGED_ENTRIES: usize = 10;
/// RFC-repo branches pushed before the `changed` sweep.
const PUSHED_BRANCHES: usize = 5;
/// Who asked for the sweeps, as `forge_sweeps.requested_by` records it.
const REQUESTED_BY: &str = "switchyard-bench";

/// Arguments of `switchyard-bench forge-sweep`.
#[derive(clap::Args, Debug, Clone)]
pub struct SweepArgs {
    /// RFC entries in the meta repo (`rfcs/<slug>.md`).
    #[arg(long, default_value_t = 1000)]
    entries: usize,
    /// RFC repos: the first this many entries are graduated, each with a repo of its own.
    #[arg(long, default_value_t = 50)]
    repos: usize,
    /// Runs; the table shows the median of each figure.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The Postgres server to use (its database is only used to create the scratch one).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
}

/// The three sweeps of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Cold,
    Warm,
    Changed,
}

impl Phase {
    const ALL: [Phase; 3] = [Phase::Cold, Phase::Warm, Phase::Changed];

    fn name(self) -> &'static str {
        match self {
            Phase::Cold => "cold (rebuild)",
            Phase::Warm => "warm (no change)",
            Phase::Changed => "changed",
        }
    }
}

/// One sweep's figures.
#[derive(Clone, Copy, Debug)]
struct Sample {
    duration_ms: u64,
    /// Requests the sweep's Gitea client sent, retries included.
    report_calls: u64,
    /// Requests the stand-in answered during the sweep.
    standin_calls: u64,
    repos: usize,
    changes: usize,
    unreachable: usize,
}

/// Seeds the stand-in, then sweeps `--runs` times and prints what each sweep took.
pub async fn run(args: SweepArgs) -> anyhow::Result<()> {
    ensure!(args.runs > 0, "--runs must be at least 1");
    ensure!(
        args.repos <= args.entries,
        "--repos cannot exceed --entries"
    );
    let pool = scratch_database(&args.database_url).await?;
    let gitea = GiteaStandin::start(TOKEN).await;
    let seeding = Instant::now();
    seed(&gitea, &args);
    let config = ForgeConfig {
        url: Some(gitea.url()),
        token: Some(TOKEN.to_owned()),
        meta_repo: Some(META.to_owned()),
        ..ForgeConfig::default()
    };
    let concurrency = config.read_concurrency;
    // No relay: the receiver is dropped at once, so each ring is a no-op and the
    // staged events stay in the outbox.
    let (doorbell, _) = Doorbell::channel(1);
    let forge = Forge::new(pool, doorbell, config)?;
    println!(
        "forge sweep: {META} with {} entries ({} graduated) and {META_PULLS} pull requests; \
         {} RFC repos with {} branches and 2 pull requests each; read_concurrency {concurrency}; \
         seeded in {:.1}s",
        args.entries,
        args.repos,
        args.repos,
        RFC_BRANCHES.len() + 1,
        seeding.elapsed().as_secs_f64(),
    );
    println!(
        "changed = after {} entries edited and {} RFC-repo branches pushed",
        CHANGED_ENTRIES.min(args.entries),
        PUSHED_BRANCHES.min(args.repos),
    );
    let load_before = load_average();
    println!("{:<5}{}", "run", header());
    let mut runs = Vec::with_capacity(args.runs);
    for run in 1..=args.runs {
        let mut samples = Vec::with_capacity(Phase::ALL.len());
        for phase in Phase::ALL {
            if phase == Phase::Changed {
                change(&gitea, &args, run);
            }
            let sample = sweep(&forge, &gitea, phase).await?;
            println!("{run:<5}{}", row(phase.name(), &sample));
            samples.push(sample);
        }
        runs.push(samples);
    }
    print_medians(&runs, &load_before);
    Ok(())
}

/// Drops and creates the scratch database on `url`'s server, and migrates it.
async fn scratch_database(url: &str) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url).context("--database-url")?;
    // The database named in the URL only serves to create the scratch one; it cannot
    // drop itself, so then the server's `postgres` database does.
    let admin = match options.get_database() {
        Some(SCRATCH) => options.clone().database("postgres"),
        _ => options.clone(),
    };
    let mut conn = admin
        .connect()
        .await
        .context("is Postgres up? (scripts/services.sh)")?;
    // SCRATCH is a constant identifier, not input.
    sqlx::query(AssertSqlSafe(format!(
        "drop database if exists {SCRATCH} with (force)"
    )))
    .execute(&mut conn)
    .await?;
    sqlx::query(AssertSqlSafe(format!("create database {SCRATCH}")))
        .execute(&mut conn)
        .await?;
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect_with(options.database(SCRATCH))
        .await?;
    sqlx::migrate!("../migrations").run(&pool).await?;
    Ok(pool)
}

/// The meta repo with its entries and pull requests, and each graduated RFC's repo.
fn seed(gitea: &GiteaStandin, args: &SweepArgs) {
    gitea.create_repo(META);
    for n in 1..=args.entries {
        let graduated = n <= args.repos;
        gitea.put_file(META, "main", &entry_path(n), &entry_text(n, graduated, 0));
    }
    for i in 0..META_PULLS.min(args.entries) {
        // Spread over the entries; alternately an idea and a body edit, every fourth closed.
        let slug = slug(1 + i * args.entries / META_PULLS.min(args.entries));
        let head = if i % 2 == 0 {
            format!("propose/{slug}")
        } else {
            format!("edit/{slug}/wording")
        };
        gitea.push_branch(META, &head);
        let number = gitea.open_pull(META, &head, &format!("{slug}: {head}"), "", "ada");
        if i % 4 == 3 {
            gitea.close_pull(META, number);
        }
    }
    for n in 1..=args.repos {
        let repo = rfc_repo(n);
        gitea.create_repo(&repo);
        gitea.put_file(
            &repo,
            "main",
            "RFC.md",
            &format!("# {}\n\nThe design.\n", slug(n)),
        );
        for branch in RFC_BRANCHES {
            gitea.push_branch(&repo, branch);
        }
        for branch in &RFC_BRANCHES[..2] {
            gitea.open_pull(
                &repo,
                branch,
                &format!("{branch} of {}", slug(n)),
                "",
                "grace",
            );
        }
    }
}

/// Before run `run`'s changed sweep: edits [`CHANGED_ENTRIES`] entries and pushes
/// [`PUSHED_BRANCHES`] RFC-repo branches, spread over them.
fn change(gitea: &GiteaStandin, args: &SweepArgs, run: usize) {
    let edited = CHANGED_ENTRIES.min(args.entries);
    for i in 0..edited {
        let n = 1 + i * args.entries / edited;
        gitea.put_file(
            META,
            "main",
            &entry_path(n),
            &entry_text(n, n <= args.repos, run),
        );
    }
    let pushed = PUSHED_BRANCHES.min(args.repos);
    for i in 0..pushed {
        let n = 1 + i * args.repos / pushed;
        gitea.push_branch(&rfc_repo(n), RFC_BRANCHES[0]);
    }
}

fn slug(n: usize) -> String {
    format!("rfc-{n:04}")
}

fn entry_path(n: usize) -> String {
    format!("rfcs/{}.md", slug(n))
}

/// A graduated RFC's repo, owned by the meta repo's owner.
fn rfc_repo(n: usize) -> String {
    format!("bench/{}", slug(n))
}

/// Entry `n` at `revision` (each revision has a new blob sha).
fn entry_text(n: usize, graduated: bool, revision: usize) -> String {
    let slug = slug(n);
    let repo = if graduated {
        format!("repo: {slug}\n")
    } else {
        String::new()
    };
    format!(
        "---\nslug: {slug}\ntitle: Benchmark RFC {n}\nstate: active\nid: {n}\n{repo}\
         proposed_by: ada\nproposed_at: 2024-05-01\nowners: [ada]\ntags: [bench]\n---\n\
         # Benchmark RFC {n}\n\nRevision {revision}. A paragraph of body text, long enough \
         to look like a summary of a design proposal and its motivation.\n"
    )
}

/// Runs one sweep of `phase` and counts the stand-in's requests around it.
async fn sweep(forge: &Forge, gitea: &GiteaStandin, phase: Phase) -> anyhow::Result<Sample> {
    let before = gitea.calls();
    let report: SweepReport = match phase {
        Phase::Cold => forge.rebuild(REQUESTED_BY).await?,
        Phase::Warm | Phase::Changed => forge.sweep(SweepTrigger::Schedule, REQUESTED_BY).await?,
    };
    let standin_calls = gitea.calls() - before;
    for unreachable in &report.unreachable {
        eprintln!("unreachable: {}: {}", unreachable.repo, unreachable.error);
    }
    Ok(Sample {
        duration_ms: report.duration_ms,
        report_calls: report.gitea_calls,
        standin_calls,
        repos: report.repos,
        changes: report.changes,
        unreachable: report.unreachable.len(),
    })
}

fn header() -> String {
    format!(
        "{:<18}{:>10}{:>14}{:>16}{:>7}{:>9}{:>13}",
        "sweep", "ms", "calls(report)", "calls(stand-in)", "repos", "changes", "unreachable"
    )
}

fn row(name: &str, s: &Sample) -> String {
    format!(
        "{name:<18}{:>10}{:>14}{:>16}{:>7}{:>9}{:>13}",
        s.duration_ms, s.report_calls, s.standin_calls, s.repos, s.changes, s.unreachable
    )
}

/// The median of each figure per phase, the warm/cold and changed/cold ratios, and the
/// load average before and after.
fn print_medians(runs: &[Vec<Sample>], load_before: &str) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!("median over {} run(s):", runs.len());
    println!("{}", header());
    let medians: Vec<Sample> = (0..Phase::ALL.len())
        .map(|p| {
            let figure = |f: fn(&Sample) -> u64| median(runs.iter().map(|r| f(&r[p])).collect());
            Sample {
                duration_ms: figure(|s| s.duration_ms),
                report_calls: figure(|s| s.report_calls),
                standin_calls: figure(|s| s.standin_calls),
                repos: figure(|s| s.repos as u64) as usize,
                changes: figure(|s| s.changes as u64) as usize,
                unreachable: figure(|s| s.unreachable as u64) as usize,
            }
        })
        .collect();
    for (phase, sample) in Phase::ALL.iter().zip(&medians) {
        println!("{}", row(phase.name(), sample));
    }
    let cold = &medians[0];
    for (name, sample) in [("warm/cold", &medians[1]), ("changed/cold", &medians[2])] {
        println!(
            "{name:<18}{:>10.3}{:>14.3}{:>16.3}",
            ratio(sample.duration_ms, cold.duration_ms),
            ratio(sample.report_calls, cold.report_calls),
            ratio(sample.standin_calls, cold.standin_calls),
        );
    }
    println!(
        "load average (1/5/15 min, {cores} cores): {load_before} before, {} after",
        load_average()
    );
}

/// The middle value (the lower of the two middle ones for an even count).
fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[(values.len() - 1) / 2]
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return f64::NAN;
    }
    part as f64 / whole as f64
}

/// The first three fields of `/proc/loadavg`, or `unknown` where there is none.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_middle_value() {
        assert_eq!(median(vec![30, 10, 20]), 20);
        assert_eq!(median(vec![40, 10, 30, 20]), 20);
        assert_eq!(median(vec![7]), 7);
    }

    #[test]
    fn entries_parse_and_graduated_ones_name_their_repo() {
        let graduated = switchyard_workers::forge::entry::parse(&entry_text(7, true, 0), "bench")
            .expect("the entry parses");
        assert_eq!(graduated.slug, "rfc-0007");
        assert_eq!(graduated.repo.as_deref(), Some("bench/rfc-0007"));
        let proposed = switchyard_workers::forge::entry::parse(&entry_text(8, false, 2), "bench")
            .expect("the entry parses");
        assert_eq!(proposed.repo, None);
        assert_ne!(entry_text(7, true, 0), entry_text(7, true, 1));
    }
}
