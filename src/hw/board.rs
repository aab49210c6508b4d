//! What board the box runs on, read from the kernel: model, CPU cores and
//! clusters (big.LITTLE), memory, temperature and throttling. Everything is
//! optional: a laptop or CI machine simply has less to report.

use std::path::Path;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Cluster {
    /// CPU numbers in this cluster.
    pub cpus: Vec<usize>,
    /// Relative capacity (`cpu_capacity`, or max frequency in kHz).
    pub capacity: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Board {
    pub model: String,
    pub cores: usize,
    /// Fastest cluster first.
    pub clusters: Vec<Cluster>,
    pub memory_bytes: Option<u64>,
    pub memory_available_bytes: Option<u64>,
}

fn read(p: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| {
        s.trim_matches(|c: char| c.is_whitespace() || c == '\0')
            .to_string()
    })
}

/// Board model: device tree (ARM boards), else DMI (PCs), else the CPU.
pub fn model() -> String {
    if let Some(m) = read("/proc/device-tree/model").filter(|m| !m.is_empty()) {
        return m;
    }
    let vendor = read("/sys/class/dmi/id/sys_vendor").unwrap_or_default();
    let product = read("/sys/class/dmi/id/product_name").unwrap_or_default();
    let dmi = format!("{vendor} {product}").trim().to_string();
    if !dmi.is_empty() {
        return dmi;
    }
    read("/proc/cpuinfo")
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name") || l.starts_with("Hardware"))
                .and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_string()))
        })
        .unwrap_or_else(|| "unknown".into())
}

fn online_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills a cpu_set_t we own.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ok =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) }
            == 0;
    if !ok {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        return (0..n).collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        .filter(|c| unsafe { libc::CPU_ISSET(*c, &set) })
        .collect()
}

fn cpu_capacity(cpu: usize) -> u64 {
    let base = format!("/sys/devices/system/cpu/cpu{cpu}");
    read(format!("{base}/cpu_capacity"))
        .or_else(|| read(format!("{base}/cpufreq/cpuinfo_max_freq")))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn meminfo(key: &str) -> Option<u64> {
    read("/proc/meminfo")?
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

pub fn detect() -> Board {
    let cpus = online_cpus();
    let mut clusters: Vec<Cluster> = Vec::new();
    for cpu in &cpus {
        let cap = cpu_capacity(*cpu);
        match clusters.iter_mut().find(|c| c.capacity == cap) {
            Some(c) => c.cpus.push(*cpu),
            None => clusters.push(Cluster {
                cpus: vec![*cpu],
                capacity: cap,
            }),
        }
    }
    clusters.sort_by_key(|c| std::cmp::Reverse(c.capacity));
    Board {
        model: model(),
        cores: cpus.len().max(1),
        clusters,
        memory_bytes: meminfo("MemTotal:"),
        memory_available_bytes: meminfo("MemAvailable:"),
    }
}

/// The hottest CPU/SoC thermal zone, in °C.
pub fn cpu_temperature() -> Option<f64> {
    let zones = std::fs::read_dir("/sys/class/thermal").ok()?;
    zones
        .flatten()
        .filter(|z| z.file_name().to_string_lossy().starts_with("thermal_zone"))
        .filter_map(|z| read(z.path().join("temp"))?.parse::<f64>().ok())
        .map(|milli| milli / 1000.0)
        .fold(None, |acc: Option<f64>, t| {
            Some(acc.map_or(t, |a| a.max(t)))
        })
}

/// Raspberry Pi firmware's throttle flags (under-voltage, frequency capped,
/// throttled, soft temperature limit), now. `None` where there is no such
/// firmware.
pub fn throttled() -> Option<bool> {
    for p in [
        "/sys/devices/platform/soc/soc:firmware/get_throttled",
        "/sys/devices/platform/soc/soc:firmware/raspberrypi-hwmon/get_throttled",
    ] {
        if let Some(v) = read(p) {
            let bits = u64::from_str_radix(v.trim_start_matches("0x"), 16).ok()?;
            return Some(bits & 0xf != 0);
        }
    }
    None
}

pub fn load_average() -> [f64; 3] {
    let s = read("/proc/loadavg").unwrap_or_default();
    let mut it = s.split_whitespace().map(|v| v.parse().unwrap_or(0.0));
    [
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
    ]
}

pub fn uptime_seconds() -> f64 {
    read("/proc/uptime")
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_is_described() {
        let b = detect();
        assert!(b.cores >= 1);
        assert_eq!(
            b.clusters.iter().map(|c| c.cpus.len()).sum::<usize>(),
            b.cores
        );
        assert!(!b.model.is_empty());
        assert!(b.memory_bytes.unwrap_or(0) > 0);
        assert!(uptime_seconds() > 0.0);
    }
}
