//! `kairos schedule-preview`: when will my job fire next?

use std::io::Write;

use anyhow::{Context, bail};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use kairos_core::timeline::{Progress, after_success, next_tick};
use kairos_core::{Clock, JobSpec, SystemClock};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job's schedule: 6-field cron with seconds, a descriptor (@daily, …) or `@every <d>`,
    /// optionally prefixed with `TZ=<zone> `.
    pub schedule: Option<String>,
    /// First tick: RFC 3339 time, Go duration (`10s`, `1h30m`) or ISO-8601 duration (`P1D`).
    #[arg(long)]
    pub due_time: Option<String>,
    /// Number of ticks after which the job is deleted.
    #[arg(long)]
    pub repeats: Option<u32>,
    /// Expiry, relative to the due time when given, else to creation.
    #[arg(long)]
    pub ttl: Option<String>,
    /// How many ticks to print at most.
    #[arg(long, default_value_t = 10)]
    pub count: usize,
    /// Creation time to compute from (RFC 3339); default now.
    #[arg(long)]
    pub created: Option<Timestamp>,
    /// Zone for cron schedules without a `TZ=` prefix (IANA name); default UTC, as the scheduler
    /// uses (and upstream's, in effect).
    #[arg(long)]
    pub tz: Option<String>,
}

/// Prints the ticks of the described job.
///
/// # Errors
/// When the job would be rejected by the scheduler (the error says why), or the output fails.
pub fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    if args.schedule.is_none() && args.due_time.is_none() {
        bail!("give a schedule, a --due-time, or both");
    }
    let tz = match &args.tz {
        Some(name) => TimeZone::get(name).with_context(|| format!("unknown time zone {name:?}"))?,
        None => TimeZone::UTC,
    };
    let created = args.created.unwrap_or_else(|| SystemClock.now());
    let spec = JobSpec {
        schedule: args.schedule.clone(),
        repeats: args.repeats,
        due_time: args.due_time.clone(),
        ttl: args.ttl.clone(),
        ..JobSpec::default()
    };
    let timing = spec.resolve(created, &tz).context("job failed validation")?;

    writeln!(out, "created   {}", created.to_zoned(tz.clone()))?;
    if let Some(expires) = timing.expires {
        writeln!(out, "expires   {}", expires.to_zoned(tz.clone()))?;
    }
    let mut progress = Progress::default();
    let mut due = next_tick(&timing, &progress);
    let mut printed = 0;
    while let Some(at) = due {
        if printed == args.count {
            writeln!(out, "…         (more ticks follow; raise --count to see them)")?;
            return Ok(());
        }
        printed += 1;
        writeln!(out, "tick {printed:<4} {}", at.to_zoned(tz.clone()))?;
        let step = after_success(&timing, &progress);
        progress = step.progress;
        due = step.due;
    }
    if printed == 0 {
        writeln!(
            out,
            "the job never fires: its first tick falls after its ttl, or the schedule has no match"
        )?;
    } else {
        writeln!(out, "done      the job is deleted after tick {printed}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preview(args: Args) -> String {
        let mut out = Vec::new();
        run(&args, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn args(schedule: Option<&str>) -> Args {
        Args {
            schedule: schedule.map(str::to_owned),
            due_time: None,
            repeats: None,
            ttl: None,
            count: 10,
            created: Some("2026-03-01T10:00:00Z".parse().unwrap()),
            tz: Some("UTC".into()),
        }
    }

    #[test]
    fn previews_a_one_shot_job() {
        let out = preview(Args { due_time: Some("90s".into()), ..args(None) });
        assert!(out.contains("tick 1    2026-03-01T10:01:30+00:00[UTC]"), "{out}");
        assert!(out.contains("deleted after tick 1"), "{out}");
    }

    #[test]
    fn previews_the_db_backup_walkthrough() {
        let out = preview(Args { repeats: Some(10), ..args(Some("@every 1s")) });
        assert!(out.contains("tick 1    2026-03-01T10:00:01+00:00[UTC]"), "{out}");
        assert!(out.contains("tick 10   2026-03-01T10:00:10+00:00[UTC]"), "{out}");
        assert!(out.contains("deleted after tick 10"), "{out}");
    }

    #[test]
    fn stops_at_count_for_endless_jobs() {
        let out = preview(Args { count: 3, ..args(Some("@hourly")) });
        assert_eq!(out.matches("tick ").count(), 3, "{out}");
        assert!(out.contains("more ticks follow"), "{out}");
    }

    #[test]
    fn explains_an_invalid_job() {
        let err = run(&args(Some("* * * * *")), &mut Vec::new()).unwrap_err();
        assert!(format!("{err:#}").contains("expected exactly 6 fields"), "{err:#}");
        let err = run(&args(None), &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("give a schedule"), "{err}");
    }
}
