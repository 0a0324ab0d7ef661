//! `ether-cattle availability`: the seed's availability formula for N independent clusters,
//! `a = 1 - (1 - mtbf / (mttr + mtbf))^N`, and its inverse (how many clusters reach a target).
//!
//! MTTR can come from measured replica start-up times (`--mttr-from FILE`, seconds, one per line): a master
//! is recovered the way a replica starts, from the newest snapshot plus the Kafka backlog.

use std::path::PathBuf;

use anyhow::{bail, Context};

/// EC2's region-level SLA (99.99%): the seed's bound for "highly available enough".
pub const EC2_REGION_SLA: f64 = 0.9999;

const SECONDS_PER_YEAR: f64 = 365.25 * 86_400.0;

#[derive(clap::Args)]
pub struct AvailabilityArgs {
    /// Mean time between failures of one cluster's publisher (e.g. 14d, 336h); s/m/h/d/w suffixes, bare = seconds.
    #[arg(long, value_parser = parse_duration)]
    mtbf: f64,
    /// Mean time to recover a cluster (e.g. 45m).
    #[arg(long, value_parser = parse_duration, required_unless_present = "mttr_from", conflicts_with = "mttr_from")]
    mttr: Option<f64>,
    /// File of measured recovery (replica start-up) times in seconds, one per line; MTTR is their mean.
    #[arg(long)]
    mttr_from: Option<PathBuf>,
    /// Independent clusters behind the load balancer.
    #[arg(long, default_value_t = 1, conflicts_with = "target")]
    clusters: u32,
    /// Instead of an availability, print how many clusters reach this one (e.g. 0.9999).
    #[arg(long)]
    target: Option<f64>,
}

