//! The conversion plan for this board: how many jobs at once, how many
//! decoders a lone long track gets, on which CPUs, how nice — and fewer jobs
//! while the SoC is hot or throttled.
//!
//! Measured on 2-core x86 and the same logic for ARM boards: every job is an
//! FFmpeg decoder piped into libFLAC (DTS decoding costs about 55% of the
//! work, encoding with verification 45%), so one job keeps two cores busy,
//! and one job per core keeps every core busy in a batch. FFmpeg's
//! `-threads` is left alone: its DTS decoder has no threading (the same
//! three threads run with `-threads 1` or without), so the parallelism
//! comes from processes.

use serde::Serialize;

use super::board::{self, Board};

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub workers: usize,
    /// Cores the jobs may use (the fast cluster, or all).
    pub cores: usize,
    /// Decoders sharing one long DTS-HD MA track while cores would
    /// otherwise sit idle.
    pub decode_lanes: usize,
    /// libFLAC encoder threads for a track decoded in lanes (where libFLAC
    /// has them, 1.5 and later); 1: one.
    pub flac_threads: usize,
    pub nice: i32,
    /// CPUs the jobs' processes run on; empty: any.
    pub cpus: Vec<usize>,
    /// Why, in words, for `dtsflac doctor`.
    pub reasons: Vec<String>,
}

/// Config overrides; `None`/empty means "decide from the board".
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub workers: Option<usize>,
    pub nice: Option<i32>,
    pub cpus: Vec<usize>,
    pub decode_lanes: Option<usize>,
    pub flac_threads: Option<usize>,
}

/// Memory one running job needs at most (FFmpeg decoder + libFLAC encoder).
const MEMORY_PER_JOB: u64 = 160 << 20;

pub fn plan(board: &Board, o: &Overrides) -> Plan {
    let mut reasons = Vec::new();
    // big.LITTLE: keep FFmpeg on the fast cluster when it has two cores or
    // more; the little cores serve the daemon, page and panel.
    let fast = board.clusters.first();
    let mut cpus: Vec<usize> = match fast {
        Some(f) if board.clusters.len() > 1 && f.cpus.len() >= 2 => {
            reasons.push(format!(
                "big.LITTLE: FFmpeg runs on the fast cluster (CPUs {:?})",
                f.cpus
            ));
            f.cpus.clone()
        }
        _ => Vec::new(),
    };
    if !o.cpus.is_empty() {
        reasons.push(format!("CPUs {:?} from the config", o.cpus));
        cpus = o.cpus.clone();
    }
    let usable = if cpus.is_empty() {
        board.cores
    } else {
        cpus.len()
    };
    reasons.push(
        "each job is an FFmpeg decoder piped into libFLAC, so one track uses two cores \
         (FFmpeg's DTS decoder has no threads of its own: -threads changes nothing)"
            .into(),
    );
    let mut workers = usable.max(1);
    if let Some(avail) = board.memory_available_bytes {
        let fit = (avail / MEMORY_PER_JOB).max(1) as usize;
        if fit < workers {
            reasons.push(format!(
                "memory: {} MB available allows {fit} job(s) at once",
                avail >> 20
            ));
            workers = fit;
        }
    }
    if let Some(w) = o.workers.filter(|w| *w > 0) {
        reasons.push(format!("{w} job(s) at once from the config"));
        workers = w;
    } else {
        reasons.push(format!("{workers} job(s) at once: one per usable core"));
    }
    // Lanes pay only with cores to spare beside the encoder: measured on 2
    // cores they cost more processes and PCM copied through us, and gain
    // little; on 4 cores two decoders get the two cores a job leaves idle.
    let decode_lanes = o.decode_lanes.unwrap_or(if usable >= 4 {
        (usable - 2).clamp(2, 4)
    } else {
        1
    });
    if decode_lanes >= 2 {
        reasons.push(format!(
            "a long DTS-HD MA track, while cores would otherwise sit idle, is decoded by {decode_lanes} FFmpeg processes taking turns, seams checked sample for sample"
        ));
    }
    // With its decoding split in lanes, a track's one encoder is the slower
    // stage; two libFLAC threads keep up with the lanes (see README, "Speed").
    let flac_threads = o
        .flac_threads
        .unwrap_or(if decode_lanes >= 2 { 2 } else { 1 });
    if decode_lanes >= 2 && flac_threads >= 2 {
        reasons.push(format!(
            "such a track is encoded by {flac_threads} libFLAC threads where libFLAC has them (1.5 and later)"
        ));
    }
    let nice = o.nice.unwrap_or(10);
    reasons.push(format!(
        "FFmpeg and flac at niceness {nice}, so the page and panel stay responsive"
    ));
    Plan {
        workers,
        cores: usable,
        decode_lanes,
        flac_threads,
        nice,
        cpus,
        reasons,
    }
}

/// Above this the SoC throttles soon; run fewer jobs until it cools.
pub const HOT_CELSIUS: f64 = 80.0;

/// How many jobs may run now: all of them, or half while hot or throttled.
pub fn jobs_allowed_now(workers: usize) -> usize {
    let hot = board::cpu_temperature().is_some_and(|t| t >= HOT_CELSIUS);
    let throttled = board::throttled().unwrap_or(false);
    if hot || throttled {
        (workers / 2).max(1)
    } else {
        workers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::board::Cluster;

    fn board(clusters: Vec<Vec<usize>>, mem_mb: u64) -> Board {
        Board {
            model: "test".into(),
            cores: clusters.iter().map(Vec::len).sum(),
            clusters: clusters
                .into_iter()
                .enumerate()
                .map(|(i, cpus)| Cluster {
                    cpus,
                    capacity: 1024 >> i,
                })
                .collect(),
            memory_bytes: Some(mem_mb << 20),
            memory_available_bytes: Some(mem_mb << 20),
        }
    }

    #[test]
    fn a_quad_core_runs_four_jobs() {
        let p = plan(&board(vec![vec![0, 1, 2, 3]], 4096), &Overrides::default());
        assert_eq!(p.workers, 4);
        assert!(p.cpus.is_empty());
        // A lone long track: two decoders beside the encoder.
        assert_eq!(p.decode_lanes, 2);
        assert_eq!(p.flac_threads, 2);
        let two = plan(&board(vec![vec![0, 1]], 4096), &Overrides::default());
        assert_eq!((two.decode_lanes, two.flac_threads), (1, 1));
    }

    #[test]
    fn big_little_pins_to_the_big_cluster() {
        let p = plan(
            &board(vec![vec![4, 5], vec![0, 1, 2, 3]], 4096),
            &Overrides::default(),
        );
        assert_eq!(p.cpus, vec![4, 5]);
        assert_eq!(p.workers, 2);
    }

    #[test]
    fn little_memory_means_fewer_jobs_and_config_wins() {
        let p = plan(&board(vec![vec![0, 1, 2, 3]], 300), &Overrides::default());
        assert_eq!(p.workers, 1);
        let o = Overrides {
            workers: Some(3),
            nice: Some(0),
            cpus: vec![],
            decode_lanes: None,
            flac_threads: None,
        };
        let p = plan(&board(vec![vec![0, 1, 2, 3]], 300), &o);
        assert_eq!((p.workers, p.nice), (3, 0));
    }

    #[test]
    fn a_single_core_runs_one_job_with_one_decoder() {
        let p = plan(&board(vec![vec![0]], 1024), &Overrides::default());
        assert_eq!((p.workers, p.decode_lanes), (1, 1));
    }
}