/// A duration in seconds from `90`, `90s`, `45m`, `1.5h`, `14d` or `2w`.
pub fn parse_duration(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let (number, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let scale = match unit {
        's' => 1.0,
        'm' => 60.0,
        'h' => 3_600.0,
        'd' => 86_400.0,
        'w' => 7.0 * 86_400.0,
        other => return Err(format!("unknown unit {other:?} in {s:?} (use s, m, h, d or w)")),
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("not a duration: {s:?} (e.g. 45m, 14d)"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("duration must be a non-negative number: {s:?}"));
    }
    Ok(value * scale)
}

/// Availability of one cluster: the fraction of time its publisher is up.
pub fn single(mtbf: f64, mttr: f64) -> f64 {
    mtbf / (mttr + mtbf)
}

/// The seed's formula: availability of `clusters` independent clusters (up while at least one is).
pub fn availability(mtbf: f64, mttr: f64, clusters: u32) -> f64 {
    // 1 - (1-p)^N, computed as -expm1(N * ln(1-p)) so that 0.99999... keeps its digits.
    let down = mttr / (mttr + mtbf);
    if down <= 0.0 {
        return 1.0;
    }
    -(f64::from(clusters) * down.ln()).exp_m1()
}

/// The inverse: fewest clusters whose availability is at least `target`.
pub fn clusters_for(mtbf: f64, mttr: f64, target: f64) -> Result<u32, String> {
    if !(target > 0.0 && target < 1.0) {
        return Err(format!("target availability must be between 0 and 1 (exclusive), not {target}"));
    }
    let down = mttr / (mttr + mtbf);
    if down <= 0.0 {
        return Ok(1);
    }
    if down >= 1.0 {
        return Err("with an MTBF of zero no number of clusters is ever available".into());
    }
    // (down)^N <= 1 - target  <=>  N >= ln(1 - target) / ln(down).
    let n = ((-target).ln_1p() / down.ln()).ceil().max(1.0);
    // The float bound can land one short or one over at exact boundaries: settle it with the formula itself.
    let mut n = n as u32;
    while n > 1 && availability(mtbf, mttr, n - 1) >= target {
        n -= 1;
    }
    while availability(mtbf, mttr, n) < target {
        n = n.checked_add(1).ok_or("target not reachable")?;
    }
    Ok(n)
}

/// Mean of the measured seconds in `text` (one per line; blank lines and `#` comments ignored).
pub fn mean_seconds(text: &str) -> Result<f64, String> {
    let mut sum = 0.0;
    let mut count = 0u32;
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let v = parse_duration(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        sum += v;
        count += 1;
    }
    if count == 0 {
        return Err("no measurements".into());
    }
    Ok(sum / f64::from(count))
}

/// A human duration: `45m`, `2.5h`, `14d`.
pub fn human(secs: f64) -> String {
    if secs >= 86_400.0 {
        format!("{}d", trim(secs / 86_400.0))
    } else if secs >= 3_600.0 {
        format!("{}h", trim(secs / 3_600.0))
    } else if secs >= 60.0 {
        format!("{}m", trim(secs / 60.0))
    } else {
        format!("{}s", trim(secs))
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A percentage with as many nines as it has (99.9995%).
pub fn percent(a: f64) -> String {
    format!("{:.6}%", a * 100.0)
}

pub fn run(args: AvailabilityArgs) -> anyhow::Result<()> {
    let mttr = match (&args.mttr_from, args.mttr) {
        (Some(path), _) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let mean = mean_seconds(&text)
                .map_err(anyhow::Error::msg)
                .with_context(|| path.display().to_string())?;
            println!("mttr         {} (mean of the measurements in {})", human(mean), path.display());
            mean
        }
        (None, Some(m)) => m,
        (None, None) => bail!("give --mttr or --mttr-from"),
    };
    if args.mtbf <= 0.0 {
        bail!("--mtbf must be greater than zero");
    }
    let mtbf = args.mtbf;
    println!("one cluster  {} (mtbf {}, mttr {})", percent(single(mtbf, mttr)), human(mtbf), human(mttr));
    let clusters = match args.target {
        Some(target) => {
            let n = clusters_for(mtbf, mttr, target).map_err(anyhow::Error::msg)?;
            println!("target       {}: {n} cluster{} needed", percent(target), if n == 1 { "" } else { "s" });
            n
        }
        None => args.clusters.max(1),
    };
    let a = availability(mtbf, mttr, clusters);
    println!(
        "{clusters} cluster{}   {} (expected stale time {} per year)",
        if clusters == 1 { " " } else { "s" },
        percent(a),
        human((1.0 - a) * SECONDS_PER_YEAR)
    );
    let bound = if a >= EC2_REGION_SLA {
        "above: EC2's SLA is the bound"
    } else {
        "below: the clusters are the bound"
    };
    println!("EC2 region SLA {} — {bound}", percent(EC2_REGION_SLA));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: f64 = 60.0;
    const DAY: f64 = 86_400.0;

    #[test]
    fn durations() {
        let cases: &[(&str, f64)] = &[
            ("90", 90.0),
            ("90s", 90.0),
            ("45m", 2_700.0),
            ("1.5h", 5_400.0),
            ("14d", 14.0 * DAY),
            ("2w", 14.0 * DAY),
            (" 3m ", 180.0),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input), Ok(*want), "{input}");
        }
        for bad in ["", "m", "5x", "-3m", "abc", "1e400d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    /// Worked examples: (mtbf, mttr, clusters, availability to 1e-9).
    #[test]
    fn availability_table() {
        let cases: &[(f64, f64, u32, f64)] = &[
            // The seed's example: two clusters, 45-minute MTTR, MTBF of two weeks.
            // p = 20160/20205 = 0.997772828...; 1 - (1-p)^2 = 1 - (45/20205)^2 = 0.999995040...
            (14.0 * DAY, 45.0 * MIN, 2, 1.0 - (45.0f64 / 20_205.0).powi(2)),
            (14.0 * DAY, 45.0 * MIN, 1, 20_160.0 / 20_205.0),
            // One cluster, one hour down a day: 24/25.
            (24.0 * 3_600.0, 3_600.0, 1, 0.96),
            // Three clusters at 90%: 1 - 0.1^3.
            (9.0, 1.0, 3, 0.999),
            // Zero MTTR is always available.
            (DAY, 0.0, 1, 1.0),
        ];
        for &(mtbf, mttr, n, want) in cases {
            let got = availability(mtbf, mttr, n);
            assert!((got - want).abs() < 1e-9, "mtbf {mtbf} mttr {mttr} n {n}: got {got}, want {want}");
        }
        // The seed's claim: two such clusters are above EC2's regional 99.99%; one is not.
        assert!(availability(14.0 * DAY, 45.0 * MIN, 2) > EC2_REGION_SLA);
        assert!(availability(14.0 * DAY, 45.0 * MIN, 1) < EC2_REGION_SLA);
        assert!((availability(14.0 * DAY, 45.0 * MIN, 2) - 0.99999504).abs() < 1e-8);
    }

    /// Inverse: (mtbf, mttr, target, clusters).
    #[test]
    fn clusters_table() {
        let cases: &[(f64, f64, f64, u32)] = &[
            (14.0 * DAY, 45.0 * MIN, 0.9999, 2),
            (14.0 * DAY, 45.0 * MIN, 0.99, 1),
            (14.0 * DAY, 45.0 * MIN, 0.999_999, 3),
            (9.0, 1.0, 0.999, 3), // exactly at the boundary
            (9.0, 1.0, 0.9991, 4),
            (9.0, 1.0, 0.9, 1),
            (DAY, 0.0, 0.999_999, 1),
        ];
        for &(mtbf, mttr, target, want) in cases {
            assert_eq!(clusters_for(mtbf, mttr, target), Ok(want), "mtbf {mtbf} mttr {mttr} target {target}");
            assert!(availability(mtbf, mttr, want) >= target - 1e-12);
        }
        assert!(clusters_for(DAY, MIN, 1.0).is_err());
        assert!(clusters_for(DAY, MIN, 0.0).is_err());
        assert!(clusters_for(DAY, MIN, f64::NAN).is_err());
        assert!(clusters_for(0.0, MIN, 0.9).is_err());
    }

    #[test]
    fn measured_mttr() {
        assert_eq!(mean_seconds("2400\n3000\n\n# a comment\n2700 # trailing\n"), Ok(2_700.0));
        assert_eq!(mean_seconds("40m\n50m\n"), Ok(2_700.0));
        assert!(mean_seconds("\n# nothing\n").is_err());
        assert!(mean_seconds("10\nten\n").unwrap_err().contains("line 2"));
    }

    #[test]
    fn formatting() {
        assert_eq!(human(2_700.0), "45m");
        assert_eq!(human(14.0 * DAY), "14d");
        assert_eq!(human(5_400.0), "1.5h");
        assert_eq!(human(2.6), "2.6s");
        assert_eq!(percent(0.99999504), "99.999504%");
    }
}
